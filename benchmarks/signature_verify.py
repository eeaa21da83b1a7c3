#!/usr/bin/env python3
"""What does verifying module signatures the kernel's way cost, cold and warm?

Usage (needs the real-host build, tests/realhost/build.sh, or any kernel tree with its vmlinuz):

    .venv/bin/python benchmarks/signature_verify.py [--root TREE] [--kernel K] [--modules N]

On Debian's real kernel K it measures, each from a fresh start of what it names:
- reading K's built-in certificates from its vmlinuz (exporter/formats/vmlinux.py: the xz
  payload decompressed in chunks and scanned), cold (first read) and warm (the identity cache
  of a running exporter answers: one stat);
- verifying N of K's real in-tree modules (RSA-4096/SHA-256, signed by K's build key) with that
  certificate: parse + verify cold (first call in the process: cryptography loads the key),
  then warm (the same signature again: exporter.formats.modsig's memo), and per module;
- memory: Python-heap peak (tracemalloc, which also sees liblzma's buffers: Python's lzma module
  allocates them through it) of the vmlinuz read, and the growth of the peak RSS of a fresh
  interpreter doing only that read over one doing only the imports.  Most of it is the xz
  dictionary the kernel's build chose (scripts/xz_wrap.sh: 32 MiB on x86), needed by any decoder.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.collectors.module import read_module  # noqa: E402
from exporter.formats.modsig import verify  # noqa: E402
from exporter.formats.vmlinux import builtin_certificates  # noqa: E402
from exporter.host.cache import FileCache  # noqa: E402


def _default_root() -> Path:
    base = os.environ.get("DKMS_EXPORTER_TEST_CACHE") or str(Path.home() / ".cache/dkms-exporter-tests")
    trees = sorted(glob.glob(f"{base}/realhost/builds/*/scenarios/healthy/tree"), key=os.path.getmtime)
    if not trees:
        sys.exit("no real-host tree: run tests/realhost/build.sh first, or pass --root")
    return Path(trees[-1])


def read_keys(image: Path):
    with open(image, "rb") as fh:
        return builtin_certificates(fh, os.path.getsize(image)).certificates


def _rss_growth_kib(image: Path) -> int:
    prelude = "import resource, os; from exporter.formats.vmlinux import builtin_certificates; "
    def peak(code: str) -> int:
        out = subprocess.run([sys.executable, "-c", prelude + code + "; print(resource.getrusage("
                              "resource.RUSAGE_SELF).ru_maxrss)"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
        return int(out.split()[-1])
    read = f"fh = open({str(image)!r}, 'rb'); builtin_certificates(fh, os.path.getsize({str(image)!r}))"
    return peak(read) - peak("pass")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path)
    ap.add_argument("--kernel")
    ap.add_argument("--modules", type=int, default=200)
    args = ap.parse_args()
    root = args.root or _default_root()
    kernel = args.kernel or sorted(p.name for p in (root / "lib/modules").iterdir())[-1]
    image = root / "boot" / f"vmlinuz-{kernel}"
    rss_growth = _rss_growth_kib(image)   # first: a child's ru_maxrss starts at its parent's peak

    start = time.perf_counter()
    certs = read_keys(image)
    cold_keys = time.perf_counter() - start
    tracemalloc.start()
    read_keys(image)
    heap_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    cache = FileCache()
    cache.compute(image, "builtin-keys", lambda p, st: read_keys(p))
    start = time.perf_counter()
    cache.compute(image, "builtin-keys", lambda p, st: read_keys(p))
    warm_keys = time.perf_counter() - start

    files = sorted((root / "lib/modules" / kernel / "kernel").rglob("*.ko"))[: args.modules]
    parsed = [read_module(f) for f in files]
    signed = [m for m in parsed if m.signature is not None]
    cert = next(c for c in certs if c.serial == signed[0].signature.key_id)
    start = time.perf_counter()
    first = verify(signed[0].signature, cert)
    cold_verify = time.perf_counter() - start
    start = time.perf_counter()
    ok = sum(verify(m.signature, cert).ok for m in signed[1:])
    per_module = (time.perf_counter() - start) / max(1, len(signed) - 1)
    start = time.perf_counter()
    for m in signed:
        verify(m.signature, cert)
    warm_verify = (time.perf_counter() - start) / len(signed)

    print(f"kernel {kernel}: {len(certs)} built-in certificate(s): {[c.subject_cn for c in certs]}")
    print(f"vmlinuz {image.stat().st_size / 1e6:.1f} MB: built-in keys cold {cold_keys:.2f} s, "
          f"warm (identity cache) {warm_keys * 1e6:.0f} us; heap peak {heap_peak / 2**20:.1f} MiB, "
          f"RSS growth {rss_growth / 1024:.1f} MiB")
    print(f"verify: first {cold_verify * 1e3:.1f} ms (ok={first.ok}), then {per_module * 1e3:.2f} ms per module "
          f"({ok + first.ok}/{len(signed)} ok), again (memo) {warm_verify * 1e6:.1f} us per module")


if __name__ == "__main__":
    main()
