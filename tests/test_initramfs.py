"""exporter.initramfs against the real tools: mkinitramfs/lsinitramfs, dracut/lsinitrd, cpio -t.

Real images are built (and cached) by tests/initramfs_build.py for a real Debian kernel; our own
writer covers every compression, both cpio formats, odd alignments and multi-segment layouts; bad
input must always be an InitramfsError with the right code, never a crash or a shorter listing.
"""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import initramfs_build as build
from initramfs_build import (
    Entry,
    compress,
    cpio_archive,
    cpio_t,
    decompress,
    tree_entries,
)

from exporter.collectors.initramfs import find_image, list_image_file
from exporter.config import Config
from exporter.formats.initramfs import ERROR_CODES, ImageListing, InitramfsError, Segment, module_names
from exporter.host.cache import FileCache
from exporter.host.context import Context, Unreadable
from exporter.host.rootfs import HostFS

FORMATS = ("gzip", "zstd", "xz", "lzma", "lz4", "bzip2")


def _tools(*names: str) -> None:
    """Fail (never skip) when a tool the comparison needs is missing."""
    try:
        build.require(*names)
    except build.ToolMissing as exc:
        pytest.fail(str(exc))


def _real(make, *args, **kwargs) -> Path:
    try:
        return make(*args, **kwargs)
    except build.ToolMissing as exc:
        pytest.fail(str(exc))


def _write(tmp_path: Path, data: bytes, name: str = "initrd.img") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _error(path: Path, **kwargs) -> InitramfsError:
    with pytest.raises(InitramfsError) as info:
        list_image_file(path, **kwargs)
    assert info.value.code in ERROR_CODES
    assert str(info.value.offset) in str(info.value)
    return info.value


def _modules_dep_names(image: Path, kernel: str, tmp_path: Path) -> frozenset[str]:
    """Module names from the modules.dep that depmod wrote into the image (unpacked by unmkinitramfs)."""
    out = tmp_path / "unpacked"
    subprocess.run(["unmkinitramfs", str(image), str(out)], check=True, capture_output=True)
    (dep,) = [p for p in out.rglob("modules.dep") if f"/modules/{kernel}/" in str(p)]
    names = set()
    for line in dep.read_text().splitlines():
        path = line.split(":", 1)[0]
        names.add(os.path.basename(path).split(".", 1)[0].replace("-", "_"))
    return frozenset(names)


# ------------------------------------------------------------------------------------------------
# Images made by the real tools


MKINITRAMFS = {  # mkinitramfs COMPRESS= value -> format our reader reports
    "zstd": "zstd",
    "gzip": "gzip",
    "xz": "xz",
    "lz4": "lz4",
    "bzip2": "bzip2",
    "lzma": "lzma",
}


@pytest.mark.slow
@pytest.mark.parametrize("compress_name", sorted(MKINITRAMFS))
def test_mkinitramfs_image_lists_exactly_like_lsinitramfs(compress_name):
    image = _real(build.mkinitramfs_image, compress_name)
    listing = list_image_file(image)
    assert list(listing.names) == build.lsinitramfs_names(image)
    assert [s.compression for s in listing.segments] == [MKINITRAMFS[compress_name]]
    assert listing.entries == len(listing.names) > 100
    assert listing.image_bytes == image.stat().st_size == listing.segments[0].length
    kernel = build.debian_kernel().release
    assert {"ext4", "nvme", "ahci", "virtio_blk", "dm_crypt", "raid1", "xfs"} <= module_names(listing, kernel)


@pytest.mark.slow
def test_mkinitramfs_module_names_equal_depmods_modules_dep_in_the_image(tmp_path):
    _tools("unmkinitramfs")
    image = _real(build.mkinitramfs_image, "zstd")
    kernel = build.debian_kernel().release
    expected = _modules_dep_names(image, kernel, tmp_path)
    assert module_names(list_image_file(image), kernel) == expected
    assert module_names(list_image_file(image), "6.1.0-0-other") == frozenset()


@pytest.mark.slow
def test_mkinitramfs_with_early_microcode_cpios(tmp_path):
    image = _real(build.mkinitramfs_image, "zstd", early=True)
    listing = list_image_file(image)
    assert list(listing.names) == build.lsinitramfs_names(image)
    # two uncompressed archives (newc, then crc) before the zstd main archive
    assert [s.compression for s in listing.segments] == ["none", "none", "zstd"]
    assert listing.segments[0].offset == 0 and listing.segments[1].offset % 4 == 0
    assert image.read_bytes()[listing.segments[1].offset : listing.segments[1].offset + 6] == b"070702"
    assert listing.names[: listing.names.index("kernel/x86/microcode/GenuineIntel.bin") + 1][0] == "kernel"
    assert "kernel/firmware/acpi/ssdt1.aml" in listing.names


@pytest.mark.slow
def test_mkinitramfs_overlay_is_listed_though_lsinitramfs_stops_at_the_first_trailer(tmp_path):
    """catenate_cpiogz appends a gzip cpio; unmkinitramfs pipes main+overlay into one cpio -t,
    which stops at the main archive's TRAILER!!!.  The kernel unpacks the overlay, so we list it."""
    image = _real(build.mkinitramfs_image, "zstd", early=True, overlay=True)
    listing = list_image_file(image)
    assert [s.compression for s in listing.segments] == ["none", "none", "zstd", "gzip"]
    overlay = listing.segments[3]
    data = image.read_bytes()
    overlay_names = cpio_t(decompress(data[overlay.offset :], "gzip"))
    assert "conf/conf.d/zz-overlay" in overlay_names
    ls = build.lsinitramfs_names(image)
    assert "conf/conf.d/zz-overlay" not in ls
    assert list(listing.names) == ls + overlay_names


@pytest.mark.slow
def test_mkinitramfs_lzop_image_is_reported_not_guessed():
    """No maintained LZO decoder is a dependency: an lzop image is "unsupported" (the kernel
    unpacks it: not damaged, only not listed), not 'empty' and not unknown_format."""
    image = _real(build.mkinitramfs_image, "lzop")
    assert len(build.lsinitramfs_names(image)) > 100  # the real tool can read it
    err = _error(image)
    assert (err.code, err.offset) == ("unsupported", 0)
    assert "lzo" in str(err)


@pytest.mark.slow
@pytest.mark.parametrize("compress_name", ["zstd", "gzip"])
def test_dracut_image_lists_like_lsinitrd_and_lsinitramfs(compress_name, tmp_path):
    image = _real(build.dracut_image, compress_name)
    listing = list_image_file(image)
    assert [s.compression for s in listing.segments] == ["none", compress_name]
    assert list(listing.names) == build.lsinitrd_names(image)
    assert list(listing.names) == build.lsinitramfs_names(image)
    assert {"early_cpio", "kernel/x86/microcode/GenuineIntel.bin", "kernel/x86/microcode/AuthenticAMD.bin"} <= set(
        listing.names[:12]
    )
    kernel = build.debian_kernel().release
    assert {"ext4", "nvme", "xfs", "dm_crypt"} <= module_names(listing, kernel)


# ------------------------------------------------------------------------------------------------
# Our own writer: every compression, both cpio formats, odd names, multi-segment


def _parts_names(parts: list[tuple[str, bytes]]) -> list[str]:
    """What cpio -t prints for each part in turn (decompressed by the real tools)."""
    names: list[str] = []
    for fmt, blob in parts:
        names += cpio_t(blob if fmt == "none" else decompress(blob, fmt))
    return names


@pytest.mark.parametrize("fmt", FORMATS)
def test_single_compressed_archive_matches_cpio_and_lsinitramfs(fmt, tmp_path):
    archive = cpio_archive(tree_entries())
    path = _write(tmp_path, compress(archive, fmt))
    listing = list_image_file(path)
    assert list(listing.names) == cpio_t(archive) == build.lsinitramfs_names(path)
    assert listing.segments == (Segment(0, fmt, path.stat().st_size, len(archive)),)
    assert listing.uncompressed_bytes == len(archive)
    assert listing.sizes[listing.names.index("bin")] == len("usr/bin")
    assert stat.S_ISLNK(listing.modes[listing.names.index("bin")])


@pytest.mark.parametrize("fmt", FORMATS)
def test_early_newc_and_crc_then_compressed_main_then_overlay(fmt, tmp_path):
    early1 = cpio_archive([Entry("kernel", mode=0o040755), Entry("kernel/x86/microcode/GenuineIntel.bin", b"u" * 5)])
    early2 = cpio_archive([Entry("kernel/firmware/acpi/a.aml", b"acpi!!")], fmt="crc", pad_to=4)
    main = cpio_archive(tree_entries(), fmt="crc")
    overlay_fmt = "gzip" if fmt != "gzip" else "zstd"
    overlay = cpio_archive([Entry("conf/overlay", b"1\n"), Entry("etc/odd", b"abc")])
    parts = [("none", early1), ("none", early2), (fmt, compress(main, fmt)), (overlay_fmt, compress(overlay, overlay_fmt))]
    pads = [b"", b"", b"\0" * 4, b"\0" * 8]  # NUL runs between archives, as the kernel allows
    blob = b""
    offsets = []
    for pad, (_, data) in zip(pads, parts):
        blob += pad
        offsets.append(len(blob))
        blob += data
    path = _write(tmp_path, blob + b"\0" * 512)
    listing = list_image_file(path)
    assert list(listing.names) == _parts_names(parts)
    assert [(s.offset, s.compression) for s in listing.segments] == list(zip(offsets, ["none", "none", fmt, overlay_fmt]))
    # an uncompressed archive counts up to its TRAILER!!! entry; its NUL padding is between segments
    expected = [_through_trailer(early1), _through_trailer(early2), len(main), len(overlay)]
    assert [s.uncompressed_bytes for s in listing.segments] == expected
    assert listing.segments[0].length == _through_trailer(early1)
    assert listing.uncompressed_bytes == sum(expected)
    assert listing.entries == len(listing.names)


def _through_trailer(archive: bytes) -> int:
    return (archive.index(b"TRAILER!!!") + 11 + 3) // 4 * 4


def test_back_to_back_early_archives_are_all_listed_unlike_lsinitramfs(tmp_path):
    """Two uncompressed archives with no NUL padding between them: the kernel unpacks both, but
    unmkinitramfs walks them as one chunk and its cpio -i stops at the first TRAILER!!!."""
    first = cpio_archive([Entry("kernel/x86/microcode/GenuineIntel.bin", b"abc")], pad_to=0)
    second = cpio_archive([Entry("kernel/firmware/acpi/b.aml", b"acpi")], fmt="crc", pad_to=0)
    main = cpio_archive(tree_entries(1, 2))
    path = _write(tmp_path, first + second + compress(main, "zstd"))
    listing = list_image_file(path)
    assert [(s.offset, s.compression) for s in listing.segments] == [(0, "none"), (len(first), "none"), (len(first) + len(second), "zstd")]
    assert list(listing.names) == cpio_t(first) + cpio_t(second) + cpio_t(main)
    assert build.lsinitramfs_names(path) == cpio_t(first) + cpio_t(main)


@pytest.mark.parametrize("fmt", ["gzip", "zstd", "bzip2", "xz", "lz4"])
def test_archive_split_across_adjacent_streams_of_one_format(fmt, tmp_path):
    """pigz/pzstd/lbzip2-style output: several streams back to back, cut mid-archive."""
    archive = cpio_archive(tree_entries(4, 5))
    cut = len(archive) // 2 + 3
    second = cpio_archive([Entry("second/archive", b"x")])
    blob = compress(archive[:cut], fmt) + compress(archive[cut:], fmt) + compress(second, fmt)
    listing = list_image_file(_write(tmp_path, blob))
    assert list(listing.names) == cpio_t(archive) + cpio_t(second)
    assert [s.compression for s in listing.segments] == [fmt]


def test_lz4_legacy_stream_with_several_8mib_blocks(tmp_path):
    rng = random.Random(7)
    big = rng.randbytes(9 << 20)  # incompressible: lz4 -l must use two blocks
    archive = cpio_archive([Entry("big.bin", big), Entry("after/big", b"tail")])
    blob = compress(archive, "lz4")
    assert len(blob) > 9 << 20
    listing = list_image_file(_write(tmp_path, blob + b"\0" * 16))
    assert list(listing.names) == ["big.bin", "after/big"]
    assert listing.sizes == (9 << 20, 4)


@pytest.mark.parametrize(
    "names",
    [
        ["a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh"],  # every padding case
        ["/abs/x", "../up", "./dot/a", "a//b", "dir/../y", "/", ".", "x/..y/z", "..z"],  # cpio's renaming
        ["space name", "tab\tname", "uni-\u00e9\u4e2d", "utf8-bad-\udcff"],
    ],
)
@pytest.mark.parametrize("fmt", ["newc", "crc"])
def test_names_are_printed_as_cpio_prints_them(names, fmt, tmp_path):
    entries = [Entry(os.fsencode(n), data=b"d" * i) for i, n in enumerate(names)]
    archive = cpio_archive(entries, fmt=fmt, pad_to=0)
    listing = list_image_file(_write(tmp_path, archive))
    assert list(listing.names) == cpio_t(archive)
    assert listing.segments == (Segment(0, "none", len(archive), len(archive)),)
    if "/abs/x" in names:
        assert listing.names[:2] == ("abs/x", "up")


def test_names_end_at_the_first_nul_and_trailer_is_not_listed(tmp_path):
    raw = bytearray(cpio_archive([Entry("abcdefg", b"z")], pad_to=0))
    raw[110 + 3] = 0  # "abc\0efg\0": C strings end at the first NUL
    listing = list_image_file(_write(tmp_path, bytes(raw)))
    assert listing.names == ("abc",) and "TRAILER!!!" not in listing.names


def test_every_real_compressor_magic_is_detected_after_nul_padding(tmp_path):
    blob = b""
    expected = []
    for i, fmt in enumerate(FORMATS):
        blob += b"\0" * (4 * i)
        expected.append((len(blob), fmt))
        blob += compress(cpio_archive([Entry(f"f{i}", bytes([i]) * i)]), fmt)
    listing = list_image_file(_write(tmp_path, blob))
    assert [(s.offset, s.compression) for s in listing.segments] == expected
    assert listing.names == tuple(f"f{i}" for i in range(len(FORMATS)))


# ------------------------------------------------------------------------------------------------
# module_names and find_image


def _listing(entries: list[tuple[str, int]]) -> ImageListing:
    return ImageListing(
        names=tuple(n for n, _ in entries),
        segments=(Segment(0, "none"),),
        entries=len(entries),
        uncompressed_bytes=0,
        modes=tuple(m for _, m in entries),
        sizes=(0,) * len(entries),
    )


def test_module_names_follow_depmods_name_rule():
    k = "6.1.0-56-amd64"
    reg, d = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755
    listing = _listing([
        (f"usr/lib/modules/{k}/updates/dkms/v4l2loopback.ko", reg),
        (f"usr/lib/modules/{k}/kernel/drivers/md/dm-crypt.ko", reg),
        (f"lib/modules/{k}/extra/zfs.ko.zst", reg),
        (f"usr/lib/modules/{k}/extra/spl.ko.xz", reg),
        (f"usr/lib/modules/{k}/extra/nvidia-drm.ko.gz", reg),
        (f"usr/lib/modules/{k}/kernel/snd-hda.codec.ko", reg),  # name ends at the first '.'
        (f"usr/lib/modules/{k}/kernel/fake.ko", d),  # a directory is not a module
        (f"usr/lib/modules/{k}/kernel/backup.ko.bak", reg),
        (f"usr/lib/modules/{k}/modules.dep", reg),
        (f"usr/lib/modules/{k}-rt/kernel/other.ko", reg),  # another kernel
        ("usr/lib/modules/6.1.0-55-amd64/kernel/old.ko", reg),
        (f"./usr/lib/modules/{k}/kernel/dotted.ko", reg),
        (f"etc/modules/{k}/no.ko", reg),
    ])
    assert module_names(listing, k) == {
        "v4l2loopback", "dm_crypt", "zfs", "spl", "nvidia_drm", "snd_hda", "dotted",
    }


def _find(root: Path, kernel: str) -> Path | None:
    """The initramfs collector's find_image on the host tree at ``root``, as a local path."""
    ctx = Context(HostFS(root), FileCache(), Config(), collector="initramfs")
    found = find_image(ctx, kernel)
    return None if found is None else ctx.fs.path(found)


def _arch_like(tmp_path: Path) -> tuple[Path, Path]:
    """/boot and /usr/lib/modules, with /lib -> usr/lib as on merged-/usr hosts."""
    boot, mods = tmp_path / "boot", tmp_path / "usr/lib/modules"
    boot.mkdir(parents=True)
    mods.mkdir(parents=True)
    (tmp_path / "lib").symlink_to("usr/lib")
    return boot, mods


def test_find_image_layouts(tmp_path):
    boot, mods = _arch_like(tmp_path)
    k = "6.1.0-56-amd64"
    (mods / k).mkdir(parents=True)
    assert _find(tmp_path, k) is None
    (mods / k / "initramfs.img").write_bytes(b"x")
    assert _find(tmp_path, k) == mods / k / "initramfs.img"
    (boot / f"initrd-{k}").write_bytes(b"x")
    assert _find(tmp_path, k) == boot / f"initrd-{k}"
    (boot / f"initramfs-{k}.img").write_bytes(b"x")
    assert _find(tmp_path, k) == boot / f"initramfs-{k}.img"
    (boot / f"initrd.img-{k}").write_bytes(b"x")
    assert _find(tmp_path, k) == boot / f"initrd.img-{k}"


def test_find_image_arch_needs_pkgbase_and_skips_dangling_links(tmp_path):
    boot, mods = _arch_like(tmp_path)
    k = "6.9.7-arch1-1"
    (mods / k).mkdir(parents=True)
    (boot / "initramfs-linux.img").write_bytes(b"x")
    assert _find(tmp_path, k) is None  # cannot tell which kernel it belongs to
    (mods / k / "pkgbase").write_text("linux\n")
    assert _find(tmp_path, k) == boot / "initramfs-linux.img"
    (mods / k / "pkgbase").write_text("../../etc/passwd\n")
    assert _find(tmp_path, k) is None
    (boot / f"initrd.img-{k}").symlink_to(boot / "gone")
    assert _find(tmp_path, k) is None
    with pytest.raises(Unreadable):
        _find(tmp_path, "../x")


def test_find_image_returns_a_directory_so_listing_reports_not_a_file(tmp_path):
    k = "6.1.0-56-amd64"
    (tmp_path / "boot" / f"initrd.img-{k}").mkdir(parents=True)
    found = _find(tmp_path, k)
    assert found == tmp_path / "boot" / f"initrd.img-{k}"
    err = _error(found)
    assert (err.code, err.offset) == ("not_a_file", 0)


# ------------------------------------------------------------------------------------------------
# Bad input


def test_truncated_at_every_sampled_offset_is_an_error_or_a_full_prefix(tmp_path):
    early = cpio_archive([Entry("kernel/x86/microcode/GenuineIntel.bin", b"m" * 70)])
    main = compress(cpio_archive(tree_entries(3, 3)), "zstd")
    overlay = compress(cpio_archive([Entry("conf/overlay", b"1")]), "gzip")
    lz4 = compress(cpio_archive([Entry("lz4/part", b"q" * 100)]), "lz4")
    blob = early + main + overlay + lz4 + b"\0" * 8
    full = list_image_file(_write(tmp_path, blob, "full"))
    assert [s.compression for s in full.segments] == ["none", "zstd", "gzip", "lz4"]
    # Cut in the early cpio's NUL padding, exactly between segments or in the final padding: a
    # valid shorter image, which must list every segment before the cut and nothing less.
    ends = [len(early), len(early) + len(main), len(early) + len(main) + len(overlay)]
    valid = set(range(_through_trailer(early), len(early) + 1)) | set(ends)
    valid |= set(range(len(blob) - 8, len(blob) + 1))
    rng = random.Random(1234)
    offsets = set(rng.sample(range(1, len(blob)), 150)) | {1, 109, 110, 111} | valid
    offsets |= {e + d for e in ends for d in (-5, -1, 1, 3)}
    for cut in sorted(offsets):
        path = _write(tmp_path, blob[:cut], "cut")
        if cut in valid:
            listing = list_image_file(path)
            segs = [s for s in full.segments if s.offset + s.length <= cut]
            assert listing.segments == tuple(segs)
            continue
        with pytest.raises(InitramfsError) as info:
            list_image_file(path)
        assert info.value.code == "truncated", (cut, info.value)
        assert info.value.offset == cut


def test_zero_byte_and_all_nul_files_are_empty(tmp_path):
    err = _error(_write(tmp_path, b""))
    assert (err.code, err.offset) == ("empty", 0)
    err = _error(_write(tmp_path, b"\0" * 1000))
    assert (err.code, err.offset) == ("empty", 1000)


def test_not_a_regular_file(tmp_path):
    assert _error(tmp_path).code == "not_a_file"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _error(fifo).code == "not_a_file"  # and it did not block
    assert _error(Path("/dev/null")).code == "not_a_file"
    with pytest.raises(FileNotFoundError):
        list_image_file(tmp_path / "missing")


@pytest.mark.parametrize("fmt", ["gzip", "zstd", "xz", "bzip2"])
def test_corrupt_checksummed_stream(fmt, tmp_path):
    data = compress(cpio_archive(tree_entries(4, 6)), fmt)
    hits = 0
    for pos in range(len(data) // 3, len(data) - 16, max(1, len(data) // 9)):
        bad = bytearray(data)
        bad[pos] ^= 0x55
        err = _error(_write(tmp_path, bytes(bad)))
        assert err.code in ("corrupt", "truncated"), err
        hits += err.code == "corrupt"
        assert 0 <= err.offset <= len(data)
    assert hits >= 1


@pytest.mark.parametrize("fmt", ["lz4", "lzma"])
def test_corrupt_unchecksummed_stream_never_lists_other_names(fmt, tmp_path):
    """lz4 legacy and lzma-alone carry no checksum: flipped data may decode, names may not change."""
    archive = cpio_archive(tree_entries(4, 6))
    data = compress(archive, fmt)
    expected = cpio_t(archive)
    for pos in range(8, len(data) - 4, max(1, len(data) // 25)):
        bad = bytearray(data)
        bad[pos] ^= 0xA5
        try:
            names = list(list_image_file(_write(tmp_path, bytes(bad))).names)
        except InitramfsError:
            continue
        try:
            assert names == cpio_t(decompress(bytes(bad), fmt))
        except RuntimeError:  # the real tool rejects it too, and we did not
            assert names == expected


def test_cpio_name_size_past_the_end(tmp_path):
    raw = bytearray(cpio_archive([Entry("short", b"abc")], pad_to=0))
    raw[94:102] = b"%08X" % 3000  # namesize pointing far past the end of the file
    err = _error(_write(tmp_path, bytes(raw)))
    assert (err.code, err.offset) == ("truncated", len(raw))
    zst = compress(bytes(raw) + b"\0" * 3000, "zstd")  # inside a compressed stream: a wrong stream
    err = _error(_write(tmp_path, zst))
    assert err.code == "corrupt" and err.offset == 0 and err.stream_offset is not None
    raw[94:102] = b"%08X" % 70000
    err = _error(_write(tmp_path, bytes(raw)))
    assert (err.code, err.offset) == ("corrupt", 0)
    raw[94:102] = b"00000000"
    assert _error(_write(tmp_path, bytes(raw))).code == "corrupt"


def test_bad_header_fields_and_junk(tmp_path):
    good = cpio_archive([Entry("a", b"1"), Entry("b", b"2")], pad_to=0)
    second = good.index(b"070701", 6)
    bad = good[:second] + b"0707X1" + good[second + 6 :]
    err = _error(_write(tmp_path, bad))
    assert (err.code, err.offset) == ("corrupt", second)
    bad = good[: second + 54] + b"+0000001" + good[second + 62 :]  # int() would accept it
    assert _error(_write(tmp_path, bad)).offset == second
    err = _error(_write(tmp_path, b"hello world"))
    assert (err.code, err.offset) == ("unknown_format", 0)
    err = _error(_write(tmp_path, good + b"\0\0\0\0" + b"garbage"))
    assert (err.code, err.offset) == ("unknown_format", len(good) + 4)
    err = _error(_write(tmp_path, good + b"\0" + good))  # a header at an unaligned offset
    assert (err.code, err.offset) == ("unknown_format", len(good) + 1)
    no_trailer = good[: good.index(b"TRAILER!!!") - 110]
    assert _error(_write(tmp_path, no_trailer)).code == "truncated"
    junk = compress(cpio_archive([Entry("a")]) + b"junk", "zstd")
    assert _error(_write(tmp_path, junk)).code == "corrupt"


def test_old_binary_and_odc_cpio_are_not_initramfs(tmp_path):
    for fmt in ("odc", "bin"):
        proc = subprocess.run(["cpio", "-o", "-H", fmt, "--quiet"], input=b"/etc/hostname\n", capture_output=True, check=True)
        assert _error(_write(tmp_path, proc.stdout)).code in ("corrupt", "unknown_format")


def _zstd_zeros(size: int) -> bytes:
    """A small zstd stream of a cpio archive holding one file of `size` NUL bytes."""
    header = cpio_archive([Entry("bomb", b"")], pad_to=0)
    trailer_at = header.index(b"070701", 4)
    head = bytearray(header[:trailer_at])
    head[54:62] = b"%08X" % size
    cctx = zstandard.ZstdCompressor(level=1)
    chunker = cctx.chunker(chunk_size=1 << 20)
    out = list(chunker.compress(bytes(head)))
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        out += chunker.compress(zeros)
    out += chunker.compress(header[trailer_at:])
    out += chunker.finish()
    return b"".join(out)


def test_decompression_bomb_over_the_default_bound(tmp_path):
    bomb = _zstd_zeros((1 << 32) - (1 << 20))  # ~4 GiB of zeros in a few hundred KB
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        err = _error(_write(tmp_path, bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (err.code, err.offset) == ("too_large", 0)
    assert err.stream_offset is not None and err.stream_offset > 2 * 1024**3
    assert peak < 16 << 20


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_bound_stops_every_decoder(fmt, tmp_path):
    archive = cpio_archive([Entry("zeros", bytes(6 << 20)), Entry("after", b"x")])
    path = _write(tmp_path, compress(archive, fmt))
    err = _error(path, max_uncompressed=2 << 20)
    assert err.code == "too_large" and err.offset == 0
    assert list_image_file(path, max_uncompressed=len(archive)).names == ("zeros", "after")


def test_entry_bound(tmp_path):
    path = _write(tmp_path, compress(cpio_archive([Entry(f"e{i}") for i in range(1000)]), "gzip"))
    assert list_image_file(path, max_entries=1000).entries == 1000
    err = _error(path, max_entries=999)
    assert err.code == "too_many_entries" and err.stream_offset is not None


@pytest.fixture(scope="module")
def seed_image() -> bytes:
    early = cpio_archive([Entry("kernel/x86/microcode/AuthenticAMD.bin", b"abc")], pad_to=4)
    return early + compress(cpio_archive(tree_entries(2, 2)), "zstd") + compress(cpio_archive([Entry("o")]), "gzip")


def _only_initramfs_errors(data: bytes) -> None:
    with tempfile.NamedTemporaryFile() as fh:
        fh.write(data)
        fh.flush()
        try:
            listing = list_image_file(Path(fh.name), max_uncompressed=64 << 20)
        except InitramfsError as exc:
            assert exc.code in ERROR_CODES and 0 <= exc.offset <= len(data)
        else:
            assert listing.entries == len(listing.names) == len(listing.modes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_initramfs_error(data):
    _only_initramfs_errors(data)
    _only_initramfs_errors(b"070701" + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_images_only_raise_initramfs_error(seed_image, data):
    blob = bytearray(seed_image)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "cut", "hexdigit"]))
        if action == "flip":
            blob[pos] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del blob[pos : pos + data.draw(st.integers(1, 8))]
        elif action == "cut":
            del blob[pos:]
        else:
            blob[pos] = ord(data.draw(st.sampled_from("0123456789ABCDEF")))
        if not blob:
            break
    _only_initramfs_errors(bytes(blob))


# ------------------------------------------------------------------------------------------------
# Memory stays bounded


@pytest.mark.parametrize("fmt", ["zstd", "gzip", "lz4", "xz"])
def test_memory_stays_bounded_on_a_large_image(fmt, tmp_path):
    """128 MiB of cpio data, listed with a Python-heap peak of a few MiB (tracemalloc), and the
    process's RSS growth well below the image size (so C-level buffers are bounded too)."""
    block = bytes(range(256)) * 4096  # 1 MiB, compresses fast with every tool
    entries = [Entry(f"data/f{i}", block * 16) for i in range(8)] + tree_entries()
    path = _write(tmp_path, compress(cpio_archive(entries), fmt))
    tracemalloc.start()
    try:
        listing = list_image_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert listing.uncompressed_bytes > 128 << 20
    # Each format's own unit on top of our 1 MiB chunks: lz4 legacy blocks are 8 MiB (python-lz4
    # fills a buffer and copies it into the result), xz -6 has an 8 MiB dictionary (liblzma's
    # allocations are traced; zstd's window is allocated by libzstd and only shows in the RSS check).
    assert peak < {"lz4": 20, "xz": 14}.get(fmt, 8) << 20, peak
    code = (
        "import sys; from pathlib import Path; from exporter.collectors.initramfs import list_image_file; "
        "sys.argv[1] and list_image_file(Path(sys.argv[1])); "
        "print(Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0])"
    )  # VmHWM belongs to the new mm; ru_maxrss would carry the forking parent's peak over exec

    def peak_rss_kib(arg: str) -> int:
        out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, check=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
        return int(out.stdout)

    grown_kib = peak_rss_kib(str(path)) - peak_rss_kib("")
    assert grown_kib < 48 * 1024, grown_kib  # the image holds 128 MiB of cpio data
