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
