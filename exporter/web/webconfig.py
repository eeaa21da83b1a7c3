"""--web.config.file: TLS and basic auth in exporter-toolkit's web configuration format.

Operators already have these files for node_exporter and friends, so the keys, defaults and
checks follow prometheus/exporter-toolkit (web/tls_config.go, web/handler.go,
docs/web-configuration.md):

- relative file names are relative to the web config file's directory;
- ``basic_auth_users`` holds bcrypt hashes (``htpasswd -nBC 10 ""``);  an unknown user is
  checked against a dummy hash so the answer takes as long as for a known one, and results are
  cached per (user, hash, password) so bcrypt's cost is paid once, not on every scrape;
- the file is re-read when it changes (by file identity, not on every request), and so are the
  certificate files, so rotating a certificate needs no restart;  while the file is broken,
  requests get 500 and TLS handshakes fail: a broken file never opens the endpoint up.

Where Python's ssl module cannot do what Go's crypto/tls does, the file is refused with a clear
error instead of silently serving something weaker: ``client_auth_type`` values that accept
unverified client certificates, and ``curve_preferences``.  HTTP/2 is not served; ``http2`` is
accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import bcrypt
import yaml

from ..host.cache import identity
from ..host.reader import FileTooLarge, read_bounded

log = logging.getLogger("dkms_exporter")

MAX_FILE_BYTES = 1024 * 1024          # web config, certificates, keys, CA bundles
AUTH_CACHE_SIZE = 100                 # exporter-toolkit's cacheSize
BCRYPT_WAIT_SECONDS = 5.0             # queueing for the bcrypt lock longer than this gets a 503
HANDSHAKE_TIMEOUT_SECONDS = 10.0
MAX_CONCURRENT_HANDSHAKES = 32

StartResponse = Callable[..., object]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]
S = TypeVar("S")


class WebConfigError(ValueError):
    """The web configuration is unusable: refused at start, answered with 500 while serving."""


# --- the file format ------------------------------------------------------------------------

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
_TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites",
             "prefer_server_cipher_suites", "curve_preferences"}
_HTTP_KEYS = {"http2", "headers"}
_RATE_KEYS = {"interval", "burst"}

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

# client_auth_type -> verify mode.  Go's RequestClientCert and RequireAnyClientCert accept a client
# certificate nobody verified; the toolkit's own docs call them insecure, and OpenSSL cannot
# express "ask but never verify", so they are refused rather than approximated.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_UNVERIFIED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}

# Go's tls.CipherSuites() names (the ones exporter-toolkit accepts) -> OpenSSL names.  The three
# TLS 1.3 suites are accepted and, as in Go, not configurable.  tests/test_webconfig.py checks
# this table against `openssl ciphers -stdname`.
GO_CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}

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
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                      "h": 3600.0}


@dataclass(frozen=True)
class TLSServerConfig:
    """``tls_server_config`` with relative file names already joined to the config's directory."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    cert: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    client_ca: str | None = field(default=None, repr=False)
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    cipher_suites: tuple[str, ...] = ()          # OpenSSL names, TLS 1.2 and older
    prefer_server_cipher_suites: bool = True
    where: str = field(default="tls_server_config", compare=False)   # "<file>: tls_server_config"

    def files(self) -> tuple[Path, ...]:
        """The files the TLS context is built from: a change to any of them rebuilds it."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)

    def ssl_context(self) -> ssl.SSLContext:
        """A server context from the files as they are now.  WebConfigError when unusable."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.minimum_version = self.min_version
            ctx.maximum_version = self.max_version
        except ValueError as exc:
            raise WebConfigError(f"{self.where}: min_version/max_version: {exc}") from None
        if self.cipher_suites:
            try:
                ctx.set_ciphers(":".join(self.cipher_suites))
            except ssl.SSLError as exc:
                raise WebConfigError(f"{self.where}.cipher_suites: OpenSSL refused them: "
                                     f"{exc.reason or exc}") from None
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        self._load_key_pair(ctx)
        self._load_client_ca(ctx)
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        return ctx

    def _load_key_pair(self, ctx: ssl.SSLContext) -> None:
        with _pem_path(self.cert_file, self.cert, f"{self.where}.cert") as cert, \
                _pem_path(self.key_file, self.key, f"{self.where}.key") as key:
            try:
                # never OpenSSL's interactive passphrase prompt: an encrypted key is an error
                ctx.load_cert_chain(cert, key, password=_no_passphrase)
            except _EncryptedKey:
                raise WebConfigError(f"{self.where}: {_describe(self.key_file, 'key')}: the private key is "
                                     f"encrypted; exporter-toolkit's format has no passphrase") from None
            except ssl.SSLError as exc:
                raise WebConfigError(f"{self.where}: cannot load the certificate/key pair "
                                     f"({_describe(self.cert_file, 'cert')}, "
                                     f"{_describe(self.key_file, 'key')}): {exc.reason or exc}") from None
            except OSError as exc:
                raise WebConfigError(f"{self.where}: cannot read the certificate/key pair: "
                                     f"{exc.strerror or exc}") from None

    def _load_client_ca(self, ctx: ssl.SSLContext) -> None:
        if self.client_ca_file is None and self.client_ca is None:
            return
        if self.client_ca_file is not None:
            pem = _read_pem(self.client_ca_file, f"{self.where}.client_ca_file").decode("ascii", "replace")
        else:
            pem = self.client_ca or ""
        try:
            ctx.load_verify_locations(cadata=pem)
        except (ssl.SSLError, ValueError) as exc:
            what = _describe(self.client_ca_file, "client_ca")
            raise WebConfigError(f"{self.where}: {what}: no usable CA certificate: "
                                 f"{getattr(exc, 'reason', None) or exc}") from None


class _EncryptedKey(Exception):
    """Raised from the passphrase callback, which OpenSSL calls only for an encrypted key."""


def _no_passphrase() -> str:
    raise _EncryptedKey()


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

    def dummy_hash(self) -> bytes:
        """The hash an unknown user is checked against: as costly as the costliest real one."""
        return _dummy_hash(max((_bcrypt_cost(h) for h in self.users.values()), default=10))

    def describe(self) -> str:
        """One line for the startup log: what the file turns on (never a secret)."""
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
    if auth in _UNVERIFIED_CLIENT_AUTH:
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
    interval = parse_go_duration(raw.get("interval", 0), f"{where}.interval")
    burst = raw.get("burst", 0)
    if interval == 0:
        return None            # the toolkit: "set to 0 to disable rate limiter"
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
        raise WebConfigError(f"{where}.burst: expected an integer >= 1 (0 would refuse every request)")
    return RateLimit(interval=interval, burst=burst)


def parse_go_duration(value: Any, where: str) -> float:
    """Go's time.ParseDuration ("15s", "1m30s", "250ms") in seconds; 0 is allowed bare."""
    if value == 0 or value == "0":
        return 0.0
    if not isinstance(value, str) or not value or value.startswith("-"):
        raise WebConfigError(f"{where}: expected a duration such as 1s or 250ms, got {value!r}")
    text = value.lstrip("+")
    pos, total = 0, 0.0
    for m in _GO_DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise WebConfigError(f"{where}: expected a duration such as 1s or 250ms, got {value!r}")
    return total


def _bcrypt_cost(hashed: bytes) -> int:
    return int(hashed[4:6])


@lru_cache(maxsize=None)
def _dummy_hash(cost: int) -> bytes:
    """A bcrypt hash of a random secret: checking any password against it costs like a real one."""
    return bcrypt.hashpw(secrets.token_bytes(24).hex().encode(), bcrypt.gensalt(cost))


def _describe(path: Path | None, inline: str) -> str:
    return str(path) if path is not None else f"inline {inline}"


def _read_pem(path: Path, where: str) -> bytes:
    try:
        return read_bounded(path, MAX_FILE_BYTES)
    except FileTooLarge:
        raise WebConfigError(f"{where}: {path}: larger than {MAX_FILE_BYTES} bytes") from None
    except OSError as exc:
        raise WebConfigError(f"{where}: {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _pem_path(path: Path | None, inline: str | None, where: str) -> Iterator[str]:
    """A file name OpenSSL can open: the configured file, or inline PEM in an anonymous memfd.

    load_cert_chain() only takes file names; a memfd keeps an inline private key off the disk.
    """
    if path is not None:
        _read_pem(path, f"{where}_file")      # size bound and a readable error before OpenSSL's
        yield str(path)
        return
    fd = os.memfd_create("dkms-exporter-pem", os.MFD_CLOEXEC)
    try:
        os.write(fd, (inline or "").encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


# --- keeping the config current ------------------------------------------------------------

class WebConfigProvider:
    """The current web config, re-read when the file's identity changes.

    Calling it returns the WebConfig, or raises WebConfigError while the file is broken.  The
    TLS context is rebuilt when the config or one of its certificate files changes; a
    certificate caught half-rotated fails handshakes until the files change again, without
    making the config itself sticky-broken.  Each distinct error is logged once.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        data, ident = _read_with_identity(self.path)
        config = parse_web_config(data, self.path)       # a bad file at start raises: no start
        self._state: tuple[tuple[int, ...] | None, WebConfig | WebConfigError] = (ident, config)
        self._ctx: tuple[tuple[WebConfig, tuple], ssl.SSLContext | WebConfigError] | None = None
        if config.tls is not None:   # certificate, key and CA load now, or a clear error at start
            self._ctx = (self._ctx_key(config), config.tls.ssl_context())
        config.dummy_hash()       # pay for the dummy hash now, not on the first request
        log.info("web config %s: %s", self.path, config.describe())

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
            config.dummy_hash()
        except WebConfigError as exc:
            self._log_error(exc)
            return ident, exc          # not retried until the file changes again
        log.info("web config %s reloaded: %s", self.path, config.describe())
        return ident, config

    def _log_error(self, exc: WebConfigError) -> None:
        previous = self._state[1]
        if not isinstance(previous, WebConfigError) or str(previous) != str(exc):
            log.error("web config: %s (requests are refused until it is fixed)", exc)

    @staticmethod
    def _ctx_key(config: WebConfig) -> tuple[WebConfig, tuple]:
        """What the TLS context depends on: this config object (held, so compared by identity
        without an id() that a later object could reuse) and its files' identities."""
        files = []
        for p in config.tls.files() if config.tls is not None else ():
            try:
                files.append(identity(os.stat(p)))
            except OSError:
                files.append(None)
        return (config, tuple(files))

    def ssl_context(self) -> ssl.SSLContext:
        """The server context for a new connection: current config and certificate files."""
        config = self()
        if config.tls is None:
            raise WebConfigError(f"{self.path}: tls_server_config was removed; restart the exporter "
                                 f"to serve plain HTTP")
        key = self._ctx_key(config)
        with self._lock:
            if self._ctx is None or self._ctx[0][0] is not config or self._ctx[0][1] != key[1]:
                try:
                    built: ssl.SSLContext | WebConfigError = config.tls.ssl_context()
                except WebConfigError as exc:
                    if self._ctx is None or str(self._ctx[1]) != str(exc):
                        log.error("web config: %s (TLS connections are refused until it is fixed)", exc)
                    built = exc
                self._ctx = (key, built)
            ctx = self._ctx[1]
        if isinstance(ctx, WebConfigError):
            raise ctx
        return ctx


# --- basic auth, headers, rate limit -------------------------------------------------------

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


class BasicAuthMiddleware:
    """WSGI middleware: the web config's headers, rate limit and basic auth in front of ``app``.

    ``provider()`` returns the current WebConfig (or raises WebConfigError -> 500).  Every path
    is protected, as in exporter-toolkit.
    """

    def __init__(self, app: WSGIApp, provider: Callable[[], WebConfig]) -> None:
        self.app = app
        self.provider = provider
        self.cache = _AuthCache()
        self._bcrypt_lock = threading.Lock()   # one bcrypt at a time: it is CPU-bound by design
        self._bucket: _TokenBucket | None = None
        self._bucket_lock = threading.Lock()
        self.bcrypt_checks = 0                 # how often bcrypt actually ran (for tests, benchmarks)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        try:
            config = self.provider()
        except WebConfigError:
            return _plain(start_response, environ, "500 Internal Server Error", "Internal Server Error\n")
        if not self._allow(config.rate_limit):
            return _plain(start_response, environ, "429 Too Many Requests", "Too Many Requests\n")
        respond = _with_headers(start_response, config.headers)
        if not config.users:
            return self.app(environ, respond)
        try:
            ok = self.authenticate(config, basic_auth_credentials(environ))
        except _Busy:
            return _plain(respond, environ, "503 Service Unavailable", "Service Unavailable\n")
        if ok:
            return self.app(environ, respond)
        return _plain(respond, environ, "401 Unauthorized", "Unauthorized\n",
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
        if credentials is None:
            return False
        user, password = credentials
        hashed = config.users.get(user)
        known = hashed is not None
        if hashed is None:
            hashed = config.dummy_hash()
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
            return bcrypt.checkpw(password, hashed)
        except ValueError:      # longer than bcrypt's 72 bytes: Go's bcrypt refuses it too
            return False
        finally:
            self._bcrypt_lock.release()


def _with_headers(start_response: StartResponse, headers: tuple[tuple[str, str], ...]) -> StartResponse:
    if not headers:
        return start_response
    names = {n.lower() for n, _ in headers}

    def respond(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> object:
        kept = [(n, v) for n, v in response_headers if n.lower() not in names]
        return start_response(status, kept + list(headers), exc_info)
    return respond


def _plain(start_response: StartResponse, environ: Mapping[str, Any], status: str, text: str,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))] + (extra or []))
    return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]


# --- TLS on the listening server -----------------------------------------------------------

class TLSServerMixin:
    """For socketserver-based servers: TLS per connection with the provider's current context.

    The accept loop only wraps the socket; the handshake runs in the connection's own thread,
    bounded in time and in how many run at once, so a slow or silent client cannot stall
    accept().  ``client_allowed_sans`` is checked right after the handshake.
    """

    web_config: WebConfigProvider
    handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()  # type: ignore[misc]
        try:
            ctx = self.web_config.ssl_context()          # logs a broken config once
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
        except (WebConfigError, OSError) as exc:
            log.debug("refusing TLS connection from %s: %s", addr[0], exc)
            sock.close()
            raise OSError(str(exc)) from None   # socketserver drops the request on OSError

    def finish_request(self, request: ssl.SSLSocket, client_address: Any) -> None:
        if not _handshake_slots.acquire(blocking=False):
            log.warning("too many TLS handshakes in progress; dropping %s", client_address[0])
            return
        try:
            request.settimeout(self.handshake_timeout)
            request.do_handshake()
            self._check_sans(request)
        except (OSError, WebConfigError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        finally:
            _handshake_slots.release()
        super().finish_request(request, client_address)  # type: ignore[misc]

    def _check_sans(self, request: ssl.SSLSocket) -> None:
        tls = self.web_config().tls
        allowed = tls.client_allowed_sans if tls is not None else None
        if allowed is None:
            return
        if not set(allowed) & set(peer_sans(request.getpeercert() or {})):
            raise WebConfigError(f"client certificate has none of the allowed SANs {list(allowed)}")

    def setup_environ(self) -> None:
        super().setup_environ()  # type: ignore[misc]
        self.base_environ["HTTPS"] = "on"  # type: ignore[attr-defined]  # wsgi.url_scheme = https


_handshake_slots = threading.BoundedSemaphore(MAX_CONCURRENT_HANDSHAKES)


def peer_sans(cert: Mapping[str, Any]) -> list[str]:
    """DNS, e-mail, IP and URI SANs as Go's VerifyPeerCertificate compares them (IPs canonical)."""
    out = []
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "IP Address":
            with contextlib.suppress(ValueError):
                value = str(ipaddress.ip_address(value.strip()))
        if kind in ("DNS", "email", "IP Address", "URI"):
            out.append(value)
    return out


def tls_server_class(base: type[S], provider: WebConfigProvider) -> type[S]:
    """``base`` (a socketserver server class) serving TLS from ``provider``'s current context."""
    return type(f"TLS{base.__name__}", (TLSServerMixin, base), {"web_config": provider})
