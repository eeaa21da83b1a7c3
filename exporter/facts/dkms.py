"""Facts of the dkms collector: the DKMS tree as `dkms status` reads it, and failed builds."""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.versions import compare

# The dkms releases that changed a rule the exporter models (dell/dkms, dkms.in; docs/formats.md,
# "Which rules apply" lists the functions and commits).  Debian 12 ships 3.0.10, Ubuntu 24.04
# 3.0.11, Debian 13 3.2.2.
BUILD_EXCLUSIVE_RANGE_FROM = "3.0.11"  # BUILD_EXCLUSIVE_KERNEL_MIN/_MAX and BUILD_EXCLUSIVE_CONFIG
BROKEN_STATE_FROM = "3.0.13"           # 'broken'; 'added' needs source to be a link to a directory
AUTOINSTALL_YES_NO_FROM = "3.1.7"      # AUTOINSTALL is yes/no/empty, not "any non-empty value"
RELAXED_BUILT_FROM = "3.1.8"           # 'built' needs module/ only, not every DEST_MODULE_NAME file


def at_least(version: str | None, threshold: str) -> bool:
    """Is the installed dkms (None: unknown, read as the oldest rules) at least `threshold`?"""
    return version is not None and compare(version, threshold) >= 0

# status decorations, as stable codes; check/docs show dkms's own words
DECORATIONS = {
    "original_module_exists": ("original_module exists", "Original modules exist"),
    "missing_built_modules": ("WARNING! Missing some built modules!",
                              "Built modules are missing in the kernel modules folder"),
    "built_installed_differ": ("WARNING! Diff between built and installed module!",
                               "Differences between built and installed modules"),
}


@dataclass(frozen=True)
class DkmsBuild:
    kernel: str
    arch: str
    state: str                          # built | installed
    decorations: tuple[str, ...]        # codes from DECORATIONS
    files: tuple[tuple[str, str], ...]  # (dest module name, host path of the built file)


@dataclass(frozen=True)
class BuildFailure:
    kernel: str
    arch: str
    cause: str
    detail: str
    log: str            # host path of make.log
    mtime: float


@dataclass(frozen=True)
class DkmsEntry:
    module: str
    version: str
    state: str                    # added | broken (module level)
    source: str                   # host path of the source link/dir
    conf_text: str | None         # None when dkms.conf is missing or unreadable
    builds: tuple[DkmsBuild, ...]
    failure: BuildFailure | None

    def build_for(self, kernel: str, arch: str) -> DkmsBuild | None:
        return next((b for b in self.builds if b.kernel == kernel and b.arch == arch), None)


@dataclass(frozen=True)
class StatusLine:
    module: str
    version: str
    kernel: str
    arch: str
    state: str
    decorations: tuple[str, ...] = ()

    def render(self, new_wording: bool = False) -> str:
        if not self.kernel:
            return f"{self.module}/{self.version}: {self.state}"
        extra = "".join(f" ({DECORATIONS[d][1 if new_wording else 0]})" for d in self.decorations)
        return f"{self.module}/{self.version}, {self.kernel}, {self.arch}: {self.state}{extra}"


@dataclass(frozen=True)
class DkmsFacts:
    tree: str
    install_tree: str
    dkms_version: str | None
    entries: tuple[DkmsEntry, ...]
    distro_dest: str | None       # dkms's override_dest_module_location for this distro
    # /usr/src/<m>-<v>/dkms.conf with no <tree>/<m>/<v>: DKMS will never build these (dkms 3.0's
    # prerm hook drops a module whose last kernel is removed; the package stays installed)
    unregistered: tuple[tuple[str, str, str], ...] = ()

    def status_lines(self) -> list[StatusLine]:
        lines: list[StatusLine] = []
        for e in self.entries:
            if not e.builds:
                lines.append(StatusLine(e.module, e.version, "", "", e.state))
            for b in e.builds:
                lines.append(StatusLine(e.module, e.version, b.kernel, b.arch, b.state, b.decorations))
        return lines

    @property
    def modern(self) -> bool:
        """dkms >= 3.0.13: the 'broken' state and the stricter 'added' rule."""
        return at_least(self.dkms_version, BROKEN_STATE_FROM)
