"""Facts of the initramfs collector: each kernel's image and the modules it holds."""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.initramfs import InitramfsError


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

    @property
    def damaged(self) -> bool:
        """It cannot be listed, and the kernel could not unpack it either (initramfs_unreadable).
        An ``unsupported`` image (lzop) is not damaged: the kernel unpacks it; only its listing
        is not known."""
        return self.error is not None and self.error.code != "unsupported"


@dataclass(frozen=True)
class InitramfsFacts:
    images: dict[str, KernelImage]
