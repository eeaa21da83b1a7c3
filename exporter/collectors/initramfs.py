"""--collector.initramfs: which modules each installed kernel's initramfs image holds.

Images are listed with exporter.formats.initramfs (streaming, bounded) and the result, a small set of
module names, is cached by the image's identity: an unchanged 100 MB image costs one stat per
scrape, and scrapes are serialised, so two scrapes never decompress the same image at once.
A corrupt or truncated image is a fact about the image (the boot would fail), not a read error.
A kernel that systemd-boot boots through a unified kernel image gets the UKI's ``.initrd``
section as its image (docs/formats.md, "Unified kernel images").
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import replace
from pathlib import Path

from ..distro.pkgbase import read_pkgbase
from ..facts.initramfs import InitramfsFacts, KernelImage, Listing
from ..facts.kernel import MODULES_ROOT, KernelFacts
from ..formats.jsoncodec import Codec
from ..formats.initramfs import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_UNCOMPRESSED, ImageListing, InitramfsError, list_image, module_names
from ..formats.pe import PeError, SectionFile, parse_pe
from ..host.context import Context, Unreadable
from ..host.parallel import parse_side_by_side
from ..host.reader import NotRegularFile, open_regular
from . import register
from .bootloader import SdBootMenu, systemd_boot_menu


# an image's listing (or why it cannot be listed) as the persistent cache (--cache.dir) keeps it
CODEC = Codec("initramfs", (Listing,), errors={InitramfsError: ("code", "offset", "detail", "stream_offset")},
              revision=2)   # 2: lzop segments are "unsupported", no longer "unknown_format"


@register("initramfs", InitramfsFacts, after=("kernel",), readiness=True)
def collect_initramfs(ctx: Context) -> InitramfsFacts:
    kernels: KernelFacts | None = ctx.previous.get("kernel")
    if kernels is None:
        raise RuntimeError("the kernel collector did not run: no kernels to look for images of")
    releases = list(kernels.releases)
    if kernels.running and kernels.running not in releases:
        releases.append(kernels.running)
    # The menu's own read errors belong to the bootloader collector (which reports them and makes
    # readiness unknown); here they would count the same file twice.
    menu = systemd_boot_menu(replace(ctx, errors=[]))
    located = {k: _locate(ctx, k, menu) for k in releases}
    return InitramfsFacts(dict(zip(releases, _list_all(ctx, located))))


LISTING_WORKERS = 2
"""Images listed side by side when more than one must be decompressed (a cold scrape, or after
``update-initramfs -u -k all``).  zstd, xz and gzip decode outside the interpreter lock, so two
images decode at once on two cores: the cold scrape's longest step measured 0.80 -> 0.38 s for 6
images.  Not more: each worker holds a decoder (zstd's window, liblzma's dictionary) and most
hosts keep two or three kernels.  A warm scrape, where every listing is cached, starts no thread."""


def _locate(ctx: Context, kernel: str, menu: SdBootMenu | None) -> tuple[str, str] | None:
    """(kind, host path) of the image the boot loader passes with ``kernel``: "uki" for a
    unified kernel image systemd-boot boots, "image" for an initramfs file; None when none."""
    entry = menu.entry_for(kernel) if menu is not None else None
    if entry is not None and entry.type == "type2":
        return "uki", entry.path
    try:
        host = find_image(ctx, kernel)
    except Unreadable:
        return None
    return ("image", host) if host is not None else None


def _purpose(kind: str, kernel: str) -> str:
    return f"initramfs-uki:{kernel}" if kind == "uki" else f"initramfs:{kernel}"


def _list_all(ctx: Context, located: dict[str, tuple[str, str] | None]) -> list[KernelImage]:
    """Each kernel's KernelImage, in order; the images not cached in memory in up to
    LISTING_WORKERS threads when there are several."""
    def one(c: Context, kernel: str) -> KernelImage:
        where = located[kernel]
        if where is None:
            return KernelImage(None, None, None, None, None)
        return _uki_image(c, kernel, where[1]) if where[0] == "uki" else _image(c, kernel, where[1])

    uncached = sum(1 for k, where in located.items() if where is not None and not ctx.cached(where[1], _purpose(where[0], k)))
    return parse_side_by_side(ctx, one, list(located), min(LISTING_WORKERS, uncached))


def _image(ctx: Context, kernel: str, host: str) -> KernelImage:
    st = ctx.stat(host)
    try:
        result = ctx.compute(host, _purpose("image", kernel), lambda p, _st: _list(p, kernel), persist=CODEC)
    except Unreadable:
        return KernelImage(host, st.st_size if st else None, st.st_mtime if st else None, None, None)
    if result is None:   # vanished between find and list
        return KernelImage(None, None, None, None, None)
    listing, error = result
    return KernelImage(host, st.st_size if st else None, st.st_mtime if st else None, listing, error)


def _list(path, kernel: str) -> tuple[Listing | None, InitramfsError | None]:
    start = time.perf_counter()
    try:
        image = list_image_file(path)
    except InitramfsError as exc:
        return None, exc
    return Listing(module_names(image, kernel), image.entries, image.compression,
                   time.perf_counter() - start), None


def _uki_image(ctx: Context, kernel: str, path: str) -> KernelImage:
    """The initramfs systemd-boot's stub passes with a UKI: its ``.initrd`` section, listed like
    any image through a window of the file (a UKI without one boots with no initramfs)."""
    st = ctx.stat(path)
    try:
        result = ctx.compute(path, _purpose("uki", kernel), lambda p, _st: _list_uki(p, kernel, path), persist=CODEC)
    except Unreadable:
        return KernelImage(path, st.st_size if st else None, st.st_mtime if st else None, None, None)
    if result is None or result == (None, None):   # vanished, or no .initrd
        return KernelImage(None, None, None, None, None)
    listing, error = result
    return KernelImage(path, st.st_size if st else None, st.st_mtime if st else None, listing, error)


_PE_TO_INITRAMFS = {"section_out_of_file": "truncated", "truncated": "truncated"}


def _list_uki(local, kernel: str, hostpath: str) -> tuple[Listing | None, InitramfsError | None]:
    start = time.perf_counter()
    with open_regular(local) as fh:
        try:
            image = parse_pe(fh, os.fstat(fh.fileno()).st_size, hostpath)
            section = image.profile_section(".initrd", 0)
            if section is None:
                return None, None
            window = SectionFile(fh, image, section, hostpath)
            listing = list_image(window)   # type: ignore[arg-type]  # a seekable binary file
        except PeError as exc:
            return None, InitramfsError(_PE_TO_INITRAMFS.get(exc.code, "corrupt"), 0, f"UKI .initrd: {exc}")
        except InitramfsError as exc:
            return None, InitramfsError(exc.code, exc.offset, f"UKI .initrd section: {exc.detail}", exc.stream_offset)
    return Listing(module_names(listing, kernel), listing.entries, listing.compression,
                   time.perf_counter() - start), None


def find_image(ctx: Context, kernel: str) -> str | None:
    """The host path of the initramfs the boot loader would pass with ``kernel``, or None.

    Looks, in order, for initramfs-tools' ``initrd.img-K``, dracut's ``initramfs-K.img``, SUSE's
    ``initrd-K``, the kernel-install/Fedora-style ``/lib/modules/K/initramfs.img``, and Arch's
    ``initramfs-<pkgbase>.img`` (only when ``/lib/modules/K/pkgbase`` names it: a bare
    ``initramfs-linux.img`` cannot be tied to a kernel version by its name).  A directory or other
    non-file at one of these paths is returned too, so that listing it reports ``not_a_file``
    instead of the image silently counting as missing.  Unreadable: a path could not be checked.
    """
    if not kernel or "/" in kernel or kernel in (".", ".."):
        ctx.error(f"/boot/initrd.img-{kernel}", f"not a kernel release: {kernel!r}")
        raise Unreadable(kernel)
    candidates = [f"/boot/initrd.img-{kernel}", f"/boot/initramfs-{kernel}.img", f"/boot/initrd-{kernel}",
                  f"{MODULES_ROOT}/{kernel}/initramfs.img"]
    pkgbase = read_pkgbase(ctx, kernel)
    if pkgbase:
        candidates.append(f"/boot/initramfs-{pkgbase}.img")
    for candidate in candidates:
        if _exists(ctx, candidate):
            return candidate
    return None


def _exists(ctx: Context, hostpath: str) -> bool:
    """Whether a path names something, following links inside the root: a dangling link or a
    link loop is no image (the boot loader could not load it either); EACCES or EIO is a read
    error, never a guess."""
    try:
        os.stat(ctx.fs.local(hostpath))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        ctx.error(hostpath, exc)
        raise Unreadable(hostpath) from exc
    return True


def list_image_file(path: str | Path, *, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
                    max_entries: int = DEFAULT_MAX_ENTRIES) -> ImageListing:
    """list_image of a local file, opened through the host reader (no FIFO ever blocks it).

    A directory or other non-file is InitramfsError ``not_a_file``; OSError (absent, EACCES,
    EIO) propagates: a caller must not read "unreadable" as "module absent"."""
    try:
        fh = open_regular(path)
    except (IsADirectoryError, NotRegularFile) as exc:
        kind = "a directory" if isinstance(exc, IsADirectoryError) else "not a regular file"
        raise InitramfsError("not_a_file", 0, f"{path} is {kind}") from exc
    with fh:
        return list_image(fh, max_uncompressed=max_uncompressed, max_entries=max_entries)
