"""Module signatures verified as the kernel verifies them, compared case by case with an
independent reference: `openssl cms -verify` on the same detached PKCS#7 and content.

Modules are signed by the kernel's real scripts/sign-file (Debian's linux-kbuild-6.1), with RSA
and ECDSA P-256 keys; then damaged the ways a module changes after signing (a flipped content
byte, `strip --strip-debug`, a truncated copy). The exporter must call the untouched ones valid
and every damaged one invalid, exactly where openssl does."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import modbuild as mb
from exporter.collectors.module import read_module
from exporter.formats.modsig import verify
from exporter.formats.module import ModuleFileError
from exporter.formats.x509 import load_certificate
from testkit import require_tool

MAGIC = b"~Module signature appended~\n"


def split(data: bytes) -> tuple[bytes, bytes]:
    """(content, PKCS#7 DER) of a module with an appended signature (struct module_signature)."""
    assert data.endswith(MAGIC)
    sig_len = struct.unpack(">I", data[-len(MAGIC) - 4:-len(MAGIC)])[0]
    end = len(data) - len(MAGIC) - 12
    return data[:end - sig_len], data[end - sig_len:end]


def openssl_verifies(tmp: Path, data: bytes, cert_pem: Path) -> bool:
    content, p7 = split(data)
    (tmp / "content").write_bytes(content)
    (tmp / "sig.p7").write_bytes(p7)
    proc = subprocess.run([require_tool("openssl"), "cms", "-verify", "-binary", "-inform", "DER", "-noverify",
                           "-in", str(tmp / "sig.p7"), "-content", str(tmp / "content"), "-certfile",
                           str(cert_pem), "-out", "/dev/null"], capture_output=True, text=True)
    return proc.returncode == 0


def damaged(kind: str, path: Path) -> None:
    data = bytearray(path.read_bytes())
    if kind == "flip":
        data[len(data) // 3] ^= 0x01
        path.write_bytes(bytes(data))
    elif kind == "strip":
        # strip keeps the trailer only as bytes after the ELF: it drops it, so re-append the old one
        content, _ = split(bytes(data))
        trailer = bytes(data[len(content):])
        path.write_bytes(content)
        subprocess.run([require_tool("strip"), "--strip-debug", str(path)], check=True)
        path.write_bytes(path.read_bytes() + trailer)
    elif kind == "truncate":
        content, _ = split(bytes(data))
        trailer = bytes(data[len(content):])
        path.write_bytes(content[:len(content) - 64] + trailer)


@pytest.mark.slow
@pytest.mark.parametrize("key_type", ["rsa", "ec"])
@pytest.mark.parametrize("kind", ["untouched", "flip", "strip", "truncate"])
def test_verdict_is_openssls(tmp_path, key_type, kind):
    key = mb.make_signing_key(tmp_path / "key", key_type=key_type)
    ko = mb.build_module(mb.ModSpec(), tmp_path / "m.ko")
    subprocess.run([str(mb.sign_file_binary()), "sha256", str(key.key_pem), str(key.cert_der), str(ko)],
                   check=True, capture_output=True)
    damaged(kind, ko)
    theirs = openssl_verifies(tmp_path, ko.read_bytes(), key.cert_pem)
    try:
        sig = read_module(ko).signature
    except ModuleFileError as e:
        # a truncated copy loses its ELF section headers: module_unreadable, never loadable
        assert kind == "truncate" and e.code == "truncated" and not theirs, (kind, e)
        return
    assert sig is not None, kind
    ours = verify(sig, load_certificate(key.der)).ok
    assert ours == theirs == (kind == "untouched"), (kind, ours, theirs)


def _self_signed(key) -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test key")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    algo = None if type(key).__name__.startswith("Ed") else hashes.SHA256()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, algo))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("make, expect", [
    ("rsa", "RSAPublicKey"), ("p256", "EllipticCurvePublicKey"), ("p384", "EllipticCurvePublicKey"),
    ("k256", "elliptic curve secp256k1, which the kernel does not verify"),
    ("ed25519", "ed25519 key, which the kernel does not verify"),
])
def test_the_signers_key_is_the_certificates_own(make, expect):
    """The key is built from the certificate's numbers (not through cryptography's X.509 layer):
    the same public key cryptography's own certificate parser gives, for the kinds the kernel
    verifies module signatures with; a sentence for the ones it does not."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from exporter.formats.modsig import _public_key
    key = {"rsa": lambda: rsa.generate_private_key(65537, 2048), "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
           "p384": lambda: ec.generate_private_key(ec.SECP384R1()), "k256": lambda: ec.generate_private_key(ec.SECP256K1()),
           "ed25519": ed25519.Ed25519PrivateKey.generate}[make]()
    der = _self_signed(key)
    ours = _public_key(der)
    if isinstance(ours, str):
        assert expect in ours
        return
    assert isinstance(ours, {"RSAPublicKey": rsa.RSAPublicKey, "EllipticCurvePublicKey": ec.EllipticCurvePublicKey}[expect])
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert ours.public_bytes(*spki) == x509.load_der_x509_certificate(der).public_key().public_bytes(*spki)
