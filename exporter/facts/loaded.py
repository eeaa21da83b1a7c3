"""Facts of the loaded collector: modules loaded now, their taint, and modprobe.d blacklists."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadedModule:
    name: str
    taint: str          # letters as /proc/modules prints them, e.g. "OE"

    @property
    def out_of_tree(self) -> bool:
        return "O" in self.taint


@dataclass(frozen=True)
class LoadedFacts:
    modules: tuple[LoadedModule, ...]
    blacklisted: frozenset[str]       # modnames blacklisted in modprobe.d
    boot_listed: frozenset[str] = frozenset()   # modnames modules-load.d, /etc/modules or initramfs-tools list

    @property
    def out_of_tree(self) -> list[str]:
        return sorted(m.name for m in self.modules if m.out_of_tree)
