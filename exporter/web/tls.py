"""TLS for ``serve``: the ``tls_server_config`` settings, their SSL context, the TLS server.

exporter-toolkit's names (Go's crypto/tls names) are mapped to OpenSSL's here.  Where Python's
ssl module cannot do what Go does, config_file.py refuses the setting instead of silently
serving something weaker (``client_auth_type`` values that accept unverified client
certificates, ``curve_preferences``).

The server builds its context per connection from the current web config and rebuilds it when
the config or one of its certificate files changes, so a rotated certificate needs no restart;
the handshake runs in the connection's own thread, bounded in time and in how many run at once,
and ``client_allowed_sans`` is checked right after it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, TypeVar

from ..host.cache import identity
from ..host.reader import FileTooLarge, read_bounded
from .errors import WebConfigError

if TYPE_CHECKING:
    from .config_file import WebConfigProvider

log = logging.getLogger("dkms_exporter")

MAX_PEM_BYTES = 1024 * 1024           # certificates, keys, CA bundles
HANDSHAKE_TIMEOUT_SECONDS = 10.0
MAX_CONCURRENT_HANDSHAKES = 32
S = TypeVar("S")

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

# client_auth_type -> verify mode.  Go's RequestClientCert and RequireAnyClientCert accept a client
# certificate nobody verified; the toolkit's own docs call them insecure, and OpenSSL cannot
# express "ask but never verify", so they are refused rather than approximated.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
UNVERIFIED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}

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


# --- settings -> SSL context ----------------------------------------------------------------

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


def _describe(path: Path | None, inline: str) -> str:
    return str(path) if path is not None else f"inline {inline}"


def _read_pem(path: Path, where: str) -> bytes:
    try:
        return read_bounded(path, MAX_PEM_BYTES)
    except FileTooLarge:
        raise WebConfigError(f"{where}: {path}: larger than {MAX_PEM_BYTES} bytes") from None
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


# --- the context for each new connection -----------------------------------------------------

class ServerContexts:
    """The SSL context for a new connection: the current web config's, rebuilt when the config
    or one of its certificate files changes.  A certificate caught half-rotated fails handshakes
    until the files change again, without making the config itself sticky-broken; each distinct
    error is logged once."""

    def __init__(self, provider: WebConfigProvider) -> None:
        self.provider = provider
        self._lock = threading.Lock()
        self._built: tuple[tuple[object, tuple], ssl.SSLContext | WebConfigError] | None = None

    def current(self) -> ssl.SSLContext:
        """WebConfigError while the config or its certificates are unusable."""
        config = self.provider()
        if config.tls is None:
            raise WebConfigError(f"{self.provider.path}: tls_server_config was removed; restart the "
                                 f"exporter to serve plain HTTP")
        key = (config, _identities(config.tls.files()))
        with self._lock:
            # the config object is held in the key, so it is compared by identity without an
            # id() that a later object could reuse
            if self._built is None or self._built[0][0] is not config or self._built[0][1] != key[1]:
                try:
                    built: ssl.SSLContext | WebConfigError = config.tls.ssl_context()
                except WebConfigError as exc:
                    if self._built is None or str(self._built[1]) != str(exc):
                        log.error("TLS unusable; connections are refused until it is fixed",
                                  extra={"file": self.provider.path, "err": str(exc)})
                    built = exc
                self._built = (key, built)
            ctx = self._built[1]
        if isinstance(ctx, WebConfigError):
            raise ctx
        return ctx


def _identities(paths: tuple[Path, ...]) -> tuple:
    out = []
    for p in paths:
        try:
            out.append(identity(os.stat(p)))
        except OSError:
            out.append(None)
    return tuple(out)


# --- TLS on the listening server -------------------------------------------------------------

class TLSServerMixin:
    """For socketserver-based servers: TLS per connection with the current context.

    The accept loop only wraps the socket; the handshake runs in the connection's own thread,
    bounded in time and in how many run at once, so a slow or silent client cannot stall
    accept().  ``client_allowed_sans`` is checked right after the handshake.
    """

    contexts: ServerContexts
    handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()  # type: ignore[misc]
        try:
            ctx = self.contexts.current()          # logs a broken config once
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
        except (WebConfigError, OSError) as exc:
            log.debug("refusing TLS connection", extra={"client": addr[0], "err": str(exc)})
            sock.close()
            raise OSError(str(exc)) from None   # socketserver drops the request on OSError

    def finish_request(self, request: ssl.SSLSocket, client_address: Any) -> None:
        if not _handshake_slots.acquire(blocking=False):
            log.warning("too many TLS handshakes in progress; dropping a connection",
                        extra={"client": client_address[0], "limit": MAX_CONCURRENT_HANDSHAKES})
            return
        try:
            request.settimeout(self.handshake_timeout)
            request.do_handshake()
            self._check_sans(request)
        except (OSError, WebConfigError) as exc:
            log.debug("TLS handshake failed", extra={"client": client_address[0], "err": str(exc)})
            return
        finally:
            _handshake_slots.release()
        super().finish_request(request, client_address)  # type: ignore[misc]

    def _check_sans(self, request: ssl.SSLSocket) -> None:
        tls = self.contexts.provider().tls
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
    """``base`` (a socketserver server class) serving TLS from ``provider``'s current config."""
    return type(f"TLS{base.__name__}", (TLSServerMixin, base), {"contexts": ServerContexts(provider)})
