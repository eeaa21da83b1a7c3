"""Property tests for every parser: random and mutated inputs raise nothing but the parser's own
error type, and its bounds hold.  Seeds are real artifacts (gcc-built signed modules compressed
by the real tools, modules.dep/.bin written by the real depmod, EFI signature lists of real
certificates, cpio archives the real compressors packed); where a real tool defines the answer
(bash for dkms.conf arrays, depmod's text for its own .bin index) the property compares with it.

Bounded: PROPERTY_EXAMPLES (default 60) examples per property; benchmarks/fuzz.py runs the same
properties at scale.  tests/test_initramfs.py already feeds list_image random and mutated bytes;
here it gets round trips and its two bounds.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import string
import struct
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from testkit import require_tool
from hostbuilder import KEYS, Host, module_elf, signature_lists
from initramfs_build import Entry, compress, cpio_archive

from exporter.collectors import bootloader, secureboot
from exporter.collectors import module as module_collector
from exporter.formats import bls, depmod, dkmsconf, dpkg, efi, errors, grub, makelog, symvers, x509
from exporter.formats import module as modfile
from exporter.formats.initramfs import ERROR_CODES, InitramfsError
from exporter.collectors.initramfs import list_image_file

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "60"))
PROFILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("PROPERTY_RANDOM") is None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large])
K = "6.1.0-27-amd64"


# ------------------------------------------------------------------------------------------------
# mutation: what a bad disk, a torn write or a hostile file does to a real file


def mutate(data: bytes, draw) -> bytes:
    """1-6 random edits: flip bits, overwrite, insert, delete, truncate, duplicate a chunk,
    or stamp a boundary integer (0, -1, 2^31) over a 4-byte field."""
    blob = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        if not blob:
            blob += draw(st.binary(min_size=1, max_size=16))
            continue
        pos = draw(st.integers(0, len(blob) - 1))
        op = draw(st.sampled_from(["flip", "byte", "insert", "delete", "truncate", "dup", "int"]))
        if op == "flip":
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            blob[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del blob[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del blob[pos:]
        elif op == "dup":
            end = min(len(blob), pos + draw(st.integers(1, 256)))
            blob[pos:pos] = blob[pos:end]
        else:
            value = draw(st.sampled_from([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1, len(blob)]))
            blob[pos : pos + 4] = struct.pack(draw(st.sampled_from(["<I", ">I"])), value & 0xFFFFFFFF)
    return bytes(blob)


# ------------------------------------------------------------------------------------------------
# module files: module_collector.read_module / parse_module / decompress_module


@functools.lru_cache(maxsize=None)
def _module_seeds() -> dict[str, bytes]:
    return {fmt: module_elf("acpi_call", K, compression=fmt) for fmt in ("none", "zstd", "xz", "gzip")} | {
        "unsigned": module_elf("acpi_call", K, key=None)}


@pytest.fixture
def module_seeds() -> dict[str, bytes]:
    """Real gcc-built modules, signed like sign-file, compressed by the real zstd/xz/gzip (a
    function-scoped handle on a cached dict, so that hypothesis does not print the bytes)."""
    return _module_seeds()


def _read_module_bytes(data: bytes, max_bytes: int = modfile.DEFAULT_MAX):
    with tempfile.NamedTemporaryFile() as fh:
        fh.write(data)
        fh.flush()
        return module_collector.read_module(Path(fh.name), max_bytes)


MODULE_CODES = {"empty", "unreadable", "truncated", "not_elf", "not_module", "bad_elf", "bad_versions",
                "too_large", "bad_compression", "bad_signature", "unsupported_signature"}


@PROFILE
@given(data=st.data())
def test_mutated_compressed_modules_only_raise_module_file_error(module_seeds, data):
    """Through the file reader: decompression (bounded), signature trailer, ELF."""
    fmt = data.draw(st.sampled_from(sorted(module_seeds)))
    blob = mutate(module_seeds[fmt], data.draw)
    try:
        m = _read_module_bytes(blob)
    except modfile.ModuleFileError as exc:
        assert exc.code in MODULE_CODES, exc.code
    else:
        assert isinstance(m.name, (str, type(None))) and all(isinstance(s, str) for s in m.undefined)


def test_seed_modules_parse_as_the_real_tool_built_them(module_seeds):
    """The property above starts from files that are valid: otherwise it tests only errors."""
    for fmt, blob in module_seeds.items():
        m = _read_module_bytes(blob)
        assert m.name == "acpi_call" and m.vermagic.startswith(K), fmt
        assert (m.signature is None) == (fmt == "unsigned")


@PROFILE
@given(data=st.data(), bound=st.integers(0, 64 * 1024))
def test_decompression_never_exceeds_its_bound(module_seeds, data, bound):
    fmt = data.draw(st.sampled_from(["zstd", "xz", "gzip"]))
    blob = module_seeds[fmt] if data.draw(st.booleans()) else mutate(module_seeds[fmt], data.draw)
    try:
        kind, out = modfile.decompress_module(blob, bound)
    except modfile.ModuleFileError as exc:
        assert exc.code in ("too_large", "bad_compression"), exc.code
    else:
        assert len(out) <= bound and kind in ("none", fmt)


@PROFILE
@given(st.binary(max_size=4096))
def test_random_bytes_through_the_file_reader(blob):
    for prefix in (b"", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"\x1f\x8b\x08"):
        try:
            _read_module_bytes(prefix + blob)
        except modfile.ModuleFileError as exc:
            assert exc.code in MODULE_CODES


# ------------------------------------------------------------------------------------------------
# initramfs: round trips and bounds (random and mutated images: tests/test_initramfs.py)


_NAME_CHARS = string.ascii_letters + string.digits + "._-+@ ~"
names = st.lists(st.text(_NAME_CHARS, min_size=1, max_size=40).filter(lambda n: n not in (".", "..")),
                 min_size=1, max_size=30, unique=True)


def _list(data: bytes, **bounds):
    with tempfile.NamedTemporaryFile() as fh:
        fh.write(data)
        fh.flush()
        return list_image_file(Path(fh.name), **bounds)


@PROFILE
@given(names=names, sizes=st.data(), fmt=st.sampled_from(["none", "zstd", "gzip", "xz"]),
       early=st.booleans())
def test_initramfs_round_trip(names, sizes, fmt, early):
    """Whatever names and contents go in (through the real compressor), exactly they come out."""
    entries = [Entry(f"d/{n}", data=os.urandom(sizes.draw(st.integers(0, 3000)))) for n in names]
    main = cpio_archive(entries)
    image = (cpio_archive([Entry("kernel/x86/microcode/GenuineIntel.bin", b"u" * 64)]) if early else b"") + \
        (main if fmt == "none" else compress(main, fmt))
    listing = _list(image)
    assert [n for n in listing.names if n.startswith("d/")] == [f"d/{n}" for n in names]
    assert listing.compression == fmt


@PROFILE
@given(count=st.integers(1, 60), limit=st.integers(1, 60), fmt=st.sampled_from(["none", "zstd"]))
def test_initramfs_entry_bound(count, limit, fmt):
    archive = cpio_archive([Entry(f"f{i}", b"x") for i in range(count)])
    image = archive if fmt == "none" else compress(archive, fmt)
    try:
        listing = _list(image, max_entries=limit)
    except InitramfsError as exc:
        assert exc.code == "too_many_entries" and count + 1 > limit  # TRAILER!!! is not an entry
    else:
        assert listing.entries <= limit and len(listing.names) == count


@PROFILE
@given(size=st.integers(0, 200_000), limit=st.integers(1, 300_000))
def test_initramfs_uncompressed_bound(size, limit):
    archive = cpio_archive([Entry("big", bytes(size)), Entry("after", b"y")])
    try:
        listing = _list(compress(archive, "zstd"), max_uncompressed=limit)
    except InitramfsError as exc:
        assert exc.code == "too_large" and len(archive) > limit and exc.code in ERROR_CODES
    else:
        assert listing.uncompressed_bytes <= limit and "after" in listing.names


# ------------------------------------------------------------------------------------------------
# dkms.conf


_WORDS = ["PACKAGE_NAME", "PACKAGE_VERSION", "BUILT_MODULE_NAME[0]", "BUILT_MODULE_NAME[1]",
          "DEST_MODULE_LOCATION[0]", "DEST_MODULE_NAME[2]", "AUTOINSTALL", "MAKE[0]", "BUILD_EXCLUSIVE_KERNEL",
          "X", "arr[$i]", "arr[99999]", "arr[-1]", "V"]
_VALUES = ['"x"', "'y'", "$kernelver", "${kernelver}", "${arch:-x86}", '"${V}-$X"', "$(uname -r)", "`id`",
           '"a b"', "(a b c)", '("x" "y")', "\\$x", "", '"unterminated', "'also", "x\\", "${", "$", "$((1+2))"]
_LINES = ["if [ x ]; then", "fi", "case $k in", "esac", "for i in 1 2; do", "done", "f() {", "}", "# comment",
          "source /etc/x", ". ./y", "echo hi", "then", "else", ";;", "\\", '"', "'"]


@st.composite
def dkms_conf_text(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["assign", "assign", "line", "junk"]))
        if kind == "assign":
            sep = draw(st.sampled_from(["", "; ", " "]))
            lines.append(f"{draw(st.sampled_from(_WORDS))}={draw(st.sampled_from(_VALUES))}{sep}")
        elif kind == "line":
            lines.append(draw(st.sampled_from(_LINES)))
        else:
            lines.append(draw(st.text(max_size=30)))
    return draw(st.sampled_from(["\n", "\r\n", "\n\\\n"])).join(lines)


ENV = {"kernelver": K, "arch": "x86_64", "kernel_source_dir": f"/lib/modules/{K}/build"}


@PROFILE
@given(dkms_conf_text())
def test_dkms_conf_only_raises_its_error(text):
    try:
        conf = dkmsconf.parse_dkms_conf(text, ENV)
    except dkmsconf.DkmsConfError:
        return
    names = conf.dest_module_names()            # bounded by what the file assigns, not by its indices
    assert len(names) <= max([len(conf.values.get(n, {})) for n in
                              ("BUILT_MODULE_NAME", "BUILT_MODULE_LOCATION", "DEST_MODULE_NAME",
                               "DEST_MODULE_LOCATION")] + [0])
    conf.autoinstall, conf.package_name, conf.dest_module_location(0)


@PROFILE
@given(st.text(max_size=400))
def test_dkms_conf_random_text(text):
    try:
        dkmsconf.parse_dkms_conf(text, ENV)
    except dkmsconf.DkmsConfError:
        pass


@PROFILE
@given(st.lists(st.tuples(st.sampled_from(["BUILT_MODULE_NAME", "DEST_MODULE_LOCATION", "DEST_MODULE_NAME"]),
                          st.integers(0, 10**12), st.text(string.ascii_lowercase, min_size=1, max_size=6)),
                max_size=8))
def test_dkms_conf_arrays_count_like_bash(assignments):
    """dkms's read_conf loops to ${#ARRAY[@]}, bash's element count (not the highest index + 1)."""
    text = "".join(f'{n}[{i}]="{v}"\n' for n, i, v in assignments)
    conf = dkmsconf.parse_dkms_conf(text, ENV)
    script = text + "".join(f'echo "${{#{n}[@]}}"\n' for n in ("BUILT_MODULE_NAME", "DEST_MODULE_LOCATION",
                                                                "DEST_MODULE_NAME"))
    counts = subprocess.run([require_tool("bash"), "-c", script], capture_output=True, text=True, check=True)
    assert [conf.size(n) for n in ("BUILT_MODULE_NAME", "DEST_MODULE_LOCATION", "DEST_MODULE_NAME")] == \
        [int(c) for c in counts.stdout.split()]


# ------------------------------------------------------------------------------------------------
# dpkg status


@st.composite
def status_stanza(draw) -> tuple[str, str, str, str]:
    name = draw(st.from_regex(r"[a-z0-9][a-z0-9+.-]{0,20}", fullmatch=True))
    want = draw(st.sampled_from(dpkg.WANTS))
    state = draw(st.sampled_from(dpkg.STATES))
    text = (f"Package: {name}\nStatus: {want} {draw(st.sampled_from(['ok', 'reinstreq']))} {state}\n"
            f"Version: {draw(st.from_regex(r'[0-9][0-9a-z.+~]{0,8}(-[0-9a-z.+~]{1,4})?', fullmatch=True))}\n"
            f"Description: x\n continuation: Package: not-a-field\n .\n")
    triggers = {"triggers-pending": "Triggers-Pending: ldconfig\n",          # dpkg requires them
                "triggers-awaited": "Triggers-Awaited: libc-bin\n"}
    return name, want, state, text + triggers.get(state, "")


@PROFILE
@given(st.lists(status_stanza(), max_size=12, unique_by=lambda s: s[0]))
def test_dpkg_status_round_trip(stanzas):
    parsed = dpkg.parse_status("\n".join(s[3] for s in stanzas).encode())
    assert [(p.name, p.want, p.state) for p in parsed] == [s[:3] for s in stanzas]


@PROFILE
@given(data=st.data(), stanzas=st.lists(status_stanza(), min_size=1, max_size=6))
def test_dpkg_status_mutated_and_random(data, stanzas):
    blob = "\n".join(s[3] for s in stanzas).encode()
    for candidate in (mutate(blob, data.draw), data.draw(st.binary(max_size=300))):
        try:
            parsed = dpkg.parse_status(candidate)
        except dpkg.DpkgStatusError:
            continue
        assert all(p.state in dpkg.STATES and p.want in dpkg.WANTS for p in parsed)
    dpkg.parse_arch_file(data.draw(st.binary(max_size=100)))


@st.composite
def dpkg_status_file(draw) -> bytes:
    """A status file as dpkg writes one (field names in any case, Status words spaced and cased
    as dpkg still reads them, continuation lines, blank lines of spaces, triggers, Multi-Arch),
    then edited where dpkg's parser decides: line ends, spaces, colons, hyphens, ^Z, NUL, CR,
    duplicated lines, the end of the file."""
    def rarely(n: int) -> bool:      # Hypothesis draws the smallest value most often: make it the usual one
        return draw(st.integers(0, n)) == n

    names = draw(st.lists(st.from_regex(r"[a-z0-9][a-z0-9+.-]{0,8}", fullmatch=True), min_size=1, max_size=5))
    stanzas = []
    for name in names:
        state = draw(st.sampled_from(dpkg.STATES))
        status = " ".join((draw(st.sampled_from(dpkg.WANTS)), draw(st.sampled_from(["ok", "reinstreq"])), state))
        if rarely(3):
            status = draw(st.sampled_from([status.upper(), status.replace(" ", "  ", 1),
                                           status.replace(" ", "", 1), status + "x"]))
        fields = [(draw(st.sampled_from(["Package", "package", "PACKAGE"])), name), ("Status", status)]
        if not rarely(4) or state not in ("not-installed", "half-installed"):
            fields.append(("Version", draw(st.from_regex(r"[0-9][0-9a-z.+~]{0,6}(-[0-9a-z.+~]{1,4})?", fullmatch=True))))
        if not rarely(4):
            fields.append(("Architecture", draw(st.sampled_from(["amd64", "all", "i386", ""]))))
        if rarely(3):
            fields.append(("Multi-Arch", draw(st.sampled_from(["same", "foreign", "Same", "no", "allowed", "sane"]))))
        if state == "triggers-pending" or rarely(12):
            fields.append(("Triggers-Pending", "ldconfig"))
        if state == "triggers-awaited" or rarely(12):
            fields.append(("Triggers-Awaited", "libc-bin"))
        if rarely(12):
            fields.append(("Config-Version", draw(st.sampled_from(["1.0", "1:2.0-1", "1.0-", ":1"]))))
        fields += [("Maintainer", "A <a@example.org>"), ("X-Custom", "y"),
                   ("Description", "x\n more\n .\n" + draw(st.sampled_from(["", " \n", "\t\n"])) + " end")]
        fields = draw(st.permutations(fields))
        stanzas.append("".join(f"{k}: {v}\n" for k, v in fields))
    blob = "\n".join(stanzas).encode()
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(blob)))
        edit = draw(st.sampled_from([b"\n", b"\n\n", b" \n", b"\t", b" ", b"\r", b"\r\n", b"\x1a", b":", b"-",
                                     b"#", b"\0", b"x", b"\n ", "\u00e9".encode(), b"delete", b"line", b"end"]))
        if edit == b"delete":
            blob = blob[:at] + blob[at + 1:]
        elif edit == b"line":        # a line written twice
            start = blob.rfind(b"\n", 0, at) + 1
            stop = blob.find(b"\n", at) + 1 or len(blob)
            blob = blob[:stop] + blob[start:stop] + blob[stop:]
        elif edit == b"end":         # a torn write
            blob = blob[:at]
        else:
            blob = blob[:at] + edit + blob[at:]
    return blob


def real_dpkg_status(data: bytes) -> set[tuple[str, str, str, str]] | None:
    """What Debian's dpkg-query reads from ``data`` as a status file: its installed entries
    (name, architecture, version, status), or None where it refuses the file."""
    with tempfile.TemporaryDirectory() as admin:
        for d in ("updates", "info"):
            os.mkdir(os.path.join(admin, d))
        Path(admin, "status").write_bytes(data)
        Path(admin, "available").write_bytes(b"")
        out = subprocess.run([require_tool("dpkg-query"), f"--admindir={admin}", "--show",
                              "--showformat=${Package}\x1f${Architecture}\x1f${Version}\x1f${Status}\x1e"],
                             capture_output=True, timeout=30, env={**os.environ, "LC_ALL": "C"})
    if out.returncode == 2 and b"error: parsing file" in out.stderr:
        return None
    assert out.returncode == 0, out.stderr
    # unit and record separators: a value may hold a newline (a continuation line) or a tab
    rows = {tuple(line.decode("utf-8", "surrogateescape").split("\x1f")) for line in out.stdout.split(b"\x1e") if line}
    return {r for r in rows if not r[3].endswith(" not-installed")}


def _without_zero_epoch(version: str) -> str:
    """dpkg prints the version it parsed: an epoch of 0 is not shown."""
    epoch, colon, rest = version.partition(":")
    return rest if colon and epoch.strip().lstrip("+-").isdigit() and int(epoch) == 0 else version


@PROFILE
@given(dpkg_status_file())
@example(b"Package: a\nStatus: install ok installed\nVersion: 1\nDescription: x\n \n y\n")   # a line of spaces
@example(b"Package: a\nStatus: install ok installed\nVersion: 1\n\n \nPackage: b\n")            # ... between stanzas
@example(b"package: A\nstatus: Install OK Installed\nVersion: 1\r\n\r\nPackage: b\nStatus: hold ok unpacked\n"
         b"Version: 2\n")
@example(b"Package: a\nStatus: install ok installed\nVersion: 1\nVersion: 2\n")                 # a field twice
@example(b"Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: a\nStatus: install ok unpacked\n"
         b"Version: 2\n")                                                                           # a stanza twice
@example(b"Package: a\nStatus: install ok installed\nVersion: 1\n#x\n")                          # no comments
@example(b"Package: a\nStatus: install ok installed\nVersion: 1")                                 # no final newline
@example(b"Package: a\nStatus: install ok installed\nVersion: 1\n\x1a")                          # MS-DOS's end
@example(b"Package: a\nStatus: install ok triggers-pending\nVersion: 1\nTriggers-Pending: ldconfig LDCONFIG\n")
def test_dpkg_status_is_read_as_dpkg_reads_it(blob):
    """parse_status refuses exactly the files Debian's dpkg refuses, and reads the installed
    packages it reads: held packages and ``dpkg --audit`` are only true if the database they
    come from is the one dpkg sees."""
    real = real_dpkg_status(blob)
    try:
        parsed = dpkg.parse_status(blob)
    except dpkg.DpkgStatusError as exc:
        assert real is None, f"dpkg reads it, we refused it ({exc}): {blob!r}"
        return
    assert real is not None, f"dpkg refuses it, we read it: {blob!r}"
    ours = {(p.name, p.arch, _without_zero_epoch(p.version), f"{p.want} {'reinstreq' if p.reinstreq else 'ok'} {p.state}")
            for p in parsed if p.state != "not-installed"}
    assert ours == real, blob


# ------------------------------------------------------------------------------------------------
# bootloader


@pytest.fixture(scope="module")
def grub_seed(tmp_path_factory) -> tuple[str, bytes]:
    h = Host(tmp_path_factory.mktemp("grub") / "h")
    for k in ("6.1.0-25-amd64", K, "6.1.0-28-amd64"):
        h.kernel(k, in_tree=[])
    h.grub(default="saved", saved_entry=f"gnulinux-advanced-x>gnulinux-{K}-advanced-x", next_entry="1")
    return h.path("boot/grub/grub.cfg").read_text(), h.path("boot/grub/grubenv").read_bytes()


def _kernels_in(cfg: str) -> set[str]:
    return {w.split("vmlinuz-", 1)[1] for w in cfg.split() if "vmlinuz-" in w}


@PROFILE
@given(data=st.data())
def test_grub_mutated_cfg_and_env(grub_seed, data):
    cfg, env = grub_seed
    cfg2 = mutate(cfg.encode(), data.draw).decode("utf-8", "surrogateescape")
    env2 = mutate(env, data.draw) if data.draw(st.booleans()) else env
    spec = data.draw(st.sampled_from(["", "1", "999999999999999999999", "²", "٣", "1>0", ">", "0>0>0>0",
                                      "x" * 5000, "9" * 5000]))
    parsed_env = grub.parse_grubenv(env2)
    if spec:
        parsed_env["saved_entry" if data.draw(st.booleans()) else "next_entry"] = spec
    facts = bootloader.grub_next_boot(cfg2, parsed_env)
    assert facts.next_boot is None or facts.next_boot in _kernels_in(cfg2)


@PROFILE
@given(st.text(max_size=500), st.dictionaries(st.sampled_from(["saved_entry", "next_entry", "x"]),
                                              st.text(max_size=20)))
def test_grub_random_cfg(cfg, env):
    bootloader.grub_next_boot(cfg, env)  # never raises: any text is some (maybe empty) menu


@PROFILE
@given(st.binary(max_size=1200))
def test_grubenv_and_bls_random_bytes(blob):
    env = grub.parse_grubenv(blob)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    fields = bls.parse_bls_entry(blob)
    assert all(" " not in k for k in fields)


@PROFILE
@example({"_": "\\n"})  # a backslash and an n: read as backslash-newline before the fix
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                       st.text(string.printable.replace("\n", "").replace("\r", "").replace("\x0b", "")
                               .replace("\x0c", ""), max_size=30), max_size=6))
def test_grubenv_round_trip(values):
    """What grub-editenv writes (backslash and newline escaped, '#' padding) reads back."""
    body = "# GRUB Environment Block\n" + "".join(
        f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in values.items())
    assert grub.parse_grubenv((body + "#" * max(0, 1024 - len(body))).encode()) == values


# ------------------------------------------------------------------------------------------------
# trust: EFI signature lists, efivars, certificates


@pytest.fixture(scope="module")
def ders() -> list[bytes]:
    return [(KEYS / f"{stem}.der").read_bytes() for stem in ("dkms-mok", "kernel-build")]


@PROFILE
@given(data=st.data())
def test_mutated_signature_lists(ders, data):
    blob = mutate(signature_lists(ders), data.draw)
    try:
        entries = efi.parse_signature_lists(blob)
    except errors.TrustDataError as exc:
        assert exc.code == "bad_signature_list"
        return
    assert sum(16 + len(e.data) for e in entries) <= len(blob)
    try:
        efi.key_list_from_entries("MokListRT", (), entries)
    except errors.TrustDataError as exc:
        assert exc.code == "bad_certificate"


def test_seed_signature_lists_hold_the_certificates(ders):
    entries = efi.parse_signature_lists(signature_lists(ders))
    assert [e.data for e in entries] == ders
    assert {x509.load_certificate(d).subject_cn for d in ders} == {"DKMS module signing key", "Build time autogenerated kernel key"} or \
        len({x509.load_certificate(d).sha256 for d in ders}) == 2


@PROFILE
@given(data=st.data())
def test_mutated_certificates(ders, data):
    der = data.draw(st.sampled_from(ders))
    blob = mutate(der, data.draw)
    if data.draw(st.booleans()):
        import base64
        blob = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(blob) + b"-----END CERTIFICATE-----\n"
    try:
        cert = x509.load_certificate(blob)
    except errors.TrustDataError as exc:
        assert exc.code == "bad_certificate"
    else:
        assert isinstance(cert.serial, str) and len(cert.sha256) == 64


@PROFILE
@given(st.binary(max_size=64), st.sampled_from([b"", b"\x06\x00\x00\x00", b"\x07\x00\x00\x00\x01"]))
def test_efivar_files(blob, prefix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"SecureBoot-{efi.EFI_GLOBAL_GUID}"
        path.write_bytes(prefix + blob)
        try:
            var = secureboot.read_efivar(path)
        except errors.TrustDataError as exc:
            assert exc.code == "bad_efivar" and len(prefix + blob) < 4
        else:
            assert (var is None) == (not prefix + blob)
            assert var is None or var.data == (prefix + blob)[4:]


# ------------------------------------------------------------------------------------------------
# depmod: modules.dep and modules.dep.bin (the real depmod writes the seeds)


@pytest.fixture(scope="module")
def depmod_seeds(tmp_path_factory) -> tuple[bytes, bytes]:
    """modules.dep and modules.dep.bin of a fixture tree, written by the real `depmod -b`."""
    root = tmp_path_factory.mktemp("depmod")
    h = Host(root / "h")
    h.kernel(K, in_tree=["e1000e", "ahci", "nvme-core"])
    for name in ("acpi_call", "zfs", "spl", "v4l2-loopback"):
        h.write(f"usr/lib/modules/{K}/updates/dkms/{name}.ko", module_elf(name, K))
    subprocess.run([require_tool("depmod"), "-b", str(h.root), K], check=True, capture_output=True)
    base = h.path(f"usr/lib/modules/{K}")
    return (base / "modules.dep").read_bytes(), (base / "modules.dep.bin").read_bytes()


def test_dep_bin_agrees_with_depmods_text(depmod_seeds):
    text, binary = depmod_seeds
    assert depmod.parse_modules_dep_bin(binary).paths == depmod.parse_modules_dep(text).paths
    assert len(depmod.parse_modules_dep(text).paths) == 7


@PROFILE
@given(data=st.data())
def test_mutated_modules_dep_bin(depmod_seeds, data):
    blob = mutate(depmod_seeds[1], data.draw)
    try:
        dep = depmod.parse_modules_dep_bin(blob)
    except depmod.DepmodError:
        return
    assert len(dep.paths) <= len(blob) and all(isinstance(p, str) for p in dep.paths.values())


@PROFILE
@given(data=st.data())
def test_mutated_and_random_modules_dep(depmod_seeds, data):
    for blob in (mutate(depmod_seeds[0], data.draw), data.draw(st.binary(max_size=300))):
        try:
            dep = depmod.parse_modules_dep(blob)
        except depmod.DepmodError:
            continue
        assert dep.compressed_suffix in ("", ".gz", ".xz", ".zst")
        in_tree = sorted(rel for rel in dep.paths.values() if rel.startswith("kernel/"))
        for count in (1, 5, len(in_tree) + 1):
            assert dep.first_in_tree(count) == tuple(in_tree[:count])
        back = depmod.CODEC.decode(json.loads(json.dumps(depmod.CODEC.encode(dep))))
        assert (back.paths, back.deps, back.compressed_suffix) == (dep.paths, dep.deps, dep.compressed_suffix)
        assert all(type(v) is tuple for v in back.deps.values())


@PROFILE
@given(st.binary(max_size=600))
def test_random_modules_dep_bin(blob):
    for prefix in (b"", struct.pack(">III", depmod.INDEX_MAGIC, depmod.INDEX_VERSION_MAJOR << 16, 12)):
        try:
            depmod.parse_modules_dep_bin(prefix + blob)
        except depmod.DepmodError:
            pass


# ------------------------------------------------------------------------------------------------
# make.log and Module.symvers


CAUSES = {"headers_missing", "compiler_missing", "kernel_api_mismatch", "other"}


@PROFILE
@given(st.binary(max_size=2000), st.sampled_from([b"", b"DKMS make.log for nv-1.0 for kernel 6.1.0-1 (x86_64)\n",
                                                   b"DKMS (dkms-3.0.13) make.log for nv/1.0 for kernel K (x86_64)\n"]))
def test_make_log_never_raises(blob, header):
    log = makelog.classify_make_log(header + blob)
    assert log.cause in CAUSES and len(log.detail) <= 300


_SYMVERS_LINE = st.tuples(st.integers(0, 2**32 - 1), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True),
                          st.sampled_from(["vmlinux", "drivers/net/e1000e", "fs/zfs/zfs"]),
                          st.sampled_from(["EXPORT_SYMBOL", "EXPORT_SYMBOL_GPL"]),
                          st.sampled_from(["", "USB_STORAGE", "CXL"]))


@PROFILE
@given(st.lists(_SYMVERS_LINE, max_size=20, unique_by=lambda l: l[1]))
def test_symvers_round_trip(lines):
    text = "".join(f"0x{crc:08x}\t{sym}\t{mod}\t{kind}\t{ns}\n" for crc, sym, mod, kind, ns in lines)
    exports = symvers.parse_module_symvers(text)
    assert {s: (e.crc, e.module, e.namespace) for s, e in exports.items()} == \
        {sym: (crc, mod, ns) for crc, sym, mod, _, ns in lines}


@PROFILE
@given(data=st.data())
def test_symvers_mutated_and_random(data):
    seed = "0x0c3f5a6b\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n0x1\t_printk\tvmlinux\tEXPORT_SYMBOL_GPL\tNS\n"
    for text in (mutate(seed.encode(), data.draw).decode("utf-8", "replace"), data.draw(st.text(max_size=200))):
        try:
            symvers.parse_module_symvers(text)
        except symvers.SymversError as exc:
            assert exc.line_no >= 1


@PROFILE
@given(st.lists(_SYMVERS_LINE, max_size=20), st.sets(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True),
                                                    max_size=8), st.data())
def test_symvers_slice_is_the_whole_table_cut_to_what_is_wanted(lines, extra, data):
    """A slice holds exactly the whole table's rows for the wanted symbols, and answers every
    whole-table question (truth, total, CRCs, exporting modules) as the whole table does, also
    after a trip through the persistent cache's codec."""
    text = "".join(f"0x{crc:08x}\t{sym}\t{mod}\t{kind}\t{ns}\n" for crc, sym, mod, kind, ns in lines)
    whole = symvers.parse_module_symvers(text)
    wanted = frozenset(extra) | frozenset(data.draw(st.sets(st.sampled_from(sorted(whole)))) if whole else ())
    for cut in (symvers.parse_module_symvers(text, wanted),
                symvers.CODEC.decode(symvers.CODEC.encode(symvers.parse_module_symvers(text, wanted)))):
        assert dict(cut) == {s: e for s, e in whole.items() if s in wanted}
        assert (bool(cut), cut.has_crcs, cut.module_names) == (bool(whole), whole.has_crcs, whole.module_names)
        assert cut.covers(wanted) and cut.covers(whole) == (whole.keys() <= wanted)


def _parsed(parse, *args) -> tuple:
    try:
        t = parse(*args)
    except symvers.SymversError as exc:
        return ("error", str(exc))
    return ("table", dict(t), t.total, t.has_crcs, t.module_names, t.wanted)


@PROFILE
@given(st.lists(_SYMVERS_LINE, max_size=12), st.data())
def test_symvers_file_read_line_by_line_is_the_text_split_at_lf(lines, data):
    """parse_symvers_file reads a file line by line (no second copy of its text): for any
    bytes, real-shaped or mutated, with CR, VT, FF, FS-RS, NEL, LS or PS inside (none of them
    ends a line for modpost) and invalid UTF-8, the table or error is the one the decoded text
    split at LF gives, as a whole table and as a slice."""
    good = "".join(f"0x{crc:08x}\t{sym}\t{mod}\t{kind}\t{ns}\n" for crc, sym, mod, kind, ns in lines).encode()
    breaks = [b"\r", b"\r\n", b"\x0b", b"\x0c", b"\x1c", b"\x1e", "\x85".encode(), "\u2028".encode(), b"\xff", b"\xe2\x80"]
    blob = mutate(good, data.draw) if good and data.draw(st.booleans()) else good
    if blob and data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(blob)))
        blob = blob[:at] + data.draw(st.sampled_from(breaks)) + blob[at:]
    wanted = frozenset(sym for _, sym, *_ in lines[::2])
    for want in (None, wanted):
        assert _parsed(symvers.parse_symvers_file, blob, symvers.MAX_BYTES, want) == \
            _parsed(symvers.parse_module_symvers, blob.decode("utf-8", "replace"), want), blob


def _symvers_general(line: str) -> symvers.ExportTable:
    table = symvers.ExportTable()
    found = symvers._parse_line(1, line, line.split("\t"), {}.setdefault)
    if found is not None:
        table[found[0]] = found[1]
    return table


@PROFILE
@given(data=st.data())
def test_symvers_fast_path_is_the_general_parse(data):
    """The common-line fast path of parse_module_symvers gives, for any line (mutated real-shaped
    ones and random text), the exports or the error the general per-line parse gives."""
    seed = "0x0c3f5a6b\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n0x1\t_printk\tvmlinux\tEXPORT_SYMBOL_GPL\tNS\n"
    texts = (seed, mutate(seed.encode(), data.draw).decode("utf-8", "replace"),
             data.draw(st.text("0x1\tEXPORT_SYMBOL_GPLab _", max_size=80)))
    for line in "\n".join(texts).splitlines():
        results = []
        for parse in (symvers.parse_module_symvers, _symvers_general):
            try:
                results.append(dict(parse(line)))
            except symvers.SymversError as exc:
                results.append(str(exc))
        assert results[0] == results[1], line


# ------------------------------------------------------------------------------------------------
# the failing examples the properties above found, kept as plain regression tests


def test_grub_entry_numbers_are_ascii_and_bounded(grub_seed):
    """'²'.isdigit() is true but int('²') raises, and int() refuses 4,300+ digits: both crashed the
    bootloader collector. GRUB reads ASCII digits only and treats an overflowing number as no entry."""
    cfg, _ = grub_seed
    for spec in ("²", "٣", "9" * 5000, "99999999999999999999"):
        facts = bootloader.grub_next_boot(cfg, {"saved_entry": spec, "next_entry": spec})
        assert facts.next_boot == "6.1.0-28-amd64" and "not found" in facts.entry
    assert bootloader.grub_next_boot(cfg, {"next_entry": "1>2"}).next_boot == K


def test_sparse_dkms_arrays_are_counted_like_bash():
    """BUILT_MODULE_NAME[10**12]=x made dest_module_names() loop 10**12 times (max index + 1);
    bash's ${#BUILT_MODULE_NAME[@]} is 1, so dkms looks at index 0 only."""
    conf = dkmsconf.parse_dkms_conf('PACKAGE_NAME="pkg"\nBUILT_MODULE_NAME[1000000000000]="x"\n'
                                    'DEST_MODULE_LOCATION[0]="/extra"\n', ENV)
    assert conf.size("BUILT_MODULE_NAME") == 1
    assert conf.dest_module_names() == ["pkg"]   # index 0 is unset: dkms falls back to PACKAGE_NAME


# 195 bytes atheris found (benchmarks/fuzz.py): a child pointing back at its parent, each visit
# one byte longer a key, 256 children a node, until the machine ran out of memory
DEP_BIN_LOOP = bytes.fromhex(
    "b007f45700020001200000a6000000bc616c6c000000000100000002757064617465732f646b6d732f616370695f63656c6c2e6b"
    "6f3a0063690000000001000000006b65726e656c2f647269766572732f6d6973632f616863692e6b6f3a006368c000000c000000"
    "00000000000000000000000000c000003731303030650000000001000000016b65726e656c2f647269766572732f6d6973632f65"
    "31303030652e6b6f3a006165fc00005f0000000000000001200000a600000000000000c0000079")


def test_modules_dep_bin_loop_is_refused_not_walked_forever():
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from exporter.formats.depmod import DepmodError, parse_modules_dep_bin\n"
            "try:\n parse_modules_dep_bin(bytes.fromhex(sys.argv[1]))\n"
            "except DepmodError as e:\n print(e)")
    out = subprocess.run([sys.executable, "-c", code, DEP_BIN_LOOP.hex()], capture_output=True, text=True,
                         timeout=30, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0 and "reached twice" in out.stdout, out.stderr[-500:]


def test_certificate_with_a_real_where_any_goes_is_a_bad_certificate(ders):
    """asn1crypto raised AttributeError ('Real' object has no attribute 'native') out of
    load_certificate for this one-byte change (found by atheris): a MOK list entry like it
    crashed the secureboot collector."""
    blob = bytearray(ders[0])
    blob[436] = 0x09  # an extension's value re-tagged as REAL
    with pytest.raises(errors.TrustDataError) as exc:
        x509.load_certificate(bytes(blob))
    assert exc.value.code == "bad_certificate"


def test_nobits_section_sizes_allocate_nothing(module_seeds):
    """atheris: a .modinfo re-typed SHT_NOBITS with a huge sh_size made pyelftools build sh_size
    NUL bytes (MemoryError at 2**60; at 1 GiB it takes 1 GiB, twice the systemd unit's MemoryMax).
    A section with no bytes in the file reads as empty."""
    from elftools.elf.elffile import ELFFile
    blob = bytearray(module_seeds["unsigned"])
    elf = ELFFile(io.BytesIO(bytes(blob)))
    index = next(i for i, sec in enumerate(elf.iter_sections()) if sec.name == ".modinfo")
    header = elf["e_shoff"] + index * elf["e_shentsize"]
    for size in (1 << 60, 1 << 30):
        struct.pack_into("<I", blob, header + 4, 8)       # sh_type = SHT_NOBITS
        struct.pack_into("<Q", blob, header + 32, size)   # sh_size
        m = modfile.parse_module(bytes(blob))
        assert m.modinfo == () and m.vermagic is None and m.name == "acpi_call"  # from struct module


def test_dkms_conf_array_whose_body_does_not_split():
    """atheris: the line splits as shell words (the '#' starts a comment) but the array body
    `""#"` alone does not, and shlex's ValueError escaped the parser."""
    with pytest.raises(dkmsconf.DkmsConfError, match="array E"):
        dkmsconf.parse_dkms_conf('E=(""#"', ENV)
