"""Every host path goes through one root (node_exporter's --path.rootfs convention).

The exporter may run in a container with the host mounted at /host, or in tests on a fixture
tree.  Absolute symlinks inside the host tree (``/lib/modules/K/build -> /usr/src/...``,
DKMS ``source`` links) must then resolve inside that root, the way they would in a chroot,
never against the exporter's own filesystem.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from pathlib import Path

MAX_SYMLINK_HOPS = 40  # the kernel's own limit (MAXSYMLINKS)


class HostFS:
    """Maps host paths ("/var/lib/dkms") to paths on this machine, resolving links in the root."""

    def __init__(self, rootfs: str | os.PathLike = "/", procfs: str | os.PathLike | None = None,
                 sysfs: str | os.PathLike | None = None) -> None:
        self.root = Path(os.path.abspath(rootfs))
        self.procfs = Path(os.path.abspath(procfs)) if procfs else self.root / "proc"
        self.sysfs = Path(os.path.abspath(sysfs)) if sysfs else self.root / "sys"
        self._chrooted = self.root != Path("/")
        self._memo: dict[str, Path] = {}

    def begin_scrape(self) -> None:
        """Forget resolved paths: the tree may have changed since the last scrape."""
        self._memo.clear()

    def path(self, hostpath: str) -> Path:
        """The local path of an absolute host path, symlinks resolved inside the root."""
        if not self._chrooted:
            return Path(hostpath)
        hit = self._memo.get(hostpath)
        if hit is None:
            hit = self._memo[hostpath] = self._resolve(hostpath)
        return hit

    def proc(self, rel: str) -> Path:
        return self.procfs / rel.lstrip("/")

    def sys(self, rel: str) -> Path:
        return self.sysfs / rel.lstrip("/")

    def to_host(self, local: Path) -> str:
        """The host path of a local path under the root (for messages and labels)."""
        try:
            rel = Path(local).relative_to(self.root)
        except ValueError:
            return str(local)
        return "/" + str(rel) if str(rel) != "." else "/"

    def readlink_host(self, hostpath: str) -> str | None:
        """Where a host symlink points to, as a host path (None when it is not a link)."""
        local = self.path(os.path.dirname(hostpath)) / os.path.basename(hostpath)
        try:
            target = os.readlink(local)
        except OSError:
            return None
        if not target.startswith("/"):
            target = os.path.join(os.path.dirname(hostpath), target)
        return os.path.normpath(target)

    def realpath(self, hostpath: str) -> str:
        """``readlink -f`` inside the root, returned as a host path."""
        return self.to_host(self._resolve(hostpath)) if self._chrooted else os.path.realpath(hostpath)

    def _resolve(self, hostpath: str) -> Path:
        parts = deque(p for p in hostpath.split("/") if p)
        current: list[str] = []
        hops = 0
        while parts:
            name = parts.popleft()
            if name == ".":
                continue
            if name == "..":
                if current:
                    current.pop()
                continue
            candidate = self.root.joinpath(*current, name)
            try:
                is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
            except OSError:
                current.append(name)
                current.extend(p for p in parts if p not in (".",))
                break
            if not is_link:
                current.append(name)
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", hostpath)
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts.extendleft(reversed([p for p in target.split("/") if p]))
        return self.root.joinpath(*current)
