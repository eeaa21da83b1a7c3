"""PE section tables and UKIs (exporter/formats/pe.py), systemd-boot's entry order
(exporter/formats/bls.py) and the UKI path of the bootloader and initramfs collectors.

The PE writer (tests/pebuild.py) is checked against binutils' objdump, so the parser is not only
agreeing with our own writer; Debian 13's real ukify/bootctl are compared in
tests/realhost/test_uki.py."""

from __future__ import annotations

import io
import re
import struct
import subprocess

import pytest
from pebuild import Sec, build_pe, bzimage, uki
from testkit import K1, K2, errors_of, metrics_of, require_tool, scrape, two_kernels

from exporter.facts.bootloader import BootFacts
from exporter.facts.initramfs import InitramfsFacts
from exporter.formats.bls import SdBootEntry, sdboot_order, split_tries, strverscmp_improved
from exporter.formats.pe import PeError, SectionFile, parse_pe, read_uki

MID = "0123456789abcdef0123456789abcdef"


def test_sections_as_objdump_reads_them(tmp_path) -> None:
    objdump = require_tool("objdump")
    blob = build_pe([Sec(".osrel", b"ID=debian\n"), Sec(".linux", b"\x01" * 3000), Sec(".initrd", b"\x02" * 700,
                                                                                          virtual_size=900)])
    (tmp_path / "x.efi").write_bytes(blob)
    out = subprocess.run([objdump, "-h", str(tmp_path / "x.efi")], capture_output=True, text=True, check=True).stdout
    theirs = {m[1]: (int(m[2], 16), int(m[3], 16), int(m[4], 16))
              for m in re.finditer(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", out, re.M)}
    image = parse_pe(io.BytesIO(blob))
    ours = {s.name: (s.virtual_size, s.virtual_address, s.raw_offset) for s in image.sections}
    # objdump's "Size" of an image section is its VirtualSize; VMA is ImageBase (0) + VirtualAddress
    assert ours == theirs, out
    assert image.arch == "x86_64" and image.is_uki            # an EFI application with .linux and .osrel
    assert not parse_pe(io.BytesIO(build_pe([Sec(".osrel", b"ID=x"), Sec(".linux", b"k")], subsystem=3))).is_uki


def _patch(blob: bytes, at: int, fmt: str, value: int) -> bytes:
    b = bytearray(blob)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


def _table(blob: bytes) -> int:
    lfanew = struct.unpack_from("<I", blob, 0x3C)[0]
    return lfanew + 24 + struct.unpack_from("<H", blob, lfanew + 20)[0]


@pytest.mark.parametrize("damage, code", [
    (lambda b: b[:_table(b) + 20], "truncated"),                        # section table cut
    (lambda b: b[:0x30], "truncated"),
    (lambda b: b"XX" + b[2:], "not_pe"),
    (lambda b: _patch(b, 0x3C, "<I", 8), "bad_header"),
    (lambda b: _patch(b, 0x3C, "<I", 1 << 30), "truncated"),
    (lambda b: _patch(b, struct.unpack_from("<I", b, 0x3C)[0] + 6, "<H", 0), "bad_header"),
    (lambda b: _patch(b, struct.unpack_from("<I", b, 0x3C)[0] + 6, "<H", 0xFFFF), "truncated"),
    (lambda b: _patch(b, _table(b) + 20, "<I", 1 << 31), "section_out_of_file"),   # .osrel beyond the end
    (lambda b: _patch(b, _table(b) + 8, "<I", 0xFFFFFFF0), "too_large"),          # .osrel VirtualSize huge
])
def test_hostile_headers_are_format_errors(damage, code) -> None:
    with pytest.raises(PeError) as exc:
        read_uki(io.BytesIO(damage(uki("6.12.1", b"07070100"))), origin="x.efi")
    assert exc.value.code == code and "x.efi" in str(exc.value)


def test_huge_initrd_virtual_size_lies_beyond_the_image() -> None:
    blob = uki("6.12.1", b"\0" * 16)
    image = parse_pe(io.BytesIO(blob))
    n = [s.name for s in image.sections].index(".initrd")
    blob = _patch(blob, _table(blob) + 40 * n + 8, "<I", 0xFFFFF000)
    image = parse_pe(io.BytesIO(blob))
    with pytest.raises(PeError, match="beyond SizeOfImage") as exc:
        SectionFile(io.BytesIO(blob), image, image.find(".initrd"))
    assert exc.value.code == "section_beyond_image"


def test_uname_and_its_bzimage_fallback() -> None:
    assert read_uki(io.BytesIO(uki("6.12.118+deb13-amd64"))).uname == "6.12.118+deb13-amd64"
    # no .uname: ukify's scrape_x86 rule on .linux's boot header
    assert read_uki(io.BytesIO(uki("6.12.113+deb13-amd64", uname=False))).uname == "6.12.113+deb13-amd64"
    assert read_uki(io.BytesIO(build_pe([Sec(".linux", bzimage("x")), Sec(".cmdline", b"a")]))) is None  # not a UKI


def test_text_with_an_inner_nul_is_refused() -> None:
    with pytest.raises(PeError) as exc:
        read_uki(io.BytesIO(uki("6.12.1", osrel=b"ID=debian\0NAME=x\n")))
    assert exc.value.code == "bad_text"


def test_profiles_take_their_own_sections_then_the_base() -> None:
    blob = build_pe([Sec(".osrel", b"ID=debian\nPRETTY_NAME=Debian\n"), Sec(".cmdline", b"quiet"),
                     Sec(".uname", b"6.12.1"), Sec(".linux", bzimage("6.12.1")),
                     Sec(".profile", b"ID=default\n"), Sec(".profile", b"ID=rescue\nTITLE=Rescue\n"),
                     Sec(".cmdline", b"rescue")])
    parsed = read_uki(io.BytesIO(blob))
    assert [(p.number, p.cmdline, p.profile) for p in parsed.profiles] == [
        (0, "quiet", "ID=default\n"), (1, "rescue", "ID=rescue\nTITLE=Rescue\n")]


# systemd's own ordering example (string-util-fundamental.c, strverscmp_improved's comment), oldest first
SYSTEMD_ORDER = ["122.1", "123~rc1-1", "123", "123-a", "123-a.1", "123-1", "123-1.1", "123^post1", "123.a-1",
                 "123.1-1", "123a-1", "124-1"]


def test_strverscmp_improved_orders_systemds_example() -> None:
    for i, a in enumerate(SYSTEMD_ORDER):
        for j, b in enumerate(SYSTEMD_ORDER):
            assert strverscmp_improved(a, b) == (i > j) - (i < j), (a, b)
    assert strverscmp_improved("00123", "123") == 0
    assert strverscmp_improved("6.12.118+deb13-amd64", "6.12.113+deb13-amd64") == 1


def test_tries_are_split_off_the_file_name() -> None:
    assert split_tries("a-6.1+3-1.conf") == ("a-6.1.conf", 3, 1)
    assert split_tries("a+3.efi") == ("a.efi", 3, None)
    assert split_tries("a+x.conf") == ("a+x.conf", None, None)


def test_order_sort_key_machine_id_version_then_id() -> None:
    def e(i, **kw):
        return SdBootEntry(i, "type1", "esp", i, None, **kw)
    entries = [e("z.conf"), e("b.conf", sort_key="fedora", version="1"), e("a.conf", sort_key="debian", version="6.1"),
               e("c.conf", sort_key="debian", version="6.12"), e("d.conf", sort_key="debian", machine_id="b", version="9"),
               e("y.conf", tries_left=0, sort_key="debian"), e("x-2.conf"), e("x-10.conf")]
    assert [x.id for x in sdboot_order(entries)] == [
        "c.conf", "a.conf", "d.conf", "b.conf", "z.conf", "x-10.conf", "x-2.conf", "y.conf"]


# ---------------------------------------------------------------------------------------------
# The collectors on a UKI host


def _uki_host(host, *, uki_initrd_modules: list[str], damage=None):
    """two_kernels with systemd-boot: K2 as a UKI (its .initrd built from `uki_initrd_modules`),
    K1 as a type #1 entry; /boot/initrd.img-K2 keeps its own (different) modules."""
    two_kernels(host)
    host.initramfs(K2, uki_initrd_modules)
    inner = host.path(f"boot/initrd.img-{K2}").read_bytes()
    host.initramfs(K2, ["e1000e"])
    host.write("boot/efi/loader/loader.conf", "timeout 3\n")
    host.write(f"boot/efi/loader/entries/{MID}-{K1}.conf",
               f"title Debian\nsort-key debian\nversion {K1}\nmachine-id {MID}\nlinux /{MID}/{K1}/linux\n")
    blob = uki(K2, inner)
    host.write(f"boot/efi/EFI/Linux/{MID}-{K2}.efi", damage(blob) if damage else blob)
    return host.root


def test_uki_is_the_next_boot_and_its_initrd_is_read(host) -> None:
    root = _uki_host(host, uki_initrd_modules=["e1000e", "acpi_call"])
    facts = scrape(root).facts
    boot = facts.get(BootFacts)
    # sort-key debian for both; version: "13 (trixie)" (the UKI's .osrel VERSION) sorts above K1's
    assert (boot.loader, boot.next_boot) == ("systemd-boot", K2)
    assert [(e.type, e.kernel) for e in boot.entries] == [("type2", K2), ("type1", K1)]
    image = facts.get(InitramfsFacts).images[K2]
    assert image.path == f"/boot/efi/EFI/Linux/{MID}-{K2}.efi"
    assert "acpi_call" in image.listing.modules      # the UKI's, not /boot/initrd.img-K2's
    assert facts.get(InitramfsFacts).images[K1].path == f"/boot/initrd.img-{K1}"


@pytest.mark.parametrize("what, damage", [
    ("section table cut", lambda b: b[:_table(b) + 30]),
    ("osrel beyond the end", lambda b: _patch(b, _table(b) + 20, "<I", 1 << 31)),
])
def test_a_damaged_uki_is_no_entry_and_an_error(host, capsys, what, damage) -> None:
    root = _uki_host(host, uki_initrd_modules=["e1000e"], damage=damage)
    boot = scrape(root).facts.get(BootFacts)
    assert [e.type for e in boot.entries] == ["type1"] and boot.next_boot == K1
    m = metrics_of(root, capsys)
    assert errors_of(m, "bootloader") >= 1
    assert errors_of(m, "initramfs") == 0     # reported once, by the collector whose file it is


@pytest.mark.parametrize("what, code, damage", [
    ("initrd beyond the end", "truncated", lambda b, at: _patch(b, at + 20, "<I", len(b) - 100)),
    ("initrd VirtualSize huge", "corrupt", lambda b, at: _patch(b, at + 8, "<I", 0xFFFFF000)),
])
def test_a_damaged_initrd_section_is_an_unreadable_initramfs(host, capsys, what, code, damage) -> None:
    def hurt(blob: bytes) -> bytes:
        image = parse_pe(io.BytesIO(blob))
        n = [s.name for s in image.sections].index(".initrd")
        return damage(blob, _table(blob) + 40 * n)
    root = _uki_host(host, uki_initrd_modules=["e1000e"], damage=hurt)
    s = scrape(root)
    image = s.facts.get(InitramfsFacts).images[K2]
    assert image.error is not None and image.error.code == code, image
    reasons = {p.reason for v in s.readiness.kernels if v.kernel == K2 for p in v.kernel_problems}
    assert "initramfs_unreadable" in reasons
    m = metrics_of(root, capsys)    # serving goes on
    assert m["dkms_kernel_ready"]


# ---------------------------------------------------------------------------------------------
# Properties: any bytes, and a real layout with any bytes changed, give a UKI or a PeError


import os  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402

# as tests/test_properties.py: PROPERTY_EXAMPLES examples, derandomized unless PROPERTY_RANDOM is set
PROFILE = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")), deadline=None,
                   derandomize=os.environ.get("PROPERTY_RANDOM") is None, suppress_health_check=[HealthCheck.too_slow])

_SEED = uki("6.12.118+deb13-amd64", b"07070100" + b"\0" * 200)


@PROFILE
@given(hst.binary(max_size=4096))
def test_any_bytes_are_a_uki_or_a_pe_error(data: bytes) -> None:
    try:
        read_uki(io.BytesIO(data))
    except PeError:
        pass


@PROFILE
@given(hst.lists(hst.tuples(hst.integers(0, len(_SEED) - 1), hst.integers(0, 255)), min_size=1, max_size=8),
       hst.integers(0, len(_SEED)))
def test_a_damaged_layout_is_a_uki_or_a_pe_error(changes, cut) -> None:
    blob = bytearray(_SEED)
    for at, value in changes:
        blob[at] = value
    fh = io.BytesIO(bytes(blob[:cut]))
    try:
        parsed = read_uki(fh)
    except PeError:
        return
    if parsed is not None and parsed.initrd is not None:
        try:
            window = SectionFile(fh, parsed.image, parsed.initrd)
        except PeError:
            return
        assert len(window.read()) == parsed.initrd.file_size   # a window never reads past its section


_ENTRY = hst.builds(
    lambda i, key, mid, ver, left: SdBootEntry(f"e{i}.conf", "type1", "esp", "", None, sort_key=key,
                                               machine_id=mid, version=ver, tries_left=left),
    hst.integers(0, 30), hst.sampled_from([None, "debian", "Debian", "arch"]), hst.sampled_from([None, "a", "b"]),
    hst.sampled_from([None, "6.12.1", "6.12.10", "6.12~rc1", "6.12^p", "6.12-1", "13"]),
    hst.sampled_from([None, 0, 1]))


@PROFILE
@given(hst.lists(_ENTRY, max_size=12, unique_by=lambda e: e.id), hst.randoms())
def test_the_menu_order_does_not_depend_on_the_listing_order(entries, rnd) -> None:
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert sdboot_order(shuffled) == sdboot_order(entries)
