"""Metrics of --collector.initramfs: each kernel's image and which needed modules it holds."""

from __future__ import annotations

from ...facts.initramfs import InitramfsFacts
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    facts = scrape.facts.get(InitramfsFacts)
    if facts is None:
        return
    present = out.gauge("dkms_kernel_initramfs_present", "1 when the kernel has an initramfs image "
                        "(initrd.img-K, initramfs-K.img, ...).", ["kernel"])
    mtime = out.gauge("dkms_kernel_initramfs_modified_timestamp_seconds", "When the kernel's initramfs image "
                      "was last written.", ["kernel"])
    size = out.gauge("dkms_kernel_initramfs_size_bytes", "Size of the kernel's initramfs image.", ["kernel"])
    info = out.gauge("dkms_kernel_initramfs_info", "1 per readable image, labeled by the compression of its "
                     "main archive (zstd, gzip, xz, lz4, lzma, bzip2, none).", ["kernel", "compression"])
    took = out.gauge("dkms_kernel_initramfs_listing_duration_seconds", "How long listing the image took when "
                     "it was last read (an unchanged image is not read again).", ["kernel"])
    for kernel, image in facts.images.items():
        present.add_metric([kernel], 1 if image.present else 0)
        if image.mtime is not None:
            mtime.add_metric([kernel], image.mtime)
        if image.size is not None:
            size.add_metric([kernel], image.size)
        if image.listing is not None:
            info.add_metric([kernel, image.listing.compression], 1)
            took.add_metric([kernel], image.listing.seconds)
    inside = out.gauge("dkms_module_in_initramfs", "For each module a kernel needs, when that kernel's "
                       "initramfs could be read: 1 when the image holds it.", ["kernel", "module"])
    early = out.gauge("dkms_module_early_boot", "1 for each needed module that must be in the initramfs "
                      "(it is in the running kernel's image, or the config names it).", ["kernel", "module"])
    for kv in scrape.readiness.kernels:
        for m in kv.modules:
            if m.in_initramfs is not None:
                inside.add_metric([kv.kernel, m.module], 1 if m.in_initramfs else 0)
            if m.early_boot:
                early.add_metric([kv.kernel, m.module], 1)
