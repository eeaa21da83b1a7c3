"""Does a module's PKCS#7 signature verify against a certificate, as the kernel decides it?

The kernel's path (kernel/module/signing.c mod_verify_sig() -> verify_pkcs7_signature();
crypto/asymmetric_keys/pkcs7_verify.c, docs/formats.md "Verifying a module signature"):

1. ``pkcs7_verify()`` with VERIFYING_MODULE_SIGNATURE refuses, before any key is looked up, a
   message whose content type is not id-data and one that carries authenticated (signed)
   attributes: EKEYREJECTED, fatal even when signatures are not enforced;
2. the signer is looked up by issuer+serial or subjectKeyIdentifier in the trusted keyrings; not
   found is ENOKEY (``untrusted_key``, only fatal when enforced);
3. ``public_key_verify_signature()`` checks the signature over the content digest with that key
   (RSA PKCS#1 v1.5 or ECDSA); a mismatch is EKEYREJECTED, fatal.

``check_attributes`` also verifies the general CMS form (messageDigest attribute, then the
signature over the DER SET OF the attributes) so that the cryptographic answer can be compared
with `openssl cms -verify` even where the kernel's policy refuses the message first.

The ``cryptography`` import is lazy: a host with no signed module never pays for it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass


from .module import ModuleSignature
from .x509 import Certificate

OID_DATA = "1.2.840.113549.1.7.1"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_RSA_OIDS = {"1.2.840.113549.1.1.1", "1.2.840.113549.1.1.5", "1.2.840.113549.1.1.14",
             "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13"}
_ECDSA_OIDS = {"1.2.840.10045.2.1", "1.2.840.10045.4.1", "1.2.840.10045.4.3.1", "1.2.840.10045.4.3.2",
               "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"}


@dataclass(frozen=True)
class SigCheck:
    """``ok`` is whether the kernel would accept the signature with that key; ``detail`` says why
    not, in terms of the kernel's own warnings where it prints one."""

    ok: bool
    detail: str = ""


def policy_rejection(sig: ModuleSignature) -> str | None:
    """Why the kernel refuses this signature whatever key signed it (pkcs7_verify()), or None."""
    if sig.content_type != OID_DATA:
        return f"Invalid module sig (not pkcs7-data): content type {sig.content_type}"
    if sig.signed_attrs is not None:
        return "Invalid module sig (has authattrs): the kernel refuses signed attributes on modules"
    return None


def matches(sig: ModuleSignature, cert: Certificate) -> bool:
    """The kernel's key lookup: by subjectKeyIdentifier for `sign-file -k` signatures, else by
    issuer and serial (compared as kmod prints them, as exporter.formats.module parses them)."""
    if sig.skid is not None:
        return cert.skid == sig.skid
    return sig.signer == cert.issuer_cn and sig.key_id == cert.serial


def verify(sig: ModuleSignature, cert: Certificate) -> SigCheck:
    """Whether the kernel would accept ``sig`` signed by ``cert``'s key (policy, then crypto)."""
    reason = policy_rejection(sig)
    if reason is not None:
        return SigCheck(False, reason)
    return check_attributes(sig, cert)


def check_attributes(sig: ModuleSignature, cert: Certificate) -> SigCheck:
    """The cryptographic check alone: messageDigest and the signature over the signed attributes
    when there are any, else the signature over the content digest."""
    if sig.content_digest is None:
        return SigCheck(False, f"digest {sig.hash_algo} is not one the exporter can compute")
    if sig.signed_attrs is None:
        return _verify_cached(sig.signature_value, sig.signature_algo, sig.hash_algo, sig.content_digest,
                              cert.der)
    found = _message_digest(sig.signed_attrs)
    if found != sig.content_digest:
        return SigCheck(False, "Message digest doesn't match: the module changed after it was signed")
    attrs_digest = hashlib.new(sig.hash_algo.replace("-", "_"), sig.signed_attrs).digest()
    return _verify_cached(sig.signature_value, sig.signature_algo, sig.hash_algo, attrs_digest, cert.der)


def _message_digest(signed_attrs: bytes) -> bytes | None:
    from asn1crypto import cms   # only when a signature is verified (see formats.module)

    for attr in cms.CMSAttributes.load(signed_attrs):
        if attr["type"].dotted == _OID_MESSAGE_DIGEST and len(attr["values"]) == 1:
            return bytes(attr["values"][0].native)
    return None


@functools.lru_cache(maxsize=4096)
def _verify_cached(signature: bytes, algo: str, hash_algo: str, digest: bytes, cert_der: bytes) -> SigCheck:
    """One public-key operation per (signature, digest, certificate): the module's digest is
    already cached by file identity, so an unchanged module costs a dictionary lookup."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    hash_cls = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
                "sha384": hashes.SHA384, "sha512": hashes.SHA512, "sha3-256": hashes.SHA3_256,
                "sha3-384": hashes.SHA3_384, "sha3-512": hashes.SHA3_512}.get(hash_algo)
    if hash_cls is None:
        return SigCheck(False, f"digest {hash_algo} is not one the exporter can verify")
    prehashed = utils.Prehashed(hash_cls())
    try:
        key = _public_key(cert_der)
        if isinstance(key, str):
            return SigCheck(False, key)
        if isinstance(key, rsa.RSAPublicKey) and algo in _RSA_OIDS:
            key.verify(signature, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algo in _ECDSA_OIDS:
            key.verify(signature, digest, ec.ECDSA(prehashed))
        else:
            return SigCheck(False, f"signature algorithm {algo} does not fit the certificate's "
                                   f"{type(key).__name__.lstrip('_')} key")
    except InvalidSignature:
        return SigCheck(False, "the signature does not verify with the signer's key: the module "
                               "changed after it was signed")
    except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
        return SigCheck(False, f"the signature or key is malformed: {exc}")
    return SigCheck(True)


# the curves the kernel verifies ECDSA module signatures on (crypto/ecdsa.c: NIST P-192, P-256,
# P-384; P-521 since 6.10), by asn1crypto's names
_CURVES = {"secp192r1": "SECP192R1", "secp256r1": "SECP256R1", "secp384r1": "SECP384R1", "secp521r1": "SECP521R1"}


def _public_key(cert_der: bytes):
    """The certificate's public key as a cryptography key object, built from its numbers (RSA's
    modulus and exponent, EC's curve and point), or a sentence saying why there is none.  Only
    the key, as the kernel's x509_cert_parser takes it; not through cryptography's X.509 or
    serialization layers, whose imports (ssh and with it bcrypt) cost ~2 MiB of every process
    that checks a signature."""
    from asn1crypto import x509 as asn1x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    spki = asn1x509.Certificate.load(cert_der)["tbs_certificate"]["subject_public_key_info"]
    kind = spki.algorithm
    if kind in ("rsa", "rsassa_pss"):
        numbers = spki["public_key"].parsed
        return rsa.RSAPublicNumbers(numbers["public_exponent"].native, numbers["modulus"].native).public_key()
    if kind == "ec":
        how, curve = spki.curve
        name = _CURVES.get(curve) if how == "named" else None
        if name is None:
            return f"the signer's key is on the elliptic curve {curve}, which the kernel does not verify"
        return ec.EllipticCurvePublicKey.from_encoded_point(getattr(ec, name)(), bytes(spki["public_key"]))
    return f"the signer's key is a {kind} key, which the kernel does not verify module signatures with"
