"""Coverage-guided fuzzing (atheris) of the parsers the RPM, Arch and kernel-exact work added,
for a bounded number of inputs each, so the targets in benchmarks/fuzz.py cannot rot and every
slow run fuzzes a little more.  Longer runs: ``.venv/bin/python benchmarks/fuzz.py --target T
--seconds 600`` (docs/performance.md, "Reliability")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fuzz  # noqa: E402

RUNS = 1500
NEWER = ("rpmheader", "rpmdb", "pacman", "bls", "modsig")


@pytest.mark.slow
@pytest.mark.parametrize("target", NEWER)
def test_atheris_target_finds_no_foreign_exception(target, tmp_path):
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.fail("atheris is not installed: .venv/bin/pip install -e '.[test]' installs it")
    runs, crashed, detail = fuzz.run_atheris(target, 600, tmp_path, runs=RUNS)
    assert not crashed, detail
    assert runs >= RUNS, f"only {runs} inputs ran: {detail}"


@pytest.mark.parametrize("target", NEWER)
def test_target_takes_arbitrary_bytes(target):
    """The in-process entry point of each target accepts bytes that match no format at all."""
    for data in (b"", b"\0" * 64, b"%NAME%\n\0[options]\nInclude = /etc/pacman.conf\n", bytes(range(256))):
        fuzz.run_one(target, data)
