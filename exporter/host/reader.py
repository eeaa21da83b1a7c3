"""The one place the exporter opens host files: bounded, non-blocking, regular files only.

Every read of a host file goes through here, whether whole (``read_bounded``, for parsers of
bytes) or streamed (``open_regular``, for initramfs images and other files too big to hold).
Opening is non-blocking and checked with fstat before any read, so a FIFO never blocks a
collector and /dev/zero is never read to a bound; a file over its bound is refused unread,
never truncated into a half-truth.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

DEFAULT_READ_LIMIT = 64 * 1024 * 1024
_CHUNK = 1 << 20


class FileTooLarge(ValueError):
    """A file is larger than we are willing to read for its purpose."""


class NotRegularFile(OSError):
    """A FIFO, socket or device where a file is expected: opening a FIFO for reading would block
    until a writer comes, and /dev/zero never ends."""


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def _check_regular(st: os.stat_result, path: str | Path) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    if not stat.S_ISREG(st.st_mode):
        kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
        raise NotRegularFile(errno.EINVAL, f"not a regular file but a {kind}", str(path))


def read_bounded(path: str | Path, limit: int) -> bytes:
    """Read a whole regular file, refusing (not truncating) one larger than ``limit`` bytes.

    It asks for the size fstat reports (+1 byte, to notice growth) and 1 MiB at a time after
    that, never for ``limit`` bytes at once: read(n) allocates n bytes up front, and 256 MiB
    per module file fails under an address-space limit.  procfs, sysfs and efivarfs files
    report size 0 and are read in chunks up to the bound."""
    with open(path, "rb", opener=_nonblocking) as f:
        st = os.fstat(f.fileno())
        _check_regular(st, path)
        if st.st_size > limit:
            raise FileTooLarge(f"{path}: {st.st_size} bytes, larger than {limit}")
        parts: list[bytes] = []
        total = 0
        want = st.st_size + 1 if st.st_size > 0 else _CHUNK   # procfs/sysfs files report size 0
        while total <= limit:
            chunk = f.read(min(want, limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            want = _CHUNK
    if total > limit:
        raise FileTooLarge(f"{path}: larger than {limit} bytes")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_optional(path: str | Path, limit: int) -> bytes | None:
    """read_bounded, or None when the file (or a directory on its path) does not exist."""
    try:
        return read_bounded(path, limit)
    except (FileNotFoundError, NotADirectoryError):
        return None


def open_regular(path: str | Path) -> BinaryIO:
    """Open a regular file for streaming (buffered), without blocking on a FIFO on the way."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check_regular(os.fstat(fd), path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=65536)
    except BaseException:
        os.close(fd)
        raise


def read_ends(path: str | Path, head: int, tail: int) -> tuple[bytes, bytes]:
    """A file of at most ``tail`` bytes whole (as ``(data, b"")``), else its first ``head`` and
    last ``tail`` bytes: logs where the header names the build and the end says why it failed."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size <= tail:
            return f.read(tail), b""
        first = f.read(head)
        f.seek(size - tail)
        return first, f.read(tail)


class ChangedWhileRead(OSError):
    """A file was rewritten while it was being read: the next scrape reads it again."""


def query_sqlite(path: str | Path, sql: str, limit: int, convert=None) -> list:
    """Rows of ``sql`` on an SQLite database another program (rpm) may be writing, read without
    taking its locks or creating files on the host.  Sources: docs/formats.md, "The rpm database".

    - no ``-wal`` file, or an empty one (rpm checkpoints and truncates it when it closes the
      database): opened ``immutable`` (no locks, no -shm/-wal created); the file's identity is
      compared before and after, so a checkpoint during the read is noticed, not served;
    - a ``-wal`` with frames and its ``-shm``: opened ``mode=ro``, SQLite's own protocol for
      readers of a WAL database, which sees the last committed transaction and never blocks a
      writer;
    - a ``-wal`` with frames and no ``-shm`` (a writer that crashed), or a hot rollback
      ``-journal``: refused, since reading would need the host's files changed.

    ``convert(row)`` maps each row while the database is open (blobs need not all be held)."""
    path = Path(path)
    with open_regular(path) as f:
        before = os.fstat(f.fileno())
    if before.st_size > limit:
        raise FileTooLarge(f"{path}: {before.st_size} bytes, larger than {limit}")
    wal, shm, journal = (Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal"))
    if _size(journal):
        raise ChangedWhileRead(errno.EBUSY, "a rollback journal is present (a transaction is in progress "
                               "or was interrupted)", str(journal))
    wal_size = _size(wal)
    if wal_size and not shm.exists():
        raise ChangedWhileRead(errno.EBUSY, "write-ahead log without its -shm index (reading it would "
                               "create files on the host)", str(wal))
    import sqlite3   # the RPM family's rpmdb.sqlite only: not loaded on other hosts

    uri = f"{path.as_uri()}?" + ("mode=ro" if wal_size else "immutable=1")
    con = sqlite3.connect(uri, uri=True, timeout=2.0, check_same_thread=False)
    try:
        con.execute("PRAGMA query_only = 1")
        rows = [convert(r) if convert else r for r in con.execute(sql)]
        failure = None
    except sqlite3.DatabaseError as exc:
        rows, failure = [], exc
    finally:
        con.close()
    if not wal_size:
        after = os.stat(path)
        if (after.st_ino, after.st_size, after.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns) \
                or _size(wal):
            raise ChangedWhileRead(errno.EAGAIN, "rewritten while it was read", str(path))
    if failure is not None:
        raise ValueError(f"{path}: sqlite: {failure}") from None
    return rows


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        return 0
