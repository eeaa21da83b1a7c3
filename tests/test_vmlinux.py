"""Reading a kernel image's built-in certificate list (exporter/formats/vmlinux.py) on bad input:
every damaged image is a VmlinuxError with its code, never a crash or a made-up list.

The images are laid out as kbuild lays them (a bzImage boot header, an xz payload written by the
real xz tool with the size kbuild appends, the list and its size field); that the reader finds
the real list in Debian's real vmlinuz is tests/realhost/test_builtin_keys.py.
"""

from __future__ import annotations

import io
import struct
import subprocess

import pytest
from testkit import require_tool

from exporter.formats.vmlinux import VmlinuxError, builtin_certificates

from hostbuilder import KEYS

CERTS = [(KEYS / f"{n}.der").read_bytes() for n in ("kernel-build", "dkms-mok")]


def vmlinux(certs: list[bytes], size_field: bool = True, decoy: bool = True) -> bytes:
    """Bytes shaped like a linked vmlinux around .init.data: code, a decoy certificate (not a
    list: no size after it), the 8-aligned list and its quad."""
    body = bytearray(b"\x7fELF" + bytes(4092))
    if decoy:
        body += CERTS[1] + bytes(64)
    body += bytes(-len(body) % 8)
    listed = b"".join(certs)
    body += listed + bytes(-len(listed) % 8)
    if size_field:
        body += struct.pack("<Q", len(listed))
    return bytes(body + bytes(8192))


def bzimage(payload: bytes, setup_sects: int = 3, version: int = 0x20F) -> bytes:
    xz = subprocess.run([require_tool("xz"), "-c", "--check=crc32"], input=payload, capture_output=True,
                        check=True).stdout + struct.pack("<I", len(payload))
    head = bytearray((setup_sects + 1) * 512)
    head[0x1F1] = setup_sects
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x206, version)
    struct.pack_into("<II", head, 0x248, 100, len(xz))
    return bytes(head) + bytes(100) + xz


def read(data: bytes):
    return builtin_certificates(io.BytesIO(data), len(data))


def test_bzimage_list_is_found_and_the_decoy_is_not():
    keys = read(bzimage(vmlinux(CERTS[:1])))
    assert keys.how == "bzImage+xz" and [c.der for c in keys.certificates] == CERTS[:1]


def test_raw_image_with_two_certificates():
    keys = read(vmlinux(CERTS))
    assert keys.how == "raw" and [c.der for c in keys.certificates] == CERTS


@pytest.mark.parametrize("damage, code", [
    ("no_size", "no_certificate_list"),
    ("truncated_payload", "truncated"),
    ("old_protocol", "unsupported"),
    ("garbage_payload", "unknown_format"),
    ("flipped_payload", "corrupt"),
    ("empty", "no_certificate_list"),
])
def test_damaged_images_are_errors(damage, code):
    if damage == "no_size":
        data = bzimage(vmlinux(CERTS[:1], size_field=False))
    elif damage == "truncated_payload":
        data = bzimage(vmlinux(CERTS[:1]))[:-200]
    elif damage == "old_protocol":
        data = bzimage(vmlinux(CERTS[:1]), version=0x207)
    elif damage == "garbage_payload":
        good = bytearray(bzimage(vmlinux(CERTS[:1])))
        good[4 * 512 + 100:4 * 512 + 106] = b"NOTXZ!"
        data = bytes(good)
    elif damage == "flipped_payload":
        good = bytearray(bzimage(vmlinux(CERTS[:1])))
        good[4 * 512 + 100 + 200] ^= 0xFF
        data = bytes(good)
    else:
        data = b""
    with pytest.raises(VmlinuxError) as exc:
        read(data)
    assert exc.value.code == code, exc.value
