"""exporter.formats.decompress, the one bounded decompressor, and every place that uses it.

Data comes from the real compressors (gzip, xz, bzip2, lz4 -l, zstd, lzop), as mkinitramfs,
dracut, kbuild and the RPM distributions write it.  The bombs are a few KB to a few MB that
expand to gigabytes; each is fed to every place that decompresses (a module file read, a symvers
file, an initramfs listing, the one-shot API) in a fresh process, which must report the bound's
error and keep its Python-heap peak (tracemalloc) and its RSS peak (VmHWM, so libzstd's and
liblzma's own buffers count) near the bound, far below what the bomb expands to.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from initramfs_build import Entry, compress, cpio_archive

from exporter.formats import decompress as dc
from exporter.formats.decompress import CHUNK, BytesSource, DecompressError, decompress, open_stream, sniff
from exporter.formats.initramfs import InitramfsError
from exporter.collectors.initramfs import list_image_file
from exporter.collectors.module import read_module
from exporter.formats.module import ModuleFileError, decompress_module
from exporter.formats.symvers import MAX_BYTES as SYMVERS_MAX
from exporter.formats.symvers import SymversError, parse_symvers_file

REPO = Path(__file__).resolve().parent.parent
FORMATS = ("gzip", "xz", "lzma", "zstd", "lz4", "bzip2")  # every format with a decoder
MiB = 1 << 20


def _payload(size: int = 3 * MiB // 2) -> bytes:
    """Compressible but not trivial: several chunks' worth of varied text."""
    return b"".join(b"line %d of the payload, %s\n" % (i, b"x" * (i % 61)) for i in range(size // 50))[:size]


# ------------------------------------------------------------------------------------------------
# The magic table


def test_the_table_agrees_with_the_kernel_and_libkmod():
    """lib/decompress.c decides by the first two bytes; libkmod-file.c reads zstd, xz, gzip only."""
    kernel = {b"\x1f\x8b": "gzip", b"\x1f\x9e": "gzip", b"\x42\x5a": "bzip2", b"\x5d\x00": "lzma",
              b"\xfd\x37": "xz", b"\x89\x4c": "lzo", b"\x02\x21": "lz4", b"\x28\xb5": "zstd"}
    assert {m.magic[:2]: m.format for m in dc.MAGICS} == kernel
    assert len(dc.MAGICS) == len(kernel)
    assert {m.magic: m.format for m in dc.LIBKMOD} == {
        b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz", b"\x1f\x8b": "gzip"}


@pytest.mark.parametrize("fmt", FORMATS + ("lzo",))
def test_real_tool_output_is_told_by_its_magic(fmt):
    data = compress(b"some bytes\n" * 100, fmt)
    assert sniff(data) == fmt
    assert sniff(data, dc.LIBKMOD) == (fmt if fmt in ("gzip", "xz", "zstd") else None)
    assert dc.is_magic_prefix(data[:2]) and not dc.is_magic_prefix(b"07")


def test_lz4_frame_format_is_not_the_kernels_lz4(tmp_path):
    """`lz4` without -l writes the frame format, whose magic lib/decompress.c does not know (only
    legacy's 02 21): an image segment of it is unknown_format, as the kernel fails it."""
    frame = subprocess.run(["lz4", "-c", "-q"], input=cpio_archive([Entry("a", b"1")]), capture_output=True,
                           check=True).stdout
    assert frame[:4] == b"\x04\x22\x4d\x18" and sniff(frame) is None
    image = tmp_path / "initrd.img"
    image.write_bytes(frame)
    with pytest.raises(InitramfsError) as info:
        list_image_file(image)
    assert (info.value.code, info.value.offset) == ("unknown_format", 0)


# ------------------------------------------------------------------------------------------------
# One shot


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_shot_round_trip_of_real_tool_output(fmt):
    payload = _payload()
    assert decompress(compress(payload, fmt), len(payload)) == payload


@pytest.mark.parametrize("fmt", ["gzip", "xz", "zstd", "bzip2", "lz4"])
def test_one_shot_reads_adjacent_streams_as_one(fmt):
    """gzip members, xz/bzip2 streams, zstd frames, lz4 legacy files cat'ed together (and xz's
    NUL stream padding) are one file to gzip -d, xz -d, zstd -d ... and to us."""
    a, b = b"first part\n" * 1000, b"second part\n" * 1000
    padding = b"\0" * 8 if fmt == "xz" else b""
    assert decompress(compress(a, fmt) + padding + compress(b, fmt) + padding, 1 << 30) == a + b


def test_one_shot_bound_counts_every_stream():
    """xz streams after NUL padding are decoded run by run; the bound is over all of them."""
    part = compress(bytes(MiB), "xz")
    with pytest.raises(DecompressError) as info:
        decompress((part + b"\0" * 4) * 3, 2 * MiB + 10)
    assert (info.value.code, info.value.offset) == ("too_large", 0) and str(2 * MiB + 10) in str(info.value)
    assert 2 * MiB + 10 < info.value.output_offset <= 2 * MiB + 11


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_shot_faults_say_where(fmt):
    packed = compress(_payload(200_000), fmt)
    with pytest.raises(DecompressError) as info:
        decompress(packed + b"trailing junk", 1 << 30)
    assert (info.value.code, info.value.offset) == ("corrupt", len(packed))
    if fmt != "lz4":  # lz4 legacy has no end marker: a cut between blocks is a shorter file
        with pytest.raises(DecompressError) as info:
            decompress(packed[:-7], 1 << 30)
        assert info.value.code == "truncated" or (fmt == "lzma" and info.value.code == "corrupt"), info.value
        assert info.value.offset <= len(packed)
    with pytest.raises(DecompressError) as info:
        decompress(packed, 100_000)
    assert (info.value.code, info.value.offset) == ("too_large", 0) and info.value.output_offset <= 100_001
    assert isinstance(info.value, ValueError) and str(info.value).startswith("too_large at offset 0")


def test_one_shot_unknown_formats():
    """Plain text is no format at all; lzop is one the kernel reads and the exporter does not."""
    for data, code, why in ((b"plain text", "unknown_format", "magic"),
                            (compress(b"x" * 100, "lzo"), "unsupported", "lzo")):
        with pytest.raises(DecompressError) as info:
            decompress(data, 1 << 20)
        assert (info.value.code, info.value.offset) == (code, 0) and why in str(info.value)


# ------------------------------------------------------------------------------------------------
# Streaming


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_stream_ends_where_its_run_ends(fmt):
    """What the initramfs lister needs: after the run, the source is at the next segment."""
    payload = _payload()
    part = compress(payload, fmt)
    src = BytesSource(part + b"\0\0\0\0" + compress(b"next segment", "gzip"))
    stream = open_stream(src, fmt, limit=len(payload))
    chunks = []
    n = CHUNK * 3 // 4
    while chunk := stream.read(n):
        assert len(chunk) <= n
        chunks.append(bytes(chunk))
    assert b"".join(chunks) == payload and stream.total == len(payload)
    assert src.pos == len(part) and stream.read() == b"" and src.pos == len(part)
    assert max(len(c) for c in chunks) == n  # bounded chunks, not one per block


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_stream_stops_at_its_bound(fmt):
    src = BytesSource(compress(bytes(4 * MiB), fmt))
    stream = open_stream(src, fmt, limit=MiB + 5)
    with pytest.raises(DecompressError) as info:
        while stream.read():
            pass
    assert (info.value.code, info.value.offset) == ("too_large", 0)
    assert info.value.output_offset <= MiB + 6


def test_lzo_has_no_decoder():
    with pytest.raises(DecompressError) as info:
        open_stream(BytesSource(compress(b"x", "lzo")), "lzo", limit=MiB)
    assert info.value.code == "unsupported" and "lzo" in str(info.value)


# ------------------------------------------------------------------------------------------------
# The decoders' own memory bounds, on headers crafted to ask for gigabytes


def test_lzma_alone_dictionary_over_the_memlimit_is_refused():
    data = bytearray(compress(b"hello\n" * 100, "lzma"))
    assert decompress(bytes(data), MiB) == b"hello\n" * 100
    data[1:5] = (0xFFFF0000).to_bytes(4, "little")  # a 4 GiB dictionary (the magic still matches)
    with pytest.raises(DecompressError) as info:
        decompress(bytes(data), MiB)
    assert info.value.code == "corrupt" and "emory" in str(info.value)


def _varint_end(data: bytes, pos: int) -> int:
    while data[pos] & 0x80:
        pos += 1
    return pos + 1


def test_xz_dictionary_over_the_memlimit_is_refused():
    """The LZMA2 filter's dictionary byte in the block header, set to 4 GiB, CRC32 fixed up."""
    data = bytearray(compress(b"hello\n" * 100, "xz"))
    start, size = 12, (data[12] + 1) * 4
    flags = data[start + 1]
    assert flags & 3 == 0  # one filter: LZMA2
    pos = start + 2
    for present in (flags & 0x40, flags & 0x80):  # compressed / uncompressed size fields
        pos = _varint_end(data, pos) if present else pos
    assert data[pos] == 0x21 and data[pos + 1] == 1  # filter id LZMA2, one property byte
    data[pos + 2] = 40  # dictionary size 4 GiB - 1
    data[start + size - 4 : start + size] = zlib.crc32(bytes(data[start : start + size - 4])).to_bytes(4, "little")
    with pytest.raises(DecompressError) as info:
        decompress(bytes(data), MiB)
    assert info.value.code == "corrupt" and "emory" in str(info.value)


def _zstd_frame(window_descriptor: int, empty_blocks: int, content: bytes = b"hello") -> bytes:
    """A zstd frame by hand: no content size, a window descriptor, empty raw blocks, one raw block."""
    last = ((len(content) << 3) | 1).to_bytes(3, "little")
    return b"\x28\xb5\x2f\xfd" + bytes([0, window_descriptor]) + b"\0\0\0" * empty_blocks + last + content


def test_zstd_window_over_the_limit_is_refused():
    assert decompress(_zstd_frame(0x00, 0), MiB) == b"hello"  # 1 KiB window
    with pytest.raises(DecompressError) as info:
        decompress(_zstd_frame(21 << 3, 0), MiB)  # window log 31: 2 GiB
    assert info.value.code == "corrupt"


def test_zstd_runs_of_empty_blocks_are_refused():
    assert decompress(_zstd_frame(0x00, 1000), MiB) == b"hello"
    with pytest.raises(DecompressError) as info:
        decompress(_zstd_frame(0x00, 2000), MiB)
    assert info.value.code == "corrupt" and "empty zstd blocks" in str(info.value)


def test_zstd_declared_size_over_the_bound_is_refused_before_decoding():
    frame = subprocess.run(["zstd", "-q", "-c", "-1", f"--stream-size={64 * MiB}"], input=bytes(64 * MiB),
                           capture_output=True, check=True).stdout
    with pytest.raises(DecompressError) as info:
        decompress(frame, MiB)
    assert (info.value.code, info.value.output_offset) == ("too_large", 0) and f"declares {64 * MiB}" in str(info.value)


# ------------------------------------------------------------------------------------------------
# No decompression anywhere else

COMPRESSION_MODULES = {"zlib", "gzip", "lzma", "bz2", "zstandard", "lz4", "zipfile", "tarfile"}
# compressing is not decompressing: /metrics is gzipped for clients that ask (never host data)
COMPRESS_ONLY = {"exporter/web/exposition.py": {"gzip"}}


def test_only_the_decompress_module_imports_a_compression_library():
    offenders = {}
    for path in sorted((REPO / "exporter").rglob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
        rel = str(path.relative_to(REPO))
        found = (found & COMPRESSION_MODULES) - COMPRESS_ONLY.get(rel, set())
        if found and path.name != "decompress.py":
            offenders[rel] = sorted(found)
    assert offenders == {}, "decompress through exporter.formats.decompress (bounded); binascii has crc32"


# ------------------------------------------------------------------------------------------------
# Bombs at every place that decompresses

UNIT = 64 * MiB  # bombs are one compressed 64 MiB stream of zeros repeated (gzip -d etc. read them as one)
REPEAT = {"lz4": 16}  # 4 GiB, 1 GiB for lz4 legacy (~255:1 at most); lzma-alone: one 256 MiB stream


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """{site-format: file}: gigabytes of zeros in a few MB, for modules after an ELF magic, for
    initramfs as the data of a 4 GiB cpio entry."""
    out = tmp_path_factory.mktemp("bombs")
    cpio_head = bytearray(cpio_archive([Entry("bomb", b"")], pad_to=0))
    cpio_head = cpio_head[: cpio_head.index(b"070701", 4)]
    cpio_head[54:62] = b"FFFFFFFF"
    files = {}
    for fmt in FORMATS:
        unit = compress(bytes(UNIT), fmt)
        zeros = unit * REPEAT.get(fmt, 64)
        if fmt == "lzma":  # one stream, so made in one go, by xz's fastest preset
            lzma_zeros = ["xz", "--format=lzma", "-0", "-c"]
            zeros = subprocess.run(lzma_zeros, input=bytes(256 * MiB), capture_output=True, check=True).stdout
            files["initramfs-lzma"] = subprocess.run(lzma_zeros, input=bytes(cpio_head) + bytes(256 * MiB),
                                                     capture_output=True, check=True).stdout
        else:
            files[f"initramfs-{fmt}"] = compress(bytes(cpio_head), fmt) + zeros
        files[f"oneshot-{fmt}"] = zeros
        if fmt in ("gzip", "xz", "zstd"):  # what libkmod (and so the module reader) decompresses
            files[f"module-{fmt}"] = compress(b"\x7fELF\x02\x01\x01", fmt) + zeros
        if fmt in ("gzip", "xz"):  # what a symvers-K.gz / .xz file is decompressed from
            files[f"symvers-{fmt}"] = zeros
    paths = {}
    for name, data in files.items():
        assert len(data) < 8 * MiB, (name, len(data))
        paths[name] = out / name
        paths[name].write_bytes(data)
    return paths


# Run in a fresh interpreter: the site's call on the bomb, its error code, the Python-heap peak
# and the RSS high-water mark (reset first through /proc/self/clear_refs) over the RSS before it.
_PROBE = r"""
import json, sys, tracemalloc
from pathlib import Path
site, path = sys.argv[1], Path(sys.argv[2])

def status(key):
    return int(Path("/proc/self/status").read_text().split(key + ":")[1].split()[0]) * 1024

def run():
    if site == "oneshot":
        from exporter.formats.decompress import decompress
        return decompress(path.read_bytes(), 8 << 20)
    if site == "module":
        from exporter.collectors.module import read_module
        return read_module(path)
    if site == "symvers":
        from exporter.collectors.module import _parse_symvers
        return _parse_symvers(path.read_bytes())
    from exporter.collectors.initramfs import list_image_file
    return list_image_file(path, max_uncompressed=64 << 20)

import exporter.collectors.module, exporter.collectors.initramfs, exporter.formats.decompress
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
before = status("VmRSS")
tracemalloc.start()
try:
    run()
    code = None
except Exception as exc:
    code = f"{type(exc).__name__}:{getattr(exc, 'code', '')}"
heap = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"code": code, "heap": heap, "rss": status("VmHWM") - before}))
"""

# site -> (the error it must report, its output bound in MiB: one-shot 8 as probed, module files
# 256, symvers 8, initramfs 0 since the listing streams); on top of it a decoder's working set
# may show: the compressed input, a 1 MiB chunk, xz/lzma dictionaries, zstd windows, and lz4
# legacy's 8 MiB blocks, which python-lz4 decodes into a buffer of that size and then copies.
SITES = {
    "oneshot": ("DecompressError:too_large", 8),
    "module": ("ModuleFileError:too_large", 256),
    "symvers": ("DecompressError:too_large", 8),
    "initramfs": ("InitramfsError:too_large", 0),
}
WORKING_SET = {"lz4": 32}  # MiB, 16 for the others
CASES = [f"{site}-{fmt}" for site in SITES for fmt in FORMATS
         if site in ("oneshot", "initramfs") or (site == "module" and fmt in ("gzip", "xz", "zstd"))
         or (site == "symvers" and fmt in ("gzip", "xz"))]


@pytest.mark.slow  # builds 1-4 GiB bombs once (~12 s) and runs each site in a fresh process
@pytest.mark.parametrize("case", CASES)
def test_bomb_is_an_error_within_bounded_memory(bombs, case):
    site = case.split("-")[0]
    proc = subprocess.run([sys.executable, "-c", _PROBE, site, str(bombs[case])], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    code, bound_mib = SITES[site]
    fmt = case.split("-")[1]
    expands_to = 256 if fmt == "lzma" else UNIT * REPEAT.get(fmt, 64) // MiB
    print(f"{case}: {bombs[case].stat().st_size} bytes expanding to {expands_to} MiB: heap peak "
          f"{got['heap'] / MiB:.1f} MiB, RSS peak growth {got['rss'] / MiB:.1f} MiB")
    assert got["code"] == code
    assert got["heap"] < (bound_mib + WORKING_SET.get(fmt, 16)) * MiB, got
    assert got["rss"] < (bound_mib + WORKING_SET.get(fmt, 16)) * MiB, got


@pytest.mark.slow
def test_bombs_in_formats_a_site_does_not_decompress_are_not_decompressed(bombs):
    """libkmod reads no lz4/bzip2/lzma module: such a file is not an ELF (and not expanded);
    a symvers file in zstd is not a symvers file."""
    for fmt in ("lz4", "bzip2", "lzma"):
        assert decompress_module(bombs[f"oneshot-{fmt}"].read_bytes())[0] == "none"
        with pytest.raises(ModuleFileError) as info:
            read_module(bombs[f"oneshot-{fmt}"])
        assert info.value.code == "not_elf", info.value
    with pytest.raises(SymversError):
        parse_symvers_file(bombs["oneshot-zstd"].read_bytes())


# ------------------------------------------------------------------------------------------------
# End to end: a host whose /boot/symvers-K.gz expands to gigabytes

K1, K2 = "6.1.0-27-amd64", "6.1.0-28-amd64"
_METRICS = ("import sys; from pathlib import Path; from exporter.cli import main; rc = main(sys.argv[1:]); "
            "print('VmHWM', Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0], file=sys.stderr); "
            "sys.exit(rc)")


def _symvers_host(root: Path, name: str, data: bytes) -> None:
    """K2 has no headers: its CRCs come from the symvers file RPM distributions ship."""
    from hostbuilder import Host
    h = Host(root)
    h.kernel(K1, running=True)
    h.kernel(K2, headers=False)
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    for k in (K1, K2):
        h.dkms_build("acpi-call", "1.2.2", k, dest=["acpi_call"])
    h.grub()
    h.write(f"boot/{name}", data)
    h.finish()


def _normal_symvers() -> bytes:
    """As big as Debian 12's 6.1 Module.symvers (24,683 exports), with K2's CRCs for the test module."""
    from hostbuilder import SYMBOLS, kernel_crc
    lines = [f"0x{kernel_crc(K2, s):08x}\t{s}\tvmlinux\tEXPORT_SYMBOL\t\n" for s in SYMBOLS]
    lines += [f"0x{zlib.crc32(b'%d' % i):08x}\tsymbol_{i}\tdrivers/misc/m{i % 3000}\tEXPORT_SYMBOL_GPL\t\n"
              for i in range(24683 - len(SYMBOLS))]
    return "".join(lines).encode()


def _metrics(root: Path) -> tuple[str, str, int]:
    proc = subprocess.run([sys.executable, "-c", _METRICS, "metrics", "--path.rootfs", str(root)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr, int(re.search(r"VmHWM (\d+)", proc.stderr).group(1)) * 1024


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["gzip", "xz"])
def test_symvers_bomb_host_keeps_its_usual_peak_rss_and_says_the_file_is_unreadable(tmp_path, bombs, fmt):
    suffix = {"gzip": "gz", "xz": "xz"}[fmt]
    name = f"symvers-{K2}.{suffix}"
    normal = compress(_normal_symvers(), fmt)
    bomb = bombs[f"symvers-{fmt}"].read_bytes()  # 4 GiB of zeros
    assert len(bomb) < SYMVERS_MAX
    _symvers_host(tmp_path / "normal", name, normal)
    _symvers_host(tmp_path / "bomb", name, bomb)
    out, err, normal_rss = _metrics(tmp_path / "normal")
    assert 'dkms_scrape_collector_errors{collector="module"} 0.0' in out
    assert f'dkms_kernel_symbol_versions_source{{kernel="{K2}",source="symvers_file"}} 1.0' in out
    assert "dkms_next_boot_readiness_unknown 0.0" in out and "\ndkms_next_boot_ready 1.0" in out
    out, err, bomb_rss = _metrics(tmp_path / "bomb")
    print(f"{fmt}: peak RSS with a normal symvers file {normal_rss / MiB:.1f} MiB, "
          f"with a 4 GiB bomb {bomb_rss / MiB:.1f} MiB")
    assert 'dkms_scrape_collector_errors{collector="module"} 1.0' in out
    assert f'dkms_kernel_symbol_versions_source{{kernel="{K2}",source="none"}} 1.0' in out
    assert "dkms_next_boot_readiness_unknown 1.0" in out and "\ndkms_next_boot_ready " not in out
    assert f"path=/boot/{name}" in err and "too_large" in err
    # the bomb may cost its own bytes (read whole, like any symvers file: 4 MiB of gzip), the
    # bound's worth of decompressed bytes with the chunk in flight (decompress's docstring) and
    # the decoder's own window (xz -6: an 8 MiB dictionary
    # liblzma fills as it decodes; gzip: 32 KiB); unbounded, it would cost 4 GiB.  (A normal
    # file's table is kept as a slice and its text read line by line, so the normal peak holds
    # neither a table nor a copy of the text.)
    decoder = {"gzip": 0, "xz": 8 * MiB}[fmt]
    assert bomb_rss < normal_rss + len(bomb) + SYMVERS_MAX + CHUNK + decoder


def test_the_pieces_a_decoder_allocates_stay_below_the_mmap_threshold():
    """Every piece a decoder reads or returns is allocated and freed again, thousands of times
    a cold scrape.  At or above glibc's mmap threshold each one is mapped, faulted in and unmapped
    (at 128 KiB that was half a cold scrape's system time); below it, the heap reuses them."""
    from exporter import process

    overhead = 4096   # a bytes object's header and malloc's own, with room to spare
    for name in ("CHUNK", "_IN_CHUNK", "_ZSTD_READ"):
        assert getattr(dc, name) + overhead < process.MMAP_THRESHOLD, name
