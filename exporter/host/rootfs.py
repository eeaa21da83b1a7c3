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
        self._root_s = str(self.root)
        self._memo: dict[str, str] = {}

    def begin_scrape(self) -> None:
        """Forget resolved paths: the tree may have changed since the last scrape."""
        self._memo.clear()

    def local(self, hostpath: str) -> str:
        """The local path (a string, for the hot path) of an absolute host path."""
        if not self._chrooted:
            return hostpath
        return self._resolve(hostpath, [0])

    def path(self, hostpath: str) -> Path:
        """The local path of an absolute host path, symlinks resolved inside the root."""
        return Path(self.local(hostpath))

    def proc(self, rel: str) -> Path:
        return self.procfs / rel.lstrip("/")

    def sys(self, rel: str) -> Path:
        return self.sysfs / rel.lstrip("/")

    def to_host(self, local: str | Path) -> str:
        """The host path of a local path under the root (for messages and labels)."""
        local = str(local)
        if not self._chrooted:
            return local
        if local == self._root_s:
            return "/"
        if local.startswith(self._root_s + "/"):
            return local[len(self._root_s):]
        return local

    def readlink_host(self, hostpath: str) -> str | None:
        """Where a host symlink points to, as a host path (None when it is not a link)."""
        parent, _, name = hostpath.rstrip("/").rpartition("/")
        try:
            target = os.readlink(self.local(parent or "/") + "/" + name)
        except OSError:
            return None
        if not target.startswith("/"):
            target = os.path.join(parent or "/", target)
        return os.path.normpath(target)

    def realpath(self, hostpath: str) -> str:
        """``readlink -f`` inside the root, returned as a host path."""
        return self.to_host(self._resolve(hostpath, [0])) if self._chrooted else os.path.realpath(hostpath)

    def _resolve(self, hostpath: str, hops: list[int]) -> str:
        """Resolve one component at a time (parents memoised per scrape), as a chroot would."""
        key = "/" + hostpath.strip("/")
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if key == "/":
            return self._root_s
        parent, _, name = key.rpartition("/")
        local_parent = self._resolve(parent or "/", hops)
        if name == ".":
            result = local_parent
        elif name == "..":
            result = local_parent.rpartition("/")[0] if local_parent != self._root_s else local_parent
            if len(result) < len(self._root_s):
                result = self._root_s
        else:
            candidate = (local_parent if local_parent != "/" else "") + "/" + name
            try:
                st = os.lstat(candidate)
            except OSError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                hops[0] += 1
                if hops[0] > MAX_SYMLINK_HOPS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", hostpath)
                try:
                    target = os.readlink(candidate)
                except OSError:  # replaced or removed since the lstat: take the path as it is now
                    target = None
                if target is None:
                    result = candidate
                else:
                    if not target.startswith("/"):
                        target = self.to_host(local_parent).rstrip("/") + "/" + target
                    result = self._resolve(target, hops)
            else:
                result = candidate
        self._memo[key] = result
        return result
