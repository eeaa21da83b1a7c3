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


@dataclass(frozen=True)
class InitramfsFacts:
    images: dict[str, KernelImage]
