"""What a collector gets to read the host with, and where its read errors go.

A collector never raises for one bad file: it records the error here (it is logged and
counted in ``dkms_scrape_collector_errors``, and it marks the collector unsuccessful, so
readiness built on it becomes "unknown") and carries on with the rest of the host.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..config import Config
from .cache import FileCache
from .diskcache import Persisted
from .reader import DEFAULT_READ_LIMIT, read_bounded
from .rootfs import HostFS

T = TypeVar("T")
log = logging.getLogger("dkms_exporter")


class Unreadable(Exception):
    """A file exists but could not be read or parsed; already recorded in the context."""


@dataclass(frozen=True)
class ReadError:
    collector: str
    path: str
    message: str


@dataclass
class Context:
    fs: HostFS
    cache: FileCache
    config: Config
    collector: str = ""
    errors: list[ReadError] = field(default_factory=list)
    # facts of the collectors that ran before this one (the module and initramfs collectors
    # read the files the kernel collector found); a missing entry means that one failed/is off
    previous: dict[str, Any] = field(default_factory=dict)

    def error(self, path: str, problem: BaseException | str) -> None:
        message = _describe(problem)
        self.errors.append(ReadError(self.collector, path, message))
        log.warning("cannot read a host file", extra={"collector": self.collector, "path": path, "err": message})

    def load(self, hostpath: str, parse: Callable[[bytes], T], *, limit: int = DEFAULT_READ_LIMIT,
             purpose: str | None = None, persist: Persisted | None = None) -> T | None:
        """Parsed contents of a host file, cached by identity (also on disk, with ``persist``
        and --cache.dir); None when it does not exist."""
        try:
            return self.cache.parse(self.fs.local(hostpath), parse, limit=limit, purpose=purpose, persist=persist)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none crashes a scrape
            self.error(hostpath, exc)
            raise Unreadable(hostpath) from exc

    def compute(self, hostpath: str, purpose: str, fn: Callable[[Path, os.stat_result], T],
                companions: tuple[str, ...] = (), persist: Persisted | None = None) -> T | None:
        """fn(local path, stat) for files that are not read whole; cached by identity (the
        file's, and that of the host files in ``companions``; also on disk with ``persist``)."""
        try:
            return self.cache.compute(self.fs.local(hostpath), purpose, fn,
                                      tuple(self.fs.local(c) for c in companions), persist=persist)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Exception as exc:  # noqa: BLE001
            self.error(hostpath, exc)
            raise Unreadable(hostpath) from exc

    def by_content(self, data: bytes, purpose: str, fn: Callable[[], T], persist: Persisted | None = None) -> T:
        """fn() cached by the bytes it is derived from (also on disk with ``persist``): for
        values out of files that have no identity, such as efivarfs variables.  Errors
        propagate; the caller records them (it knows which file the bytes came from)."""
        return self.cache.by_content(data, purpose, fn, persist)

    def cached(self, hostpath: str, purpose: str) -> bool:
        """Whether load/compute of ``hostpath`` for ``purpose`` would answer from memory now
        (one stat; False when that cannot be told): a collector's cue that parsing is ahead."""
        try:
            return self.cache.fresh(self.fs.local(hostpath), purpose)
        except OSError:
            return False

    def forget(self, hostpath: str, purpose: str) -> None:
        """Drop the cached value of ``hostpath`` for ``purpose`` (in memory and on disk), so that
        the next load/compute reads the file again."""
        self.cache.forget(self.same_file_key(hostpath), purpose)

    def same_file_key(self, hostpath: str) -> str:
        """The key the caches file ``hostpath`` under (its local path, links resolved inside the
        root): two host paths with one key are one cache entry."""
        try:
            return self.fs.local(hostpath)
        except OSError:
            return hostpath

    def load_local(self, local: Path, parse: Callable[[bytes], T], *, limit: int = DEFAULT_READ_LIMIT,
                   purpose: str | None = None) -> T | None:
        """Read and parse a file of procfs/sysfs/efivarfs: never cached, because these report
        size 0 and fixed mtimes while their contents change."""
        try:
            return parse(read_bounded(local, limit))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Exception as exc:  # noqa: BLE001
            self.error(str(local), exc)
            raise Unreadable(str(local)) from exc

    def listdir(self, hostpath: str, *, must_be_dir: bool = False) -> list[str] | None:
        """Sorted entry names of a host directory; None when it does not exist.  With
        ``must_be_dir`` (a directory of the layout: /boot, /lib/modules, the DKMS tree), a
        file in its place is a read error, not an absent directory: read as "nothing there", it
        passed a host whose DKMS modules or kernels were hidden behind it."""
        try:
            return sorted(os.listdir(self.fs.local(hostpath)))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            if must_be_dir:
                self.error(hostpath, "not a directory")
            return None
        except OSError as exc:
            self.error(hostpath, exc)
            raise Unreadable(hostpath) from exc

    def dir_entries(self, hostpath: str) -> DirEntries | None:
        """The regular files and the symbolic links of a host directory, cached by the
        directory's identity (an entry added, removed or renamed changes its mtime and ctime);
        None when it does not exist.  One stat a warm call, however many files it holds."""
        return self.compute(hostpath, "dir-entries", _scan_dir)

    def lstat(self, hostpath: str) -> os.stat_result | None:
        """lstat of the last component (the link itself), None when absent."""
        parent, _, name = hostpath.rstrip("/").rpartition("/")
        try:
            return os.lstat(self.fs.local(parent or "/") + "/" + name)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self.error(hostpath, exc)
            raise Unreadable(hostpath) from exc

    def stat(self, hostpath: str) -> os.stat_result | None:
        """stat following links inside the root; None when absent or dangling."""
        try:
            return os.stat(self.fs.local(hostpath))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.error(hostpath, exc)
                return None
            self.error(hostpath, exc)
            raise Unreadable(hostpath) from exc

    def is_dir(self, hostpath: str) -> bool:
        st = self.stat(hostpath)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def exists(self, hostpath: str) -> bool:
        return self.stat(hostpath) is not None


@dataclass(frozen=True)
class DirEntries:
    files: frozenset[str]    # regular files (by the entry's own type: not following links)
    links: frozenset[str]    # symbolic links: whether they lead to a file needs a resolved stat


def _scan_dir(path: Path, _st: os.stat_result) -> DirEntries:
    files, links = set(), set()
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_symlink():
                links.add(entry.name)
            elif entry.is_file(follow_symlinks=False):
                files.add(entry.name)
    return DirEntries(frozenset(files), frozenset(links))


def _describe(problem: BaseException | str) -> str:
    if isinstance(problem, str):
        return problem
    if isinstance(problem, OSError) and problem.strerror:
        return problem.strerror
    return f"{type(problem).__name__}: {problem}"
