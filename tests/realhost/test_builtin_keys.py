"""The certificates built into Debian's real kernel image, read by the exporter from vmlinuz, against
the real tools: the image's xz payload decompressed by xz itself and its sections listed by
readelf (the list lies in .init.data, where certs/system_certificates.S puts it), the
certificate printed by `openssl x509`, the in-tree modules' signer and key as kmod's modinfo
prints them, and `openssl cms -verify` of a real in-tree module with the extracted certificate.
Then the verdict: K's own module, copied out of tree, verifies against K's key; flipped, not.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import require_tool

from exporter.formats.modsig import verify
from exporter.formats.vmlinux import builtin_certificates
from exporter.collectors.module import read_module

from tests.test_modsig import openssl_verifies

from .conftest import REPO, RealHost
from .test_dependencies import copy_tree, depmod, ko

pytestmark = pytest.mark.realhost

MC = "kernel/drivers/media/mc/mc.ko"


def image(host: RealHost) -> tuple[Path, str]:
    kernel = host.env["NEW_KERNEL"]
    return host.tree("healthy") / "boot" / f"vmlinuz-{kernel}", kernel


# The bzImage payload's compression per generation (Debian 12: xz; Debian 13: zstd) and the real
# tool that decompresses it.
PAYLOAD = {"bookworm": ("xz", ["xz", "-dc", "--single-stream"]), "trixie": ("zstd", ["zstd", "-dc"])}


def module_bytes(path: Path) -> bytes:
    """A module file's ELF bytes; a .ko.xz (Debian 13) decompressed by the real xz."""
    if path.suffix != ".xz":
        return path.read_bytes()
    return subprocess.run([require_tool("xz"), "-dc", str(path)], capture_output=True, check=True).stdout


def real_vmlinux(vmlinuz: Path, out: Path, suite: str = "bookworm") -> Path:
    """The payload as the real xz (zstd) decompresses it (the bzImage boot header says where it is)."""
    data = vmlinuz.read_bytes()
    setup = (data[0x1F1] or 4) + 1
    offset, length = struct.unpack_from("<II", data, 0x248)
    payload = data[setup * 512 + offset:setup * 512 + offset + length]
    tool, *args = PAYLOAD[suite][1]
    if tool == "zstd":
        payload = payload[:-4]   # the kernel's build appends the size (size_append); zstd refuses trailing data
    p = subprocess.run([require_tool(tool), *args], input=payload, capture_output=True, check=True)
    out.write_bytes(p.stdout)
    return out


def section(vmlinux: Path, name: str) -> tuple[int, int]:
    """(file offset, size) of an ELF section, from readelf -S."""
    p = subprocess.run([require_tool("readelf"), "-S", "-W", str(vmlinux)], capture_output=True, text=True,
                       check=True)
    for line in p.stdout.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 6 and fields[1] == name:
            return int(fields[4], 16), int(fields[5], 16)
    raise AssertionError(f"readelf lists no {name} section:\n{p.stdout[:2000]}")


def modinfo(path: Path, field: str) -> str:
    return subprocess.run([require_tool("modinfo"), "-F", field, str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_builtin_certificates_agree_with_xz_readelf_openssl_and_modinfo(realhost: RealHost, tmp_path: Path) -> None:
    vmlinuz, kernel = image(realhost)
    with open(vmlinuz, "rb") as fh:
        found = builtin_certificates(fh, os.path.getsize(vmlinuz))
    assert found.how == f"bzImage+{PAYLOAD[realhost.suite][0]}" and len(found.certificates) >= 1
    vmlinux = real_vmlinux(vmlinuz, tmp_path / "vmlinux", realhost.suite)
    raw = vmlinux.read_bytes()
    start, size = section(vmlinux, ".init.data")
    mc = realhost.tree("healthy") / "lib/modules" / kernel / ko(realhost.tree("healthy"), kernel, MC)
    signer, sig_key = modinfo(mc, "signer"), modinfo(mc, "sig_key")
    for cert in found.certificates:
        at = raw.find(cert.der)
        assert start <= at < start + size, f"the certificate is not in .init.data ({at} vs {start}+{size})"
        der = tmp_path / "cert.der"
        der.write_bytes(cert.der)
        p = subprocess.run([require_tool("openssl"), "x509", "-inform", "DER", "-in", str(der), "-noout",
                            "-subject", "-serial", "-nameopt", "multiline"], capture_output=True, text=True,
                           check=True)
        assert f"commonName                = {cert.subject_cn}" in p.stdout, p.stdout
        assert p.stdout.split("serial=")[1].strip() == cert.serial.replace(":", ""), p.stdout
    build_key = [c for c in found.certificates if c.serial == sig_key]
    assert [c.subject_cn for c in build_key] == [signer], (signer, sig_key, found)
    # a real in-tree module verifies with it: openssl and the exporter
    pem = tmp_path / "build.pem"
    subprocess.run([require_tool("openssl"), "x509", "-inform", "DER", "-in", str(tmp_path / "cert.der"),
                    "-out", str(pem)], check=True)
    assert openssl_verifies(tmp_path, module_bytes(mc), pem)
    parsed = read_module(mc)
    assert verify(parsed.signature, build_key[0]).ok


def check_json(root: Path, kernel: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "exporter", "check", "--json", "--kernel", kernel,
                        "--path.rootfs", str(root)], cwd=REPO, capture_output=True, text=True, timeout=180,
                       check=False)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    return json.loads(p.stdout)


@pytest.mark.parametrize("flip", [False, True])
def test_module_signed_by_the_kernels_build_key(realhost: RealHost, tmp_path: Path, flip: bool) -> None:
    """Debian's own mc.ko, copied to updates/ and loaded as if out of tree: untouched, the
    signature verifies against the certificate in vmlinuz (no problem); one byte flipped, it is
    signature_invalid (Debian's kernel has CONFIG_MODULE_SIG=y: refused even unenforced), as
    openssl cms -verify says."""
    kernel = realhost.env["NEW_KERNEL"]
    root = copy_tree(realhost, "healthy", tmp_path / "tree")
    data = bytearray(module_bytes(root / "lib/modules" / kernel / ko(root, kernel, MC)))
    if flip:
        data[len(data) // 3] ^= 0x01
    (root / "lib/modules" / kernel / "updates").mkdir(exist_ok=True)
    (root / "lib/modules" / kernel / "updates/mc.ko").write_bytes(bytes(data))
    depmod(root, kernel)
    (root / "proc/modules").write_text("mc 61440 0 - Live 0xffffffffc0000000 (O)\n")
    with open(root / "boot" / f"vmlinuz-{kernel}", "rb") as fh:
        (cert, *_) = builtin_certificates(fh, os.path.getsize(root / "boot" / f"vmlinuz-{kernel}")).certificates
    pem = tmp_path / "build.pem"
    pem.write_text(__import__("ssl").DER_cert_to_PEM_cert(cert.der))
    assert openssl_verifies(tmp_path, bytes(data), pem) is (not flip)
    (k,) = check_json(root, kernel)["kernels"]
    (m,) = [m for m in k["modules"] if m["module"] == "mc"]
    reasons = [p["reason"] for p in m["problems"]]
    assert reasons == (["signature_invalid"] if flip else []), m


def test_an_enrolled_dkms_key_spares_decompressing_the_real_image(realhost: RealHost, tmp_path: Path,
                                                                   monkeypatch, capsys) -> None:
    """Secure Boot on, the real DKMS modules signed with DKMS's key, which MokListRT holds:
    Debian's kernel verifies them with it (its .platform fallback), so no vmlinuz is
    decompressed (on this tree that was 0.9 s and a 69 MiB peak instead of 0.3 s and 41 MiB),
    and the answers are those of a run that read the image and found no signer there."""
    import exporter.collectors.module as collector
    from exporter.cli import main

    root = copy_tree(realhost, "signed_sb_on", tmp_path / "tree")
    reads: list[int] = []
    real = collector.builtin_certificates
    monkeypatch.setattr(collector, "builtin_certificates",
                        lambda fh, size, extra=0: reads.append(size) or real(fh, size, extra))

    def answer() -> dict:
        assert main(["check", "--json", "--path.rootfs", str(root)]) in (0, 1)
        return json.loads(capsys.readouterr().out)

    spared = answer()
    assert reads == []
    reasons = {m["module"]: [p["reason"] for p in m["problems"]] for k in spared["kernels"] for m in k["modules"]}
    assert reasons == {"v4l2loopback": [], "acpi_call": ["unsigned"]}, reasons   # the scenario's one unsigned
    monkeypatch.setattr(collector, "enrolled_signers", lambda ctx, k, files: None)
    assert answer() == spared and reads                # the image read, as before: the same answers
