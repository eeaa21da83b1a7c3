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


# ---------------------------------------------------------------------------------------------
# The plain-Python RSA check (exporter/formats/rsa.py) against cryptography's (OpenSSL's)


@pytest.fixture(scope="module")
def rsa_keys():
    from cryptography.hazmat.primitives.asymmetric import rsa as crsa
    return {bits: crsa.generate_private_key(public_exponent=65537, key_size=bits) for bits in (2048, 3072, 4096)}


def _cryptography_says(public_key, signature: bytes, digest: bytes, hash_algo: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils
    h = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
         "sha224": hashes.SHA224, "sha3-256": hashes.SHA3_256}[hash_algo]()
    try:
        public_key.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(h))
        return True
    except (InvalidSignature, ValueError):
        return False


@pytest.mark.parametrize("hash_algo", ["sha1", "sha224", "sha256", "sha384", "sha512", "sha3-256"])
def test_plain_rsa_decides_as_openssl(rsa_keys, hash_algo):
    """Signed with OpenSSL (cryptography), checked by exporter/formats/rsa.py: the genuine
    signature verifies, and every damaged one (a flipped bit anywhere, a shorter or longer
    signature, another digest, another key, s >= n) is refused exactly where OpenSSL refuses."""
    import hashlib
    import random

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    from exporter.formats import rsa
    rng = random.Random(hash_algo)
    name = {"sha3-256": "sha3_256"}.get(hash_algo, hash_algo)
    for bits, key in rsa_keys.items():
        pub = key.public_key()
        numbers = pub.public_numbers()
        n, e = numbers.n, numbers.e
        h = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
             "sha224": hashes.SHA224, "sha3-256": hashes.SHA3_256}[hash_algo]()
        digest = hashlib.new(name, rng.randbytes(100)).digest()
        sig = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(h))
        cases = [(sig, digest), (sig, hashlib.new(name, b"other").digest()), (sig[:-1], digest),
                 (b"\x00" + sig, digest), (n.to_bytes(len(sig), "big"), digest),
                 (rsa_keys[2048 if bits != 2048 else 4096].sign(digest, padding.PKCS1v15(), utils.Prehashed(h)), digest)]
        for _ in range(40):
            flipped = bytearray(sig)
            flipped[rng.randrange(len(sig))] ^= 1 << rng.randrange(8)
            cases.append((bytes(flipped), digest))
        for signature, d in cases:
            assert rsa.verify_pkcs1v15(n, e, signature, hash_algo, d) is _cryptography_says(pub, signature, d, hash_algo)
        assert rsa.verify_pkcs1v15(n, e, sig, hash_algo, digest) is True


def test_plain_rsa_leaves_other_keys_to_cryptography(tmp_path):
    """public_numbers() takes only RSA keys it can judge: an ECDSA certificate and garbage give
    None (modsig then asks cryptography, which the openssl comparison above covers)."""
    import datetime

    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from exporter.formats import rsa
    key = ec.generate_private_key(ec.SECP256R1())
    name = cx509.Name([cx509.NameAttribute(cx509.oid.NameOID.COMMON_NAME, "ec signer")])
    now = datetime.datetime(2026, 1, 1)
    cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    assert rsa.public_numbers(cert.public_bytes(serialization.Encoding.DER)) is None
    assert rsa.public_numbers(b"\x30\x03\x02\x01\x00") is None
    assert rsa.digest_info("md5", b"\x00" * 16) is None and rsa.digest_info("sha256", b"\x00" * 31) is None
