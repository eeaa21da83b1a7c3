#!/usr/bin/env python3
"""How fast is exporter.formats.initramfs.list_image next to lsinitramfs and the decompression floor?

Usage (root; builds the image with the test helper unless one is given):

    .venv/bin/python benchmarks/initramfs_listing.py [--image PATH] [--repeat N]

Without --image it builds (and caches) a realistic Debian 12 image: mkinitramfs with the default
MODULES=most and COMPRESS=zstd (-9, multi-threaded) for a real linux-image-6.1.0-N-amd64 package.
It prints, from one run, the wall time of: our listing (in this process, image in the page cache),
``lsinitramfs IMAGE``, and the floor ``<decompressor> -dc | cpio -t`` on the main segment, then
the ratios, and the memory our listing needed: Python-heap peak (tracemalloc) and the growth of
the peak RSS of a fresh process doing only the listing (so libzstd's window is counted too).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from exporter.collectors.initramfs import list_image_file

DECOMPRESS = {
    "zstd": "zstd -dcq",
    "gzip": "gzip -dc",
    "xz": "xz -dc",
    "lzma": "xz --format=lzma -dc",
    "lz4": "lz4 -dcq",
    "bzip2": "bzip2 -dc",
}


def _times(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _shell(command: str) -> None:
    subprocess.run(["sh", "-c", command], check=True, stdout=subprocess.DEVNULL)


def _rss_growth_kib(image: Path) -> int:
    """Peak RSS of a fresh interpreter that lists the image, minus one that only imports (KiB)."""
    code = (
        "import sys; from pathlib import Path; from exporter.collectors.initramfs import list_image_file; "
        "sys.argv[1] and list_image_file(Path(sys.argv[1])); "
        "print(Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0])"
    )  # VmHWM belongs to the new mm; ru_maxrss would carry the forking parent's peak over exec

    def peak(arg: str) -> int:
        out = subprocess.run([sys.executable, "-c", code, arg], check=True, capture_output=True, text=True, cwd=REPO)
        return int(out.stdout)

    return min(peak(str(image)) for _ in range(3)) - min(peak("") for _ in range(3))


def _summary(label: str, samples: list[float]) -> str:
    return f"{label:<34} min {min(samples):7.3f} s   median {statistics.median(samples):7.3f} s   (n={len(samples)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, help="an existing initramfs image (default: build one)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    image = args.image
    if image is None:
        import initramfs_build

        print("building (or reusing) a Debian mkinitramfs MODULES=most zstd image ...", flush=True)
        image = initramfs_build.mkinitramfs_image("zstd", modules="most")

    listing = list_image_file(image)  # also warms the page cache
    main_seg = [s for s in listing.segments if s.compression != "none"][-1]
    print(f"image: {image}")
    print(
        f"  {listing.image_bytes / 2**20:.1f} MiB on disk, {listing.uncompressed_bytes / 2**20:.1f} MiB of cpio, "
        f"{listing.entries} entries, segments: "
        + ", ".join(f"{s.compression}@{s.offset}" for s in listing.segments)
    )

    floor_cmd = (
        f"tail -c +{main_seg.offset + 1} {shlex.quote(str(image))} | {DECOMPRESS[main_seg.compression]} "
        "| cpio -t --quiet"
    )
    # Interleaved, so that load from other processes hits all three alike.
    ours: list[float] = []
    floor: list[float] = []
    lsinit: list[float] = []
    for _ in range(args.repeat):
        ours += _times(lambda: list_image_file(image), 1)
        floor += _times(lambda: _shell(floor_cmd), 1)
        lsinit += _times(lambda: _shell(f"lsinitramfs {shlex.quote(str(image))}"), 1)

    tracemalloc.start()
    list_image_file(image)
    heap_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_kib = _rss_growth_kib(image)

    print(_summary("exporter list_image", ours))
    print(_summary(f"floor: {DECOMPRESS[main_seg.compression].split()[0]} -dc | cpio -t", floor))
    print(_summary("lsinitramfs", lsinit))
    for what, ref in (("floor", floor), ("lsinitramfs", lsinit)):
        print(
            f"ratio ours / {what:<12} min {min(ours) / min(ref):.2f}x   median "
            f"{statistics.median(ours) / statistics.median(ref):.2f}x" + ("   (target <= 1.3x)" if what == "floor" else "")
        )
    print(f"load average during the run: {Path('/proc/loadavg').read_text().split()[0]} on {os.cpu_count()} CPUs")
    print(f"memory: Python heap peak {heap_peak / 2**20:.1f} MiB, peak RSS growth {rss_kib / 1024:.1f} MiB "
          f"(cpio data {listing.uncompressed_bytes / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
