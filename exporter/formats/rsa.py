"""RSA PKCS#1 v1.5 signature verification in plain Python, for the module-signature check.

Why not ``cryptography``: importing it costs 8.4 MiB of resident memory and ~40 ms, paid by
every process that checks one signature; that alone put a cold scrape over the exporter's
45 MiB memory target.  Module signatures are almost always RSA (sign-file's default, Debian's
and the distributions' build keys, shim's MOK keys), and verifying one is a single modular
exponentiation with a small public exponent (Python's ``pow``: ~0.1 ms for RSA-4096), then a
byte comparison.  ECDSA and any key this reader does not vouch for go to ``cryptography``.

The check is the kernel's (crypto/rsa-pkcs1pad.c pkcs1pad_verify() after rsa_enc()), which is
also what OpenSSL's RSA_verify() decides: the signature is exactly the modulus' length and
below it, and ``s^e mod n`` is ``00 01 FF.. 00 || DigestInfo(hash, digest)`` with at least
eight FF bytes and the DigestInfo's NULL parameters, compared byte for byte.
"""

from __future__ import annotations

import functools

# DER of the digest algorithm OIDs the kernel's pkcs1pad knows (hash_prefix_* in rsa-pkcs1pad.c)
_DIGEST_OIDS = {
    "sha1": bytes.fromhex("2b0e03021a"),
    "sha224": bytes.fromhex("608648016503040204"),
    "sha256": bytes.fromhex("608648016503040201"),
    "sha384": bytes.fromhex("608648016503040202"),
    "sha512": bytes.fromhex("608648016503040203"),
    "sha3-256": bytes.fromhex("608648016503040208"),
    "sha3-384": bytes.fromhex("608648016503040209"),
    "sha3-512": bytes.fromhex("60864801650304020a"),
}
_DIGEST_SIZES = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64,
                 "sha3-256": 32, "sha3-384": 48, "sha3-512": 64}
MIN_BITS = 1024
"""Keys below this are left to ``cryptography`` (it decides what it refuses); real module
signing keys are 2048-4096 bits."""


def digest_info(hash_algo: str, digest: bytes) -> bytes | None:
    """DER DigestInfo ``SEQUENCE { SEQUENCE { OID, NULL }, OCTET STRING digest }``; None for a
    digest this module does not know, or a digest of the wrong length."""
    oid = _DIGEST_OIDS.get(hash_algo)
    if oid is None or len(digest) != _DIGEST_SIZES[hash_algo]:
        return None
    algorithm = b"\x30" + bytes([len(oid) + 4]) + b"\x06" + bytes([len(oid)]) + oid + b"\x05\x00"
    body = algorithm + b"\x04" + bytes([len(digest)]) + digest
    return b"\x30" + bytes([len(body)]) + body


@functools.lru_cache(maxsize=64)
def public_numbers(cert_der: bytes) -> tuple[int, int] | None:
    """(n, e) of a certificate's RSA key this module will verify with, else None (not RSA,
    malformed, or a key ``cryptography`` should judge: small, even modulus, even exponent)."""
    from asn1crypto import x509  # loaded already by the certificate parser

    try:
        info = x509.Certificate.load(cert_der)["tbs_certificate"]["subject_public_key_info"]
        if info["algorithm"]["algorithm"].dotted != "1.2.840.113549.1.1.1":
            return None
        key = info["public_key"].parsed
        n, e = key["modulus"].native, key["public_exponent"].native
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    if not (isinstance(n, int) and isinstance(e, int)) or n.bit_length() < MIN_BITS or n % 2 == 0 \
            or e < 3 or e % 2 == 0 or e >= n:
        return None
    return n, e


def verify_pkcs1v15(n: int, e: int, signature: bytes, hash_algo: str, digest: bytes) -> bool | None:
    """Whether ``signature`` is a PKCS#1 v1.5 signature of ``digest`` by the key (n, e); None
    when the digest algorithm is not one this module encodes (the caller decides then)."""
    encoded = digest_info(hash_algo, digest)
    if encoded is None:
        return None
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    padding = k - 3 - len(encoded)
    if padding < 8:
        return False
    expected = b"\x00\x01" + b"\xff" * padding + b"\x00" + encoded
    return pow(s, e, n).to_bytes(k, "big") == expected
