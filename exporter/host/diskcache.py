"""The persistent cache: parse results that cost (initramfs listings, module files, export
tables, depmod indexes) kept on disk between processes, so a ``textfile`` run from a timer on an
unchanged host costs interpreter start and stat calls, not a decompression of every image.

One file per (host path, purpose), named by a hash of both, holding one header line of JSON
(format, schema, purpose, path, the file identity it was computed from, length and SHA-256 of
the body) and the body (the value as JSON, see exporter/formats/jsoncodec.py).  It is trusted
only when all of it matches: a file that is truncated, damaged, of another schema or for
another file or identity is ignored (counted by reason, logged once per file) and rewritten by
the next store.  No pickle: decoding builds only the allowlisted types.

Safety: the directory must be a real directory owned by this process's user and writable by no
one else (otherwise the cache is off, logged, and every lookup is a miss); each file is opened
without following links and must be a regular file owned by this user, not group/world
writable.  The checksum catches damage, not an adversary: ownership is what keeps others out.

Concurrency: a store writes a temporary file in the directory and renames it over the entry,
so a reader (another ``serve``, a ``textfile`` run from the kernel hook) sees the old file or
the new one, never half of one; two writers of the same entry both write whole files and the
last rename wins.  Size: after stores, the oldest entries (by mtime) are removed until the
directory holds at most ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
from collections import Counter
from typing import Any, Protocol

log = logging.getLogger("dkms_exporter")

FORMAT = "dkms-exporter-cache/1"
DEFAULT_DIR = "/var/cache/dkms-exporter"   # systemd's CacheDirectory=dkms-exporter


def default_dir() -> str:
    """--cache.dir's default: the directory systemd made for the unit's CacheDirectory= (it
    sets $CACHE_DIRECTORY to it), else /var/cache/dkms-exporter."""
    return os.environ.get("CACHE_DIRECTORY", "").split(":")[0] or DEFAULT_DIR
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_ENTRY_BYTES = 32 * 1024 * 1024
SUFFIX = ".json"
STALE_TEMP_SECONDS = 3600
MISS = object()
# why a cache file was not used (the label values of dkms_exporter_cache_rejected_total)
REJECT_REASONS = ("unsafe", "corrupt", "schema", "foreign")


class Persisted(Protocol):
    """What a purpose needs to be kept on disk (exporter.formats.jsoncodec.Codec is one)."""

    schema: str

    def encode(self, value: Any) -> Any: ...

    def decode(self, data: Any) -> Any: ...


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class DiskCache:
    """Entries keyed by (path, purpose), valid for one identity and one schema."""

    def __init__(self, directory: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.evicted = 0
        self.rejected: Counter[str] = Counter({r: 0 for r in REJECT_REASONS})
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self.usable, self.problem = self._prepare()
        if not self.usable:
            self.rejected["unsafe"] += 1
            # a user running `check` cannot create /var/cache/...: no cache is not a fault then
            (log.info if self.problem.startswith("cannot create") else log.warning)(
                "persistent cache off", extra={"dir": directory, "err": self.problem})

    def _prepare(self) -> tuple[bool, str]:
        """Create the directory if needed and check that it is safe: a directory owned by this
        user and writable by no one else.  A symlink to one is followed only when the link is
        root's or this user's (systemd's DynamicUser= makes /var/cache/NAME a root-owned link
        to private/NAME); the resolved path is used from then on."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            link = os.lstat(self.directory)
        except OSError as exc:
            return False, f"cannot create it: {exc.strerror or exc}"
        if stat.S_ISLNK(link.st_mode):
            if link.st_uid not in (0, os.geteuid()):
                return False, f"a symlink owned by uid {link.st_uid}"
            self.directory = os.path.realpath(self.directory)
        try:
            st = os.lstat(self.directory)
        except OSError as exc:
            return False, f"cannot read it: {exc.strerror or exc}"
        if not stat.S_ISDIR(st.st_mode):
            return False, "not a directory"
        if st.st_uid != os.geteuid():
            return False, f"owned by uid {st.st_uid}, not by this process's uid {os.geteuid()}"
        if st.st_mode & 0o022:
            return False, f"writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
        return True, ""

    def _entry_path(self, path: str, purpose: str) -> str:
        digest = hashlib.sha256(f"{purpose}\0{path}".encode("utf-8", "surrogateescape")).hexdigest()[:40]
        return os.path.join(self.directory, digest + SUFFIX)

    # -- lookup ------------------------------------------------------------------------------
    def get(self, path: str, purpose: str, ident: tuple, codec: Persisted) -> Any:
        """The stored value for this identity, or MISS (absent, stale or rejected)."""
        if not self.usable:
            return MISS
        entry = self._entry_path(path, purpose)
        try:
            value = self._read(entry, path, purpose, ident, codec)
        except FileNotFoundError:
            value = MISS
        except Rejected as exc:
            self._reject(entry, exc.reason, str(exc))
            value = MISS
        except OSError as exc:
            self._reject(entry, "unsafe", f"cannot open: {exc.strerror or exc}")
            value = MISS
        with self._lock:
            if value is MISS:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def _read(self, entry: str, path: str, purpose: str, ident: tuple, codec: Persisted) -> Any:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Rejected("unsafe", "not a regular file")
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise Rejected("unsafe", f"owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}: "
                                         "not this user's, or writable by others")
            if st.st_size > MAX_ENTRY_BYTES:
                raise Rejected("corrupt", f"{st.st_size} bytes, over the {MAX_ENTRY_BYTES}-byte bound")
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read(MAX_ENTRY_BYTES + 1)
        finally:
            os.close(fd)
        head, sep, body = raw.partition(b"\n")
        try:
            header = json.loads(head)
        except ValueError:
            raise Rejected("corrupt" if head.startswith(b'{"format"') else "foreign", "no header") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise Rejected("foreign", "not a dkms-exporter cache file")
        if header.get("schema") != codec.schema:
            raise Rejected("schema", f"schema {header.get('schema')!r}, this version writes {codec.schema!r}")
        if header.get("purpose") != purpose or header.get("path") != path:
            raise Rejected("foreign", "written for another file")   # a hash collision, or a copied file
        if not sep or header.get("length") != len(body) or \
                header.get("sha256") != hashlib.sha256(body).hexdigest():
            raise Rejected("corrupt", "length or checksum does not match the body")
        if header.get("identity") != json.loads(json.dumps(list(ident))):
            return MISS   # the file changed since: an ordinary miss, the next store replaces it
        try:
            return codec.decode(json.loads(body))
        except Exception as exc:  # noqa: BLE001 - whatever the body is, it is refused, never trusted
            raise Rejected("corrupt", f"body does not decode: {type(exc).__name__}: {exc}") from None

    def _reject(self, entry: str, reason: str, detail: str) -> None:
        with self._lock:
            self.rejected[reason] += 1
            first = entry not in self._logged
            self._logged.add(entry)
        if first:
            log.warning("ignoring a persistent cache file", extra={"file": entry, "reason": reason, "err": detail})

    # -- store -------------------------------------------------------------------------------
    def put(self, path: str, purpose: str, ident: tuple, codec: Persisted, value: Any) -> None:
        """Store ``value`` (best effort: a full disk or an unencodable value is logged, not raised)."""
        if not self.usable:
            return
        try:
            body = json.dumps(codec.encode(value), separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            log.warning("cannot keep a parse result on disk", extra={"purpose": purpose, "err": str(exc)})
            return
        if len(body) > MAX_ENTRY_BYTES:
            return
        header = json.dumps({"format": FORMAT, "schema": codec.schema, "purpose": purpose, "path": path,
                             "identity": list(ident), "length": len(body),
                             "sha256": hashlib.sha256(body).hexdigest()}, separators=(",", ":")).encode()
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(header + b"\n" + body)
                os.replace(tmp, self._entry_path(path, purpose))
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot write the persistent cache", extra={"dir": self.directory, "err": exc.strerror or str(exc)})
            return
        with self._lock:
            self.stores += 1

    def discard(self, path: str, purpose: str) -> None:
        """Remove one entry (its value was derived around a read error)."""
        if self.usable:
            _unlink(self._entry_path(path, purpose))

    def enforce_bound(self) -> None:
        """Remove the oldest entries until the directory holds at most max_bytes, and temporary
        files a killed writer left behind."""
        if not self.usable:
            return
        import time
        entries, total, now = [], 0, time.time()
        try:
            with os.scandir(self.directory) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if e.name.startswith(".tmp-"):
                        if now - st.st_mtime > STALE_TEMP_SECONDS:
                            _unlink(e.path)
                        continue
                    if e.name.endswith(SUFFIX):
                        entries.append((st.st_mtime_ns, st.st_size, e.path))
                        total += st.st_size
        except OSError:
            return
        for _, size, entry in sorted(entries):
            if total <= self.max_bytes:
                break
            if _unlink(entry):
                with self._lock:
                    self.evicted += 1
            total -= size


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:   # another process evicted it first
        return False
    except OSError:
        return False
