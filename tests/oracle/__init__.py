"""The kernel as the oracle: boot real Debian kernels under QEMU and judge the exporter's verdicts."""

import sys
from pathlib import Path

# The shared test helpers (modbuild: apt_download, cache_dir) live in tests/ itself.
_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
