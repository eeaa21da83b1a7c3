"""The web config's HTTP side: basic auth, its rate limit and its extra headers, as WSGI middleware.

As in exporter-toolkit (web/handler.go): every path is protected; ``basic_auth_users`` holds
bcrypt hashes; an unknown user is checked against a dummy hash as costly as the costliest real
one, so the answer takes as long as for a known user; the outcome of each (user, hash, password)
check is cached, so bcrypt's cost is paid once per credential, not on every scrape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

from .config_file import RateLimit, WebConfig
from .errors import WebConfigError
from .responses import StartResponse, WSGIApp, plain

AUTH_CACHE_SIZE = 100                 # exporter-toolkit's cacheSize
BCRYPT_WAIT_SECONDS = 5.0             # queueing for the bcrypt lock longer than this gets a 503


class BasicAuthMiddleware:
    """WSGI middleware: the web config's headers, rate limit and basic auth in front of ``app``.

    ``provider()`` returns the current WebConfig (or raises WebConfigError -> 500).
    """

    def __init__(self, app: WSGIApp, provider: Callable[[], WebConfig]) -> None:
        self.app = app
        self.provider = provider
        self.cache = _AuthCache()
        self._bcrypt_lock = threading.Lock()   # one bcrypt at a time: it is CPU-bound by design
        self._bucket: _TokenBucket | None = None
        self._bucket_lock = threading.Lock()
        self.bcrypt_checks = 0                 # how often bcrypt actually ran (for tests, benchmarks)
        try:
            dummy_hash(provider())             # pay for the dummy hash now, not on the first request
        except WebConfigError:
            pass                               # answered with 500 until the file is fixed

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        try:
            config = self.provider()
        except WebConfigError:
            return plain(environ, start_response, "500 Internal Server Error", "Internal Server Error\n")
        if not self._allow(config.rate_limit):
            return plain(environ, start_response, "429 Too Many Requests", "Too Many Requests\n")
        respond = _with_headers(start_response, config.headers)
        if not config.users:
            return self.app(environ, respond)
        try:
            ok = self.authenticate(config, basic_auth_credentials(environ))
        except _Busy:
            return plain(environ, respond, "503 Service Unavailable", "Service Unavailable\n")
        if ok:
            return self.app(environ, respond)
        return plain(environ, respond, "401 Unauthorized", "Unauthorized\n",
                     [("WWW-Authenticate", 'Basic realm="dkms-exporter", charset="UTF-8"')])

    def _allow(self, limit: RateLimit | None) -> bool:
        if limit is None:
            return True
        with self._bucket_lock:
            if self._bucket is None or self._bucket.limit != limit:
                self._bucket = _TokenBucket(limit)
            bucket = self._bucket
        return bucket.allow()

    def authenticate(self, config: WebConfig, credentials: tuple[bytes, bytes] | None) -> bool:
        """True for a known user with the right password; the same bcrypt work for an unknown user."""
        dummy = dummy_hash(config)      # a reloaded config's, made before any user is looked up
        if credentials is None:
            return False
        user, password = credentials
        hashed = config.users.get(user)
        known = hashed is not None
        if hashed is None:
            hashed = dummy
        key = self.cache.key(user, hashed, password)
        outcome = self.cache.get(key)
        if outcome is None:
            matched = self._checkpw(password, hashed)
            outcome = known and matched
            self.cache.set(key, outcome)
        return known and outcome

    def _checkpw(self, password: bytes, hashed: bytes) -> bool:
        if not self._bcrypt_lock.acquire(timeout=BCRYPT_WAIT_SECONDS):
            raise _Busy()
        try:
            self.bcrypt_checks += 1
            import bcrypt   # on the first password checked: a web config without users never needs it
            return bcrypt.checkpw(password, hashed)
        except ValueError:      # longer than bcrypt's 72 bytes: Go's bcrypt refuses it too
            return False
        finally:
            self._bcrypt_lock.release()


def basic_auth_credentials(environ: Mapping[str, Any]) -> tuple[bytes, bytes] | None:
    """(user, password) from an ``Authorization: Basic`` header, as Go's Request.BasicAuth()."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, param = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(param.strip().encode("latin-1"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    user, sep, password = raw.partition(b":")
    return (user, password) if sep else None


def dummy_hash(config: WebConfig) -> bytes:
    """The hash an unknown user is checked against: as costly as the costliest real one."""
    return _dummy_hash(max((int(h[4:6]) for h in config.users.values()), default=10))


@lru_cache(maxsize=None)
def _dummy_hash(cost: int) -> bytes:
    """A bcrypt hash of a random secret: checking any password against it costs like a real one."""
    import bcrypt
    return bcrypt.hashpw(secrets.token_bytes(24).hex().encode(), bcrypt.gensalt(cost))


class _AuthCache:
    """Outcome of (user, hash, password) checks, keyed by an HMAC under a per-process key.

    exporter-toolkit caches the same triple; keying by a keyed hash instead of the plaintext
    keeps passwords out of the exporter's memory.  Bounded: when full, the oldest tenth goes.
    """

    def __init__(self, size: int = AUTH_CACHE_SIZE) -> None:
        self._size = size
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, bool] = {}
        self._lock = threading.Lock()

    def key(self, *parts: bytes) -> bytes:
        msg = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def get(self, key: bytes) -> bool | None:
        with self._lock:
            return self._entries.get(key)

    def set(self, key: bytes, value: bool) -> None:
        with self._lock:
            if len(self._entries) >= self._size:
                for old in list(self._entries)[: max(self._size // 10, 1)]:
                    del self._entries[old]
            self._entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)


class _Busy(Exception):
    """Too many password checks queued: answer 503 rather than pile up threads."""


class _TokenBucket:
    """golang.org/x/time/rate.Limiter's Allow(): ``burst`` tokens, one more every ``interval``."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._tokens = float(limit.burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.limit.burst),
                               self._tokens + (now - self._last) / self.limit.interval)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def _with_headers(start_response: StartResponse, headers: tuple[tuple[str, str], ...]) -> StartResponse:
    """The file's headers on every response, replacing the application's of the same name."""
    if not headers:
        return start_response
    names = {n.lower() for n, _ in headers}

    def respond(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> object:
        kept = [(n, v) for n, v in response_headers if n.lower() not in names]
        return start_response(status, kept + list(headers), exc_info)
    return respond
