"""--web.config.file: exporter-toolkit's format, against the real `serve` on loopback.

A test CA, server and client certificates are made here with `cryptography`; bcrypt hashes come
from the real `htpasswd` (the tool exporter-toolkit's docs tell operators to use).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from testkit import REPO, Served, require_tool, run_exporter, wait_for

from exporter.web import basic_auth, config_file
from exporter.web.basic_auth import BasicAuthMiddleware
from exporter.web.config_file import WebConfigError, WebConfigProvider, interval_seconds, load_web_config
from exporter.web.tls import GO_CIPHER_SUITES


# --- a test PKI ------------------------------------------------------------------------------

@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        crt.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return crt, key


def _issue(cn: str, issuer: Issued | None, *, ca: bool = False, sans: list[x509.GeneralName] | None = None,
           client: bool = False) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer.cert.subject if issuer else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, encipher_only=False,
                                          decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer.key if issuer else key
    return Issued(b.sign(signer, hashes.SHA256()), key)


@dataclass
class PKI:
    dir: Path
    ca: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path
    rogue_crt: Path
    rogue_key: Path
    server: Issued
    ca_issued: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = _issue("dkms-exporter test CA", None, ca=True)
    server = _issue("localhost", ca, sans=[x509.DNSName("localhost"),
                                           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = _issue("prometheus", ca, client=True,
                    sans=[x509.DNSName("prometheus.example"), x509.UniformResourceIdentifier("spiffe://t/prom")])
    rogue_ca = _issue("someone else's CA", None, ca=True)
    rogue = _issue("prometheus", rogue_ca, client=True, sans=[x509.DNSName("prometheus.example")])
    ca_path = d / "ca.crt"
    ca_path.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    s_crt, s_key = server.write(d, "server")
    c_crt, c_key = client.write(d, "client")
    r_crt, r_key = rogue.write(d, "rogue")
    return PKI(d, ca_path, s_crt, s_key, c_crt, c_key, r_crt, r_key, server, ca)


@pytest.fixture(scope="module")
def htpasswd_hashes() -> dict[str, str]:
    """user -> bcrypt hash, made by the real htpasswd at the lowest cost (fast tests)."""
    tool = require_tool("htpasswd")
    out = {}
    for user, password in (("alice", "alice-secret"), ("bob", "bob-secret")):
        line = subprocess.run([tool, "-nbBC", "4", user, password], check=True, capture_output=True,
                              text=True).stdout.strip()
        name, _, hashed = line.partition(":")
        assert name == user and hashed.startswith("$2y$04$")
        out[user] = hashed
    return out


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_atomically(path: Path, text: str) -> None:
    """Replace a file the way editors and config management do (new inode, rename)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- the real serve on loopback -------------------------------------------------------------

@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    root.mkdir()
    return root


@pytest.fixture
def serve(rootfs) -> Iterator[Callable[[Path], Served]]:
    """serve(web_config): `serve --web.config.file web_config` of an empty tree; stopped after the test."""
    with contextlib.ExitStack() as started:
        yield lambda web_config: started.enter_context(Served(rootfs, "--web.config.file", str(web_config)))


def client_context(pki: PKI, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def tls_config(pki: PKI, extra: str = "") -> str:
    # relative names: exporter-toolkit resolves them against the web config's directory
    return f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}"


# --- TLS ---------------------------------------------------------------------------------------

def test_tls_serves_metrics_with_the_configured_certificate(pki, serve):
    cfg = pki.dir / "web-tls.yml"
    cfg.write_text(tls_config(pki))
    s = serve(cfg)
    r = s.request(tls=client_context(pki))
    assert r.status == 200 and r.text.startswith("# HELP") and "dkms_exporter_build_info" in r.text
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw, \
            client_context(pki).wrap_socket(raw, server_hostname="localhost") as tls:
        served = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        assert served.serial_number == pki.server.cert.serial_number
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # a client that does not trust the test CA refuses the server
    with pytest.raises(ssl.SSLCertVerificationError):
        s.request(tls=ssl.create_default_context())
    # plain HTTP to the TLS port gets no HTTP answer at all
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        s.request()
    wait_for("the 'TLS on' line in the log", lambda: "TLS on" in s.log_text, timeout=5)


def test_min_version_is_enforced(pki, serve):
    cfg = pki.dir / "web-tls13.yml"
    cfg.write_text(tls_config(pki, "  min_version: TLS13\n"))
    s = serve(cfg)
    old = client_context(pki)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        s.request(tls=old)
    assert s.request(tls=client_context(pki)).status == 200


def test_mutual_tls_requires_a_client_certificate_from_the_configured_ca(pki, serve):
    cfg = pki.dir / "web-mtls.yml"
    cfg.write_text(tls_config(pki, "  client_auth_type: RequireAndVerifyClientCert\n"
                                   "  client_ca_file: ca.crt\n"))
    s = serve(cfg)
    assert s.request(tls=client_context(pki, (pki.client_crt, pki.client_key))).status == 200
    for who in (None, (pki.rogue_crt, pki.rogue_key)):       # no certificate; another CA's certificate
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            s.request(tls=client_context(pki, who))


def test_client_allowed_sans_and_changes_without_restart(pki, serve):
    cfg = pki.dir / "web-sans.yml"
    mtls = tls_config(pki, "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n")
    cfg.write_text(mtls + "  client_allowed_sans: [grafana.example]\n")
    s = serve(cfg)
    good = client_context(pki, (pki.client_crt, pki.client_key))
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        s.request(tls=good)
    write_atomically(cfg, mtls + "  client_allowed_sans: [spiffe://t/prom]\n")
    assert s.request(tls=good).status == 200


def test_turning_on_mutual_tls_applies_to_the_next_connection(pki, serve, tmp_path):
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {pki.server_crt}\n  key_file: {pki.server_key}\n")
    s = serve(cfg)
    anonymous = client_context(pki)
    assert s.request(tls=anonymous).status == 200
    write_atomically(cfg, cfg.read_text() + f"  client_auth_type: RequireAndVerifyClientCert\n"
                                            f"  client_ca_file: {pki.ca}\n")
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        s.request(tls=anonymous)
    assert s.request(tls=client_context(pki, (pki.client_crt, pki.client_key))).status == 200


def test_rotated_certificate_is_served_without_restart(pki, serve, tmp_path):
    d = tmp_path / "rotate"
    d.mkdir()
    (d / "web.yml").write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
    pki.server.write(d, "tls")
    s = serve(d / "web.yml")
    ctx = client_context(pki)

    def served_serial() -> int:
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
    assert served_serial() == pki.server.cert.serial_number
    renewed = _issue("localhost", pki.ca_issued, sans=[x509.DNSName("localhost")])
    crt, key = renewed.write(tmp_path, "renewed")
    os.replace(key, d / "tls.key")
    os.replace(crt, d / "tls.crt")
    assert served_serial() == renewed.cert.serial_number


def test_silent_client_does_not_block_others(pki, serve):
    """A connection that never starts its handshake must not stall accept() for everyone else."""
    cfg = pki.dir / "web-tls.yml"
    cfg.write_text(tls_config(pki))
    s = serve(cfg)
    silent = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(5)]
    try:
        t0 = time.monotonic()
        assert s.request(tls=client_context(pki)).status == 200
        assert time.monotonic() - t0 < 5
    finally:
        for c in silent:
            c.close()


# --- basic auth over the wire --------------------------------------------------------------

def test_basic_auth_right_wrong_and_unknown_user(pki, serve, htpasswd_hashes):
    cfg = pki.dir / "web-auth.yml"
    cfg.write_text(tls_config(pki) + "basic_auth_users:\n" +
                   "".join(f"  {u}: {h}\n" for u, h in htpasswd_hashes.items()) +
                   "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    s = serve(cfg)
    ctx = client_context(pki)
    r = s.request(tls=ctx, headers={"Authorization": basic("alice", "alice-secret")})
    assert r.status == 200 and "dkms_exporter_build_info" in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    for auth in (basic("alice", "bob-secret"), basic("mallory", "alice-secret"), basic("alice", ""),
                 "Basic !!!notbase64", "Bearer alice-secret", None):
        r = s.request(tls=ctx, headers={"Authorization": auth} if auth else {})
        assert r.status == 401, auth
        assert r.headers["www-authenticate"].startswith("Basic ")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "dkms_" not in r.text
    # every path is protected, the landing page too
    assert s.request("/", tls=ctx).status == 401


def test_changed_users_are_picked_up_without_restart(pki, serve, htpasswd_hashes, tmp_path):
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"basic_auth_users:\n  alice: {htpasswd_hashes['alice']}\n")
    s = serve(cfg)
    assert s.request(headers={"Authorization": basic("alice", "alice-secret")}).status == 200
    assert s.request(headers={"Authorization": basic("bob", "bob-secret")}).status == 401
    write_atomically(cfg, f"basic_auth_users:\n  bob: {htpasswd_hashes['bob']}\n")
    assert s.request(headers={"Authorization": basic("bob", "bob-secret")}).status == 200
    assert s.request(headers={"Authorization": basic("alice", "alice-secret")}).status == 401
    # a file broken while serving fails closed (500, logged once), and recovers when fixed
    write_atomically(cfg, "basic_auth_users: [oops\n")
    for _ in range(3):
        r = s.request(headers={"Authorization": basic("bob", "bob-secret")})
        assert r.status == 500 and "Traceback" not in r.text and "oops" not in r.text
    write_atomically(cfg, f"basic_auth_users:\n  bob: {htpasswd_hashes['bob']}\n")
    assert s.request(headers={"Authorization": basic("bob", "bob-secret")}).status == 200
    wait_for("the 'reloaded' line in the log", lambda: "reloaded" in s.log_text, timeout=5)
    assert s.log_text.count("not valid YAML") == 1


def test_no_listing_and_no_traceback_to_clients(pki, serve, htpasswd_hashes, tmp_path):
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"basic_auth_users:\n  alice: {htpasswd_hashes['alice']}\n")
    s = serve(cfg)
    auth = {"Authorization": basic("alice", "alice-secret")}
    for path in ("/etc/", "/../../etc/passwd", "/metrics/../", "/%2e%2e/"):
        r = s.request(path, headers=auth)
        assert r.status == 404 and "root:" not in r.text and "<a href" not in r.text
    # a mangled header is a plain 401, never a stack trace
    r = s.request(headers={"Authorization": "Basic " + "\u00e9" * 10})
    assert r.status == 401 and "Traceback" not in r.text and r.text == "Unauthorized\n"


# --- a bad file at start -------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("tls_server_config: [\n", "not valid YAML"),
    ("tls_server_config:\n  cert_flie: a.crt\n", "unknown key(s) ['cert_flie']"),
    ("basic_auth_users:\n  alice: hunter2\n", "the password of user 'alice' is not a bcrypt hash"),
    ("tls_server_config:\n  cert_file: server.crt\n", "missing one of key or key_file"),
    ("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n", "nowhere.crt"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n", "certificate/key pair"),
])
def test_bad_web_config_refuses_to_start_with_a_clear_message(pki, rootfs, text, message):
    cfg = pki.dir / "bad.yml"
    cfg.write_text(text)
    t0 = time.monotonic()
    r = run_exporter("serve", "--path.rootfs", str(rootfs), "--web.listen-address", "127.0.0.1:0",
                     "--web.config.file", str(cfg), timeout=30)
    assert r.returncode == 2 and time.monotonic() - t0 < 20
    assert r.stderr.startswith("dkms-exporter: --web.config.file: ") and message in r.stderr
    assert "Traceback" not in r.stderr and "hunter2" not in r.stderr and "listening" not in r.stderr


@pytest.mark.parametrize("text, message", [
    ("", None),
    ("basic_auth_users:\n  a: $2y$04$abc\n", "not a bcrypt hash"),
    ("basic_auth_users:\n  'a:b': $2y$04$" + "a" * 53 + "\n", "without ':'"),
    ("basic_auth_users:\n  alice: x\n  alice: y\n", "duplicate key 'alice'"),
    ("tls_server_config:\n  client_ca_file: ca.crt\n  cert_file: server.crt\n  key_file: server.key\n",
     "without a Client Auth Policy"),
    ("tls_server_config:\n  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n"
     "  cert_file: server.crt\n  key_file: server.key\n", "not supported; use RequireAndVerifyClientCert"),
    ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n  cert_file: server.crt\n"
     "  key_file: server.key\n", "needs client_ca_file"),
    ("tls_server_config:\n  client_auth_type: Sometimes\n  client_ca_file: ca.crt\n"
     "  cert_file: server.crt\n  key_file: server.key\n", "invalid 'Sometimes'"),
    ("tls_server_config:\n  min_version: SSL3\n  cert_file: server.crt\n  key_file: server.key\n",
     "unknown TLS version 'SSL3'"),
    ("tls_server_config:\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n  cert_file: server.crt\n"
     "  key_file: server.key\n", "unknown cipher(s) ['TLS_RSA_WITH_RC4_128_SHA']"),
    ("tls_server_config:\n  curve_preferences: [X25519]\n  cert_file: server.crt\n  key_file: server.key\n",
     "curve_preferences: not supported"),
    ("tls_server_config:\n  cert: x\n  cert_file: server.crt\n  key_file: server.key\n",
     "set cert or cert_file, not both"),
    ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.key\n"
     "  cert_file: server.crt\n  key_file: server.key\n", "no usable CA certificate"),
    ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: nope.crt\n"
     "  cert_file: server.crt\n  key_file: server.key\n", "nope.crt: No such file or directory"),
    ("tls_server_config:\n  min_version: TLS13\n  max_version: TLS12\n  cert_file: server.crt\n"
     "  key_file: server.key\n", "min_version is above max_version"),
    ("http_server_config:\n  headers:\n    Server: nginx\n", "HTTP header 'Server' can not be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "invalid value for X-Frame-Options"),
    ("http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\r\\nSet-Cookie: x\"\n",
     "one-line string"),
    ("http_server_config:\n  http2: maybe\n", "http2: expected true or false"),
    ("rate_limit:\n  interval: 10\n  burst: 1\n", "expected a duration"),
    ("rate_limit:\n  interval: 1s\n  burst: 0\n", "burst: expected an integer >= 1"),
    ("- just\n- a list\n", "expected a mapping"),
    ("{[1]: 2}\n", "unhashable key"),
])
def test_load_web_config_errors(pki, text, message):
    cfg = pki.dir / "case.yml"
    cfg.write_text(text)
    if message is None:
        config = load_web_config(cfg)       # an empty file: neither TLS nor auth, as in Go
        assert config.tls is None and not config.users
        return
    with pytest.raises(WebConfigError) as e:
        load_web_config(cfg)
    assert message in str(e.value) and str(cfg) in str(e.value)


def test_encrypted_key_is_an_error_not_a_passphrase_prompt(pki, tmp_path):
    """OpenSSL would otherwise prompt on the terminal, and a service would hang at start."""
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    (tmp_path / "enc.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.BestAvailableEncryption(b"pw")))
    cfg = _copy(tmp_path / "web.yml", f"tls_server_config:\n  cert_file: {pki.server_crt}\n  key_file: enc.key\n")
    r = subprocess.run([sys.executable, "-c", "import sys; from exporter.web.config_file import load_web_config; "
                        "load_web_config(sys.argv[1])", str(cfg)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=20, cwd=REPO)
    assert r.returncode != 0 and "the private key is encrypted" in r.stderr


def test_oversized_file_is_refused(tmp_path):
    cfg = tmp_path / "big.yml"
    cfg.write_bytes(b"#" * (config_file.MAX_FILE_BYTES + 1))
    with pytest.raises(WebConfigError, match="larger than"):
        load_web_config(cfg)


def test_inline_pem_and_relative_paths(pki, tmp_path):
    inline = ("tls_server_config:\n  cert: |\n" + _indent(pki.server_crt.read_text()) +
              "  key: |\n" + _indent(pki.server_key.read_text()) +
              "  client_ca: |\n" + _indent(pki.ca.read_text()) +
              "  client_auth_type: VerifyClientCertIfGiven\n")
    (tmp_path / "inline.yml").write_text(inline)
    config = load_web_config(tmp_path / "inline.yml")
    ctx = config.ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_OPTIONAL
    assert "BEGIN" not in repr(config)           # keys never reach a log line through repr()
    rel = load_web_config(_copy(pki.dir / "web-rel.yml", tls_config(pki)))
    assert rel.tls is not None and rel.tls.cert_file == pki.dir / "server.crt"


def _indent(text: str) -> str:
    return "".join("    " + line + "\n" for line in text.splitlines())


def _copy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_go_cipher_names_match_openssl(pki):
    """The Go -> OpenSSL cipher table, checked against OpenSSL's own IANA names."""
    out = subprocess.run([require_tool("openssl"), "ciphers", "-stdname", "ALL:@SECLEVEL=0"],
                         capture_output=True, text=True, check=True).stdout
    stdnames = {}
    for line in out.splitlines():
        std, _, rest = line.partition(" - ")
        stdnames[std.strip()] = rest.split()[0]
    for go_name, openssl_name in GO_CIPHER_SUITES.items():
        assert stdnames[go_name] == (openssl_name or go_name), go_name
    cfg = _copy(pki.dir / "ciphers.yml", tls_config(pki, "  max_version: TLS12\n  cipher_suites:\n"
                                                         "    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n"))
    ctx = load_web_config(cfg).ssl_context()
    assert ctx is not None
    assert [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"] == \
        ["ECDHE-ECDSA-AES256-GCM-SHA384"]


def test_go_durations():
    assert interval_seconds("1m30s", "x") == 90 and interval_seconds("250ms", "x") == 0.25
    assert interval_seconds(".5h", "x") == 1800 and interval_seconds(0, "x") == 0
    for bad in ("10", "1 s", "-1s", "s", "1d", ""):
        with pytest.raises(WebConfigError):
            interval_seconds(bad, "x")


# --- the middleware itself -----------------------------------------------------------------

def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Frame-Options", "sameorigin")])
    return [b"ok\n"]


def _call(mw: BasicAuthMiddleware, auth: str | None) -> tuple[str, dict[str, str]]:
    got: dict = {}

    def start_response(status, headers, exc_info=None):
        got["status"], got["headers"] = status, dict(headers)
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}
    if auth is not None:
        env["HTTP_AUTHORIZATION"] = auth
    b"".join(mw(env, start_response))
    return got["status"], got["headers"]


def _provider(tmp_path: Path, text: str) -> WebConfigProvider:
    (tmp_path / "web.yml").write_text(text)
    return WebConfigProvider(tmp_path / "web.yml")


def test_bcrypt_is_paid_once_per_credential_not_per_scrape(tmp_path, htpasswd_hashes):
    mw = BasicAuthMiddleware(_app, _provider(tmp_path, f"basic_auth_users:\n  alice: {htpasswd_hashes['alice']}\n"))
    for _ in range(50):
        assert _call(mw, basic("alice", "alice-secret"))[0] == "200 OK"
    assert mw.bcrypt_checks == 1
    for _ in range(5):
        assert _call(mw, basic("alice", "wrong"))[0].startswith("401")
    assert mw.bcrypt_checks == 2
    for i in range(3 * basic_auth.AUTH_CACHE_SIZE):            # the cache stays bounded
        _call(mw, basic("mallory", f"guess{i}"))
    assert len(mw.cache) <= basic_auth.AUTH_CACHE_SIZE


def test_unknown_user_costs_a_bcrypt_at_the_highest_configured_cost(tmp_path, monkeypatch):
    """exporter-toolkit's defence against user enumeration by timing."""
    cheap = bcrypt.hashpw(b"one", bcrypt.gensalt(4)).decode()
    dear = bcrypt.hashpw(b"two", bcrypt.gensalt(6)).decode()
    mw = BasicAuthMiddleware(_app, _provider(tmp_path, f"basic_auth_users:\n  a: {cheap}\n  b: {dear}\n"))
    seen: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: (seen.append(h), real(pw, h))[1])
    assert _call(mw, basic("nobody", "two"))[0].startswith("401")
    assert len(seen) == 1 and seen[0][:7] == b"$2b$06$" and seen[0] not in (cheap.encode(), dear.encode())
    assert _call(mw, basic("b", "two"))[0] == "200 OK"


def test_unknown_user_pays_the_same_bcrypt_work_as_a_wrong_password(tmp_path, monkeypatch):
    """Constant time is asserted structurally, not with a stopwatch (timed tests flake under load):
    an unknown user runs exactly one bcrypt check at the same cost as a known user's hash."""
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(8)).decode()
    mw = BasicAuthMiddleware(_app, _provider(tmp_path, f"basic_auth_users:\n  alice: {hashed}\n"))
    checked: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: (checked.append(h), real(pw, h))[1])
    for user in ("alice", "nobody"):
        checked.clear()
        assert _call(mw, basic(user, f"wrong-{user}"))[0].startswith("401")
        assert len(checked) == 1, (user, checked)
        assert checked[0][:7] == hashed.encode()[:7], (user, checked[0][:7])  # "$2b$08$": same cost


def test_headers_rate_limit_and_long_passwords(tmp_path, htpasswd_hashes):
    mw = BasicAuthMiddleware(_app, _provider(
        tmp_path, f"basic_auth_users:\n  alice: {htpasswd_hashes['alice']}\n"
                  "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                  "rate_limit:\n  interval: 1h\n  burst: 3\n"))
    status, headers = _call(mw, basic("alice", "alice-secret"))
    assert status == "200 OK" and headers["X-Frame-Options"] == "deny"   # the file's value wins
    status, headers = _call(mw, basic("alice", "x" * 100))               # > bcrypt's 72 bytes
    assert status.startswith("401") and headers["X-Frame-Options"] == "deny"
    assert _call(mw, basic("alice", "alice-secret"))[0] == "200 OK"
    assert _call(mw, basic("alice", "alice-secret"))[0].startswith("429")


def test_provider_rereads_only_when_the_file_changes(tmp_path, htpasswd_hashes, monkeypatch):
    provider = _provider(tmp_path, f"basic_auth_users:\n  alice: {htpasswd_hashes['alice']}\n")
    reads: list[Path] = []
    real = config_file._read_with_identity
    monkeypatch.setattr(config_file, "_read_with_identity", lambda p: (reads.append(p), real(p))[1])
    first = provider()
    assert all(provider() is first for _ in range(20)) and reads == []
    write_atomically(tmp_path / "web.yml", f"basic_auth_users:\n  bob: {htpasswd_hashes['bob']}\n")
    assert set(provider().users) == {b"bob"} and len(reads) == 1
    (tmp_path / "web.yml").unlink()
    with pytest.raises(WebConfigError, match="No such file"):
        provider()
