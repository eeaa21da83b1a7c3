"""Facts of the kernel collector: installed kernels, the running and newest one, per kernel its
modules directory, depmod data, headers, config and out-of-tree module files."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..formats.depmod import ModulesDep

MODULES_ROOT = "/lib/modules"
# where out-of-tree modules are installed (dkms, vendor packages, akmods, RHEL weak-updates)
OUT_OF_TREE_DIRS = ("updates", "extra", "weak-updates")


@dataclass(frozen=True)
class Kernel:
    release: str
    image: str | None                    # host path of the kernel image
    has_modules_dir: bool
    modules_dep: ModulesDep | None       # None: no depmod data (or unreadable: see errors)
    headers_dir: str | None              # host path /lib/modules/K/build resolves to, when usable
    config: dict[str, str] = field(default_factory=dict)   # /boot/config-K
    out_of_tree: dict[str, tuple[str, ...]] = field(default_factory=dict)  # modname -> relpaths
    mtimes: dict[str, float] = field(default_factory=dict)                 # relpath -> mtime of those files
    builtin: frozenset[str] | None = None    # modules.builtin: modnames built into the image; None: unread
    pkgbase: str | None = None           # Arch: /lib/modules/K/pkgbase, the package that installed K

    @property
    def headers(self) -> bool:
        return self.headers_dir is not None


@dataclass(frozen=True)
class KernelFacts:
    kernels: tuple[Kernel, ...]          # installed (image present), oldest first
    orphans: tuple[str, ...]             # /lib/modules/K with no image: never a boot target
    running: str | None
    newest: str | None
    arch: str
    weak_modules: str | None = None      # host path of weak-modules (RHEL's kmod) or weak-modules2 (SUSE)

    @property
    def kmp_dirs(self) -> tuple[str, ...]:
        """Where the host's kernel-module packages put modules that weak-modules links into other
        kernels: SUSE's weak-modules2 takes KMPs from updates/ and extra/ (its header comment),
        RHEL's weak-modules kmods from extra/ only."""
        if self.weak_modules and self.weak_modules.endswith("/weak-modules2"):
            return ("updates/", "extra/")
        return ("extra/",)

    def get(self, release: str) -> Kernel | None:
        return next((k for k in self.kernels if k.release == release), None)

    @property
    def releases(self) -> list[str]:
        return [k.release for k in self.kernels]
