"""The CA-only .machine keyring of upstream 6.4+ (CONFIG_INTEGRITY_CA_MACHINE_KEYRING[_MAX]):
restrict_link_by_ca() admits a MOK certificate only with basicConstraints CA and keyUsage
keyCertSign (and, with _MAX, without digitalSignature); the rest go to .platform, which an
upstream kernel never verifies modules with.

Certificates are made by the real openssl, including the command DKMS itself runs to make
/var/lib/dkms/mok.pub; the flags the exporter reads are compared with what openssl prints."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import modbuild as mb
from exporter.formats.x509 import key_flags, load_certificate
from exporter.facts.secureboot import machine_admits
from testkit import K2
from test_keyrings import arch
from test_module_truth import host_with

EXTS = {
    # dkms's own command (dkms 3.x, "mok.pub"): openssl req's default extensions
    "dkms": [],
    "ca-certsign": ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
    "ca-certsign-digsig": ["-addext", "basicConstraints=critical,CA:TRUE",
                           "-addext", "keyUsage=critical,keyCertSign,digitalSignature"],
    "leaf": ["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature"],
    "ca-no-usage": ["-addext", "basicConstraints=critical,CA:TRUE"],
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("ca")
    out = {}
    for name, ext in EXTS.items():
        der = work / f"{name}.der"
        subprocess.run([mb.need_tool("openssl"), "req", "-new", "-x509", "-nodes", "-days", "36500", "-subj",
                        "/CN=DKMS module signing key", "-newkey", "rsa:2048", "-keyout", str(work / f"{name}.key"),
                        "-outform", "DER", "-out", str(der), *ext], check=True, capture_output=True)
        out[name] = der
    return out


def openssl_flags(der: Path) -> tuple[bool, bool, bool]:
    text = subprocess.run([mb.need_tool("openssl"), "x509", "-inform", "DER", "-in", str(der), "-noout", "-ext",
                           "basicConstraints,keyUsage"], capture_output=True, text=True, check=True).stdout
    return "CA:TRUE" in text, "Certificate Sign" in text, "Digital Signature" in text


@pytest.mark.parametrize("name", list(EXTS))
def test_flags_are_what_openssl_prints(certs, name):
    f = key_flags(load_certificate(certs[name].read_bytes()))
    assert (f.ca, f.key_cert_sign, f.digital_signature) == openssl_flags(certs[name])


CA = {"CONFIG_INTEGRITY_CA_MACHINE_KEYRING": "y"}
CA_MAX = {**CA, "CONFIG_INTEGRITY_CA_MACHINE_KEYRING_MAX": "y"}


@pytest.mark.parametrize("name, plain, ca, ca_max", [
    ("dkms", True, False, False),           # CA:TRUE from openssl's defaults, but no keyUsage: no keyCertSign
    ("ca-certsign", True, True, True),
    ("ca-certsign-digsig", True, True, False),
    ("leaf", True, False, False),
    ("ca-no-usage", True, False, False),
])
def test_what_a_ca_only_machine_keyring_admits(certs, name, plain, ca, ca_max):
    cert = load_certificate(certs[name].read_bytes())
    assert (machine_admits(cert, {}), machine_admits(cert, CA), machine_admits(cert, CA_MAX)) == (plain, ca, ca_max)


def test_upstream_kernel_with_a_ca_only_machine_keyring_refuses_a_leaf_mok_key(host):
    """tests/data/keys/dkms-mok is CA:FALSE: on a 6.4+ upstream kernel with the CA restriction it
    lands in .platform, and K refuses the module where it would take it without the option."""
    host_with(host, sb=True)
    cfg = host.path(f"boot/config-{K2}")
    cfg.write_text(cfg.read_text() + "CONFIG_INTEGRITY_CA_MACHINE_KEYRING=y\n")
    s = arch(host, machine_keyring=True, trusted_rt=True)
    (p,) = [p for m in s.readiness.kernel(K2).modules for p in m.problems]
    assert p.reason == "untrusted_key" and "CONFIG_INTEGRITY_CA_MACHINE_KEYRING" in p.detail


def test_debian_kernel_with_the_ca_option_still_falls_back_to_platform(host):
    host_with(host, sb=True)
    cfg = host.path(f"boot/config-{K2}")
    cfg.write_text(cfg.read_text() + "CONFIG_INTEGRITY_MACHINE_KEYRING=y\nCONFIG_INTEGRITY_CA_MACHINE_KEYRING=y\n")
    from testkit import scrape
    from test_module_truth import reasons
    assert reasons(scrape(host.root)) == []
