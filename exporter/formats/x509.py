"""X.509 certificates and names as the module-signing world shows them (kmod, mokutil, /proc/keys).

Pure parsers: bytes in, identities out.  Names follow kmod's x509_name_to_str() (the first CN,
else the last attribute) and serials its sig_key format, so that a certificate compares equal to
the signer a module's signature names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from .errors import TrustDataError
from .jsoncodec import Codec

if TYPE_CHECKING:
    from asn1crypto import x509 as asn1x509

_OID_COMMON_NAME = "2.5.4.3"


def format_key_id(serial: int) -> str:
    """Serial as kmod prints sig_key: minimal big-endian magnitude, %02X joined by ':'."""
    magnitude = abs(serial)
    raw = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
    return ":".join(f"{b:02X}" for b in raw)


def name_cn_like_kmod(name: asn1x509.Name) -> str:
    """The name string kmod's x509_name_to_str() yields: the first CN, else the last attribute.

    OpenSSL hands back the raw string bytes and kmod treats them as a C string, so the value is
    cut at the first NUL (matters only for BMPString/UniversalString names).
    """
    from asn1crypto import core as asn1core

    attrs = [atv for rdn in name.chosen for atv in rdn]
    if not attrs:
        return ""
    chosen = next((a for a in attrs if a["type"].dotted == _OID_COMMON_NAME), attrs[-1])
    raw = asn1core.load(chosen["value"].dump()).contents or b""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class Certificate:
    """An X.509 certificate's identity as the module-signing world uses it.

    ``serial`` is in modinfo's sig_key format; ``issuer_cn``/``subject_cn`` use kmod's name
    rule (first CN, else the last attribute) so they compare equal to a module's ``signer``;
    ``skid`` is lowercase hex (as /proc/keys shows it); ``sha256`` is of the DER.
    """

    subject_cn: str
    issuer_cn: str
    serial: str
    skid: str | None
    sha256: str
    der: bytes = field(repr=False)


# a parsed certificate file as the persistent cache keeps it: a run that finds it there imports
# no ASN.1 code (asn1crypto is ~9 MiB of a process)
CODEC = Codec("certificate", (Certificate,))


def load_certificate(data: bytes, origin: str = "certificate") -> Certificate:
    """Parse a DER or PEM X.509 certificate."""
    from asn1crypto import pem, x509 as asn1x509   # ~9 MiB: imported by the first certificate, not by every run

    try:
        if pem.detect(data):
            type_name, _, data = pem.unarmor(data)
            if type_name != "CERTIFICATE":
                raise ValueError(f"PEM block is {type_name}, not CERTIFICATE")
        cert = asn1x509.Certificate.load(data)
        cert.native  # full parse now, so garbage fails here and not later
        tbs = cert["tbs_certificate"]
        skid = cert.key_identifier
        return Certificate(
            subject_cn=name_cn_like_kmod(tbs["subject"]),
            issuer_cn=name_cn_like_kmod(tbs["issuer"]),
            serial=format_key_id(tbs["serial_number"].native),
            skid=skid.hex() if skid is not None else None,
            sha256=hashlib.sha256(cert.dump()).hexdigest(),
            der=cert.dump(),
        )
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError, RecursionError) as e:
        # asn1crypto raises AttributeError for a REAL where a certificate field has ANY type
        raise TrustDataError("bad_certificate", f"{origin}: not an X.509 certificate: {e}") from None


@dataclass(frozen=True)
class KeyFlags:
    """The extension bits the kernel's x509_cert_parser.c turns into KEY_EFLAG_CA (basicConstraints
    cA TRUE), KEY_EFLAG_KEYCERTSIGN and KEY_EFLAG_DIGITALSIG (keyUsage): what restrict_link_by_ca()
    admits into a CA-only .machine keyring.  No keyUsage extension sets neither usage bit."""

    ca: bool
    key_cert_sign: bool
    digital_signature: bool


def key_flags(cert: Certificate) -> KeyFlags:
    from asn1crypto import x509 as asn1x509

    parsed = asn1x509.Certificate.load(cert.der)
    usage = parsed.key_usage_value.native if parsed.key_usage_value is not None else set()
    bc = parsed.basic_constraints_value
    return KeyFlags(bool(bc is not None and bc["ca"].native), "key_cert_sign" in usage,
                    "digital_signature" in usage)
