"""Initramfs truth: which modules each installed kernel's initramfs image holds.

Images are listed with exporter.initramfs (streaming, bounded) and the result, a small set of
module names, is cached by the image's identity: an unchanged 100 MB image costs one stat per
scrape, and scrapes are serialised, so two scrapes never decompress the same image at once.
A corrupt or truncated image is a fact about the image (the boot would fail), not a read error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .context import Context, Unreadable
from .initramfs import InitramfsError, find_image, list_image, module_names
from .kernels import MODULES_ROOT, KernelFacts


@dataclass(frozen=True)
class Listing:
    modules: frozenset[str]     # kernel module names in the image for its kernel
    entries: int
    compression: str
    seconds: float              # how long listing it took (when it was last listed)


@dataclass(frozen=True)
class KernelImage:
    path: str | None            # host path, None when the kernel has no image
    size: int | None
    mtime: float | None
    listing: Listing | None
    error: InitramfsError | None

    @property
    def present(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class InitramfsFacts:
    images: dict[str, KernelImage]


def collect_initramfs(ctx: Context) -> InitramfsFacts:
    kernels: KernelFacts | None = ctx.previous.get("kernel")
    if kernels is None:
        raise RuntimeError("the kernel collector did not run: no kernels to look for images of")
    releases = list(kernels.releases)
    if kernels.running and kernels.running not in releases:
        releases.append(kernels.running)
    return InitramfsFacts({k: _image(ctx, k) for k in releases})


def _image(ctx: Context, kernel: str) -> KernelImage:
    try:
        local = find_image(ctx.fs.path("/boot"), ctx.fs.path(MODULES_ROOT), kernel)
    except (OSError, ValueError) as exc:
        ctx.error(f"/boot/initrd.img-{kernel}", exc)
        return KernelImage(None, None, None, None, None)
    if local is None:
        return KernelImage(None, None, None, None, None)
    host = ctx.fs.to_host(local)
    st = ctx.stat(host)
    try:
        result = ctx.compute(host, f"initramfs:{kernel}", lambda p, _st: _list(p, kernel))
    except Unreadable:
        return KernelImage(host, st.st_size if st else None, st.st_mtime if st else None, None, None)
    if result is None:   # vanished between find and list
        return KernelImage(None, None, None, None, None)
    listing, error = result
    return KernelImage(host, st.st_size if st else None, st.st_mtime if st else None, listing, error)


def _list(path, kernel: str) -> tuple[Listing | None, InitramfsError | None]:
    start = time.perf_counter()
    try:
        image = list_image(path)
    except InitramfsError as exc:
        return None, exc
    return Listing(module_names(image, kernel), image.entries, image.compression,
                   time.perf_counter() - start), None
