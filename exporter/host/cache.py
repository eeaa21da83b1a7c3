"""Parse results cached by file identity, so an unchanged host costs stat calls only.

Identity is (device, inode, size, mtime_ns, ctime_ns): every writer we care about (dpkg, dkms,
update-initramfs, depmod) replaces or rewrites files, which changes at least one of them.  The
ctime is there for the writers that keep the rest: a file rewritten in place with the same size
and its old mtime put back (cp -p, rsync -t, install -p, a restore) still gets a new ctime, which
no unprivileged call can set back.
Parse errors are cached too, so a corrupt 100 MB image is not re-read on every scrape;
OS errors are not (the next scrape tries again).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from .diskcache import MISS, DiskCache, Persisted
from .reader import DEFAULT_READ_LIMIT, read_bounded

T = TypeVar("T")


def identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _identity_or_none(path: str | Path) -> tuple[int, int, int, int, int] | None:
    try:
        return identity(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass
class _Entry:
    ident: tuple
    value: object
    error: BaseException | None
    generation: int


class FileCache:
    """Maps (path, purpose) to a value computed from the file, valid while its identity holds."""

    def __init__(self, store: DiskCache | None = None) -> None:
        self.store = store      # the persistent cache (--cache.dir), consulted on a miss for persisted purposes
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self.hits = 0
        self.misses = 0

    def begin_scrape(self) -> None:
        with self._lock:
            self.generation += 1

    def sweep(self, keep_generations: int = 3) -> None:
        """Drop entries no scrape asked for lately (files that went away)."""
        with self._lock:
            floor = self.generation - keep_generations
            for key in [k for k, e in self._entries.items() if e.generation < floor]:
                del self._entries[key]

    def fresh(self, path: str | Path, purpose: str) -> bool:
        """Whether compute(path, purpose, ...) would answer from memory now (one stat): lets a
        collector tell a warm scrape from one that must parse, without counting either."""
        try:
            ident = identity(os.stat(path))
        except OSError:
            return False
        with self._lock:
            entry = self._entries.get((str(path), purpose))
        return entry is not None and entry.ident == ident

    def forget(self, path: str | Path, purpose: str) -> None:
        """Drop one entry: its value was derived around a read error that must be seen again."""
        with self._lock:
            self._entries.pop((str(path), purpose), None)
        if self.store is not None:
            self.store.discard(str(path), purpose)

    def __len__(self) -> int:
        return len(self._entries)

    def compute(self, path: str | Path, purpose: str, fn: Callable[[Path, os.stat_result], T],
                companions: tuple[str | Path, ...] = (), persist: Persisted | None = None) -> T:
        """fn(path, stat) cached by the file's identity (and that of ``companions``, files that
        change its meaning, such as an SQLite database's -wal; absent ones count as absent).
        With ``persist`` and a store, a miss here looks in the persistent cache before calling
        fn, and fn's value is stored there (parse errors are not: they are cheap to find again).
        OSError from stat/fn propagates."""
        st = os.stat(path)
        ident = identity(st) + tuple(_identity_or_none(c) for c in companions)
        return self._cached(str(path), purpose, ident, lambda: fn(path, st), persist)

    def by_content(self, data: bytes, purpose: str, fn: Callable[[], T], persist: Persisted | None = None) -> T:
        """fn() cached by the SHA-256 of ``data``, in memory and (with ``persist``) on disk:
        for what has no file identity to go by (an efivarfs variable reports size 0 and the
        mount's times), the bytes themselves are the identity.  Errors as in compute."""
        digest = hashlib.sha256(data).hexdigest()
        return self._cached(f"sha256:{digest}", purpose, (len(data), digest), fn, persist)

    def _cached(self, key_path: str, purpose: str, ident: tuple, make: Callable[[], T],
                persist: Persisted | None) -> T:
        key = (key_path, purpose)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.ident == ident:
                entry.generation = self.generation
                self.hits += 1
                if entry.error is not None:
                    raise entry.error
                return entry.value  # type: ignore[return-value]
            self.misses += 1
        if persist is not None and self.store is not None:
            stored = self.store.get(key_path, purpose, ident, persist)
            if stored is not MISS:
                with self._lock:
                    self._entries[key] = _Entry(ident, stored, None, self.generation)
                return stored  # type: ignore[return-value]
        try:
            value = make()
        except OSError:
            raise
        except Exception as exc:  # a parse error: remember it for this identity
            with self._lock:
                self._entries[key] = _Entry(ident, None, exc, self.generation)
            raise
        with self._lock:
            self._entries[key] = _Entry(ident, value, None, self.generation)
        if persist is not None and self.store is not None:
            self.store.put(key_path, purpose, ident, persist, value)
        return value

    def parse(self, path: str | Path, parse: Callable[[bytes], T], *, purpose: str | None = None,
              limit: int = DEFAULT_READ_LIMIT, persist: Persisted | None = None) -> T:
        """parse(bytes of the file), cached by identity; the read is bounded by ``limit``."""
        name = purpose or getattr(parse, "__qualname__", repr(parse))
        return self.compute(path, name, lambda p, _st: parse(read_bounded(p, limit)), persist=persist)
