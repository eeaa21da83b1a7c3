"""--web.config.file: exporter-toolkit's web configuration format, read, checked and kept current.

Operators already have these files for node_exporter and friends, so the keys, defaults and
checks follow prometheus/exporter-toolkit (web/tls_config.go, web/handler.go,
docs/web-configuration.md):

- unknown and duplicate keys are errors, as with yaml.v2's UnmarshalStrict;
- relative file names are relative to the web config file's directory;
- ``basic_auth_users`` holds bcrypt hashes (``htpasswd -nBC 10 ""``), checked by basic_auth.py;
- ``tls_server_config`` is turned into an SSL context by tls.py; the file is refused when
  Python's ssl module cannot do what Go's crypto/tls would (``client_auth_type`` values that
  accept unverified client certificates, ``curve_preferences``).  HTTP/2 is not served;
  ``http2`` is accepted and ignored;
- the file is re-read when it changes (by file identity, not on every request): while it is
  broken, requests get 500 and TLS handshakes fail, so a broken file never opens the endpoint up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..formats.duration import DurationError, parse_duration
from ..host.cache import identity
from .errors import WebConfigError
from .tls import CLIENT_AUTH, GO_CIPHER_SUITES, TLS_VERSIONS, UNVERIFIED_CLIENT_AUTH, TLSServerConfig

__all__ = ["RateLimit", "TLSServerConfig", "WebConfig", "WebConfigError", "WebConfigProvider",
           "load_web_config", "parse_web_config"]

log = logging.getLogger("dkms_exporter")

MAX_FILE_BYTES = 1024 * 1024          # the web config file itself

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
_TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites",
             "prefer_server_cipher_suites", "curve_preferences"}
_HTTP_KEYS = {"http2", "headers"}
_RATE_KEYS = {"interval", "burst"}

# exporter-toolkit's extraHTTPHeaders: the only headers the file may set, and their allowed values
# (None: any value).
EXTRA_HTTP_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

# $2a$/$2b$/$2y$, two-digit cost, 22 characters of salt and 31 of hash (bcrypt's base64).
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class RateLimit:
    """exporter-toolkit's rate_limit: a token bucket refilled every ``interval`` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True)
class WebConfig:
    """One parsed web config file.  ``users`` maps UTF-8 user names to bcrypt hashes."""

    path: Path | None = None
    tls: TLSServerConfig | None = None
    users: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: RateLimit | None = None
    http2: bool = True

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS server context, or None when the file does not turn TLS on."""
        return None if self.tls is None else self.tls.ssl_context()

    def describe(self) -> str:
        """What the file turns on, for the log (never a secret)."""
        tls = "off" if self.tls is None else f"on (client certificates: {self.tls.client_auth_type})"
        auth = f"{len(self.users)} user(s)" if self.users else "off"
        return f"TLS {tls}, basic auth {auth}"


def load_web_config(path: str | os.PathLike) -> WebConfig:
    """Read, parse and validate a web config file, including loading its certificates.

    Raises WebConfigError with a message naming the file and the offending key.
    """
    path = Path(path)
    data, _ = _read_with_identity(path)
    config = parse_web_config(data, path)
    if config.tls is not None:
        config.tls.ssl_context()      # certificate, key and CA files load, or a clear error now
    return config


def _read_with_identity(path: Path) -> tuple[bytes, tuple[int, ...]]:
    """The file's bytes and the identity of exactly the file that was read (not a later one)."""
    try:
        with open(path, "rb") as f:
            ident = identity(os.fstat(f.fileno()))
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise WebConfigError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise WebConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return data, ident


# --- parsing and validation ----------------------------------------------------------------

def parse_web_config(data: bytes, path: Path) -> WebConfig:
    """Validate the YAML document strictly (unknown or duplicate keys are errors, as in Go)."""
    try:
        raw = yaml.load(data, Loader=_StrictLoader) or {}
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: not valid YAML: {exc}") from None
    where = str(path)
    top = _mapping(raw, where, _TOP_KEYS)
    return WebConfig(
        path=path,
        tls=_tls(top.get("tls_server_config"), path.parent, f"{where}: tls_server_config"),
        users=_users(top.get("basic_auth_users"), f"{where}: basic_auth_users"),
        headers=_headers(top.get("http_server_config"), f"{where}: http_server_config"),
        rate_limit=_rate_limit(top.get("rate_limit"), f"{where}: rate_limit"),
        http2=_http2(top.get("http_server_config"), f"{where}: http_server_config"),
    )


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (yaml.v2's UnmarshalStrict does too)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "found an unhashable key",
                                                    key_node.start_mark) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                    key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _mapping(value: Any, where: str, keys: set[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise WebConfigError(f"{where}: unknown key(s) {sorted(map(str, unknown))} "
                             f"(known: {sorted(keys)})")
    return value


def _string(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebConfigError(f"{where}: expected a list of strings")
    return tuple(value)


def _tls(value: Any, base: Path, where: str) -> TLSServerConfig | None:
    raw = _mapping(value, where, _TLS_KEYS)
    s = {k: _string(raw.get(k), f"{where}.{k}") for k in
         ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type")}
    if not any(s.values()):
        return None            # the toolkit's IsEnabled(): no TLS key set means plain HTTP
    for inline, name in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if s[inline] and s[name]:
            raise WebConfigError(f"{where}: set {inline} or {name}, not both")
    if not (s["cert"] or s["cert_file"]):
        raise WebConfigError(f"{where}: missing one of cert or cert_file")
    if not (s["key"] or s["key_file"]):
        raise WebConfigError(f"{where}: missing one of key or key_file")
    auth = _client_auth(s["client_auth_type"], bool(s["client_ca"] or s["client_ca_file"]), where)
    low = _tls_version(raw.get("min_version"), "TLS12", f"{where}.min_version")
    high = _tls_version(raw.get("max_version"), "TLS13", f"{where}.max_version")
    if low > high:
        raise WebConfigError(f"{where}: min_version is above max_version")
    if raw.get("curve_preferences"):
        raise WebConfigError(f"{where}.curve_preferences: not supported (Python's ssl module cannot "
                             f"set a curve preference list); remove it to use OpenSSL's defaults")
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}.prefer_server_cipher_suites: expected true or false")
    return TLSServerConfig(
        cert_file=_join(base, s["cert_file"]), key_file=_join(base, s["key_file"]),
        client_ca_file=_join(base, s["client_ca_file"]),
        cert=s["cert"], key=s["key"], client_ca=s["client_ca"],
        client_auth_type=auth,
        client_allowed_sans=_strings(raw.get("client_allowed_sans"), f"{where}.client_allowed_sans"),
        min_version=low,
        max_version=high,
        cipher_suites=_ciphers(raw.get("cipher_suites"), f"{where}.cipher_suites"),
        prefer_server_cipher_suites=prefer,
        where=where,
    )


def _join(base: Path, name: str | None) -> Path | None:
    """config_util.JoinDir: relative names are relative to the web config file's directory."""
    return None if name is None else base / name


def _client_auth(value: str | None, has_ca: bool, where: str) -> str:
    auth = value or "NoClientCert"
    if auth in UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(f"{where}.client_auth_type: {auth} accepts client certificates nobody "
                             f"verified and is not supported; use RequireAndVerifyClientCert")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(f"{where}.client_auth_type: invalid {auth!r} (one of {sorted(CLIENT_AUTH)})")
    if has_ca and auth == "NoClientCert":
        raise WebConfigError(f"{where}: client CA's have been configured without a Client Auth Policy "
                             f"(set client_auth_type: RequireAndVerifyClientCert)")
    if not has_ca and auth != "NoClientCert":
        raise WebConfigError(f"{where}.client_auth_type: {auth} needs client_ca_file (or client_ca) to "
                             f"verify client certificates against")
    return auth


def _tls_version(value: Any, default: str, where: str) -> ssl.TLSVersion:
    name = default if value is None else value
    if name not in TLS_VERSIONS:
        raise WebConfigError(f"{where}: unknown TLS version {name!r} (one of {sorted(TLS_VERSIONS)})")
    return TLS_VERSIONS[name]


def _ciphers(value: Any, where: str) -> tuple[str, ...]:
    names = _strings(value, where) or ()
    unknown = [n for n in names if n not in GO_CIPHER_SUITES]
    if unknown:
        raise WebConfigError(f"{where}: unknown cipher(s) {unknown} (Go's tls.CipherSuites() names, "
                             f"e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    return tuple(o for o in (GO_CIPHER_SUITES[n] for n in names) if o is not None)


def _users(value: Any, where: str) -> dict[bytes, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping of user name to bcrypt hash")
    users: dict[bytes, bytes] = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or ":" in user:
            raise WebConfigError(f"{where}: user name {user!r} must be a string without ':'")
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed) \
                or not 4 <= int(hashed[4:6]) <= 31:
            # the hash itself is a secret: name the user, not the value
            raise WebConfigError(f"{where}: the password of user {user!r} is not a bcrypt hash "
                                 f"($2y$10$... as `htpasswd -nBC 10 \"\"` prints)")
        users[user.encode("utf-8")] = hashed.encode("ascii")
    return users


def _headers(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    raw = _mapping(value, where, _HTTP_KEYS).get("headers")
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise WebConfigError(f"{where}.headers: expected a mapping of header name to value")
    headers = []
    for name, val in raw.items():
        if name not in EXTRA_HTTP_HEADERS:
            raise WebConfigError(f"{where}.headers: HTTP header {name!r} can not be configured "
                                 f"(one of {sorted(EXTRA_HTTP_HEADERS)})")
        allowed = EXTRA_HTTP_HEADERS[name]
        if not isinstance(val, str) or any(ord(c) < 32 or ord(c) == 127 for c in val):
            raise WebConfigError(f"{where}.headers.{name}: expected a one-line string")
        if allowed is not None and val not in allowed:
            raise WebConfigError(f"{where}.headers: invalid value for {name}. Expected one of: "
                                 f"{list(allowed)}, but got: {val!r}")
        if val:
            headers.append((name, val))
    return tuple(headers)


def _http2(value: Any, where: str) -> bool:
    http2 = _mapping(value, where, _HTTP_KEYS).get("http2", True)
    if not isinstance(http2, bool):
        raise WebConfigError(f"{where}.http2: expected true or false")
    return http2


def _rate_limit(value: Any, where: str) -> RateLimit | None:
    raw = _mapping(value, where, _RATE_KEYS)
    if not raw:
        return None
    interval = interval_seconds(raw.get("interval", 0), f"{where}.interval")
    burst = raw.get("burst", 0)
    if interval == 0:
        return None            # the toolkit: "set to 0 to disable rate limiter"
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
        raise WebConfigError(f"{where}.burst: expected an integer >= 1 (0 would refuse every request)")
    return RateLimit(interval=interval, burst=burst)


def interval_seconds(value: Any, where: str) -> float:
    """A Go duration in the file ("15s", "1m30s", "250ms"; formats/duration.py) in seconds, >= 0.

    YAML's integer 0 is allowed bare, as the toolkit's docs write it; any other number is
    refused: yaml.v2 would read it as nanoseconds, which is never what was meant."""
    if value == 0 and not isinstance(value, bool):
        return 0.0
    seconds = -1.0
    if isinstance(value, str):
        with contextlib.suppress(DurationError):
            seconds = parse_duration(value)
    if seconds < 0:
        raise WebConfigError(f"{where}: expected a duration such as 1s or 250ms, got {value!r}")
    return seconds


# --- keeping the config current ------------------------------------------------------------

class WebConfigProvider:
    """The current web config, re-read when the file's identity changes.

    Calling it returns the WebConfig, or raises WebConfigError while the file is broken (not
    retried until the file changes again).  Each distinct error is logged once.  The TLS
    context follows the config and its certificate files in tls.ServerContexts.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        data, ident = _read_with_identity(self.path)
        config = parse_web_config(data, self.path)       # a bad file at start raises: no start
        if config.tls is not None:   # certificate, key and CA load now, or a clear error at start
            config.tls.ssl_context()
        self._state: tuple[tuple[int, ...] | None, WebConfig | WebConfigError] = (ident, config)
        log.info("web config loaded: %s", config.describe(), extra={"file": self.path})

    def __call__(self) -> WebConfig:
        try:
            current: tuple[int, ...] | None = identity(os.stat(self.path))
        except OSError:
            current = None
        with self._lock:
            if current is None or current != self._state[0]:
                self._state = self._reload()
            value = self._state[1]
        if isinstance(value, WebConfigError):
            raise value
        return value

    def _reload(self) -> tuple[tuple[int, ...] | None, WebConfig | WebConfigError]:
        try:
            data, ident = _read_with_identity(self.path)
        except WebConfigError as exc:
            self._log_error(exc)
            return None, exc
        try:
            config = parse_web_config(data, self.path)
        except WebConfigError as exc:
            self._log_error(exc)
            return ident, exc          # not retried until the file changes again
        log.info("web config reloaded: %s", config.describe(), extra={"file": self.path})
        return ident, config

    def _log_error(self, exc: WebConfigError) -> None:
        previous = self._state[1]
        if not isinstance(previous, WebConfigError) or str(previous) != str(exc):
            log.error("web config unusable; requests are refused until it is fixed",
                      extra={"file": self.path, "err": str(exc)})
