"""heavy.sh itself (no build): shellcheck-clean with build.sh, which it sources."""

from __future__ import annotations

import subprocess

from testkit import require_tool

from .heavyhost import HEAVY


def test_heavy_script_passes_shellcheck() -> None:
    r = subprocess.run([require_tool("shellcheck"), "-x", "-P", "SCRIPTDIR", str(HEAVY)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_heavy_script_refuses_a_directory_that_is_no_build(tmp_path) -> None:
    r = subprocess.run(["bash", str(HEAVY), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0 and "is not a finished build of build.sh" in r.stderr, r.stderr
