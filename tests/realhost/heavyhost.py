"""The heavy-weight trees (tests/realhost/heavy.sh): bookworm's healthy tree with Debian's real
zfs-dkms + zfs-initramfs (scenario `zfs`) and then nvidia-kernel-dkms (`nvidia`), both built by
DKMS for the newest kernel.  Used by test_heavy.py and the oracle's ZFS boot."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from .conftest import BUILD, HERE, RealHost, tail

HEAVY = HERE / "heavy.sh"
HEAVY_SCENARIOS = ("zfs", "nvidia")
HEAVY_TIMEOUT = 60 * 60   # cold: ZFS's and NVIDIA's DKMS builds on 2 loaded cores (docs/testing.md)


class HeavyBuildError(RuntimeError):
    """build.sh or heavy.sh failed; the message ends with its output."""


def _run(argv: list[str], env: dict[str, str], echo: bool) -> tuple[int, str]:
    """Run a build script, echoing its progress to stderr when asked; killed at HEAVY_TIMEOUT."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    timer = threading.Timer(HEAVY_TIMEOUT, proc.kill)
    timer.start()
    out: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if echo:
                sys.stderr.write(line)
                sys.stderr.flush()
        rc = proc.wait()
    finally:
        timer.cancel()
    return rc, "".join(out)


def _last(out: str, prefix: str) -> str | None:
    found = [line.split("=", 1)[1].strip() for line in out.splitlines() if line.startswith(prefix)]
    return found[-1] if found else None


def ensure_heavy(echo: bool = True) -> RealHost:
    """The bookworm real host (build.sh, warm in seconds), then the heavy trees on it."""
    env = {**os.environ, "DKMS_EXPORTER_REALHOST_SUITE": "bookworm"}
    rc, out = _run(["bash", str(BUILD)], env, echo)
    src = _last(out, "REALHOST_DIR=")
    if rc != 0 or src is None:
        raise HeavyBuildError(f"tests/realhost/build.sh (bookworm) failed (exit {rc}):\n{tail(out, 40)}")
    rc, out = _run(["bash", str(HEAVY), src], env, echo)
    root = _last(out, "HEAVY_DIR=")
    if rc != 0 or root is None:
        raise HeavyBuildError(f"tests/realhost/heavy.sh failed (exit {rc}):\n{tail(out, 60)}")
    path = Path(root)
    host_env = dict(line.split("=", 1) for line in (path / "host.env").read_text().splitlines() if "=" in line)
    built = tuple(host_env.get("SCENARIOS", "").strip('"').split())
    if built != HEAVY_SCENARIOS:
        raise HeavyBuildError(f"heavy.sh built {built}, expected {HEAVY_SCENARIOS}")
    return RealHost(path, host_env, "bookworm")
