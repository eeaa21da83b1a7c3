"""Property tests for the parsers the RPM, Arch and kernel-exact work added: rpm headers, rpm's
Berkeley DB Packages file, pacman's local database and pacman.conf, BLS entries and loader.conf,
and module signature verification.

The same house rules as tests/test_properties.py (whose ``mutate`` and ``PROFILE`` these use):
real artifacts are the seeds (headers rpm itself wrote with ``rpm --root``, a Packages file
Berkeley DB's own db5.3_load wrote, desc/files pacman wrote with ``pacman -U --root``, a module
gcc built and sign-file signed), random edits break them, and each parser may raise only its
documented error type, never past its bounds.
"""

from __future__ import annotations

import functools
import os
import struct
import tempfile
from pathlib import Path

import parser_contracts
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostbuilder import KEYS, module_elf
from pacmantools import Pkg
from pacmantools import install as pacman_install
from rpmtools import DBPATH, Spec, rpmbuild
from rpmtools import install as rpm_install
from test_properties import K, PROFILE, mutate
from testkit import require_tool

from exporter.formats import bls, modsig, pacman, x509
from exporter.formats import module as modfile
from exporter.formats.rpmdb import RpmdbError, bdb_packages, installed_package
from exporter.formats.rpmheader import RpmHeaderError, parse_header, parse_package_header
from exporter.host.reader import query_sqlite


# ------------------------------------------------------------------------------------------------
# rpm: headers from a real rpmdb, a Packages file from the real db_load, a real package file


def _specs() -> list[Spec]:
    k = "5.14.0-427.13.1.el9_4"
    return [Spec("kernel-core", "5.14.0", "427.13.1.el9_4", provides=(f"kernel = {k}", f"kernel-uname-r = {k}.x86_64"),
                 files={f"/lib/modules/{k}.x86_64/vmlinuz": b"MZ", f"/lib/modules/{k}.x86_64/extra/a.ko.xz": b"a"}),
            Spec("kmod-foo", "2.1", "3.el9", epoch=1, provides=("kmod(foo.ko) = 2.1",),
                 files={f"/lib/modules/{k}.x86_64/extra/foo/foo.ko": b"\x7fELF"})]


@functools.lru_cache(maxsize=None)
def _rpm_seeds() -> tuple[tuple[bytes, ...], bytes, bytes]:
    """(header blobs rpm wrote into rpmdb.sqlite, a Packages file db5.3_load wrote, the first
    64 KiB of a package file rpmbuild wrote)."""
    work = Path(tempfile.mkdtemp(prefix="prop-rpm-"))
    packages = [rpmbuild(s) for s in _specs()]
    rpm_install(work / "root", *packages)
    rows = query_sqlite(work / "root" / DBPATH.lstrip("/") / "rpmdb.sqlite", "SELECT hnum, blob FROM Packages", 1 << 30)
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "db_pagesize=512", "HEADER=END",
             " " + struct.pack("<I", 0).hex(), " " + struct.pack("<I", len(rows)).hex()]
    for hnum, blob in rows:
        lines += [" " + struct.pack("<I", hnum).hex(), " " + blob.hex()]
    (work / "dump").write_text("\n".join(lines + ["DATA=END"]) + "\n")
    import subprocess
    subprocess.run([require_tool("db5.3_load"), "-f", str(work / "dump"), str(work / "Packages")], check=True,
                   capture_output=True, timeout=120)
    return tuple(b for _, b in rows), (work / "Packages").read_bytes(), packages[0].read_bytes()[:65536]


@pytest.fixture
def rpm_seeds():
    return _rpm_seeds()


def test_rpm_seeds_parse(rpm_seeds):
    blobs, packages_file, package = rpm_seeds
    assert {installed_package(i, b).name for i, b in enumerate(blobs, 1)} == {"kernel-core", "kmod-foo"}
    assert len(list(_read_bdb(packages_file))) == len(blobs)
    assert parse_package_header(package).string(1000) == "kernel-core"      # RPMTAG_NAME


@PROFILE
@given(data=st.data())
def test_mutated_rpm_headers_only_raise_rpm_header_error(rpm_seeds, data):
    blob = mutate(data.draw(st.sampled_from(rpm_seeds[0])), data.draw)
    try:
        header = parse_header(blob)
        package = installed_package(1, blob)
        files = header.filenames()
    except RpmHeaderError:
        return
    # whatever parses is made of the blob's own bytes: no string, no list longer than the blob
    assert len(files) <= len(blob) and all(len(f) <= len(blob) for f in files)
    assert len(package.name) + len(package.version) + len(package.release) <= len(blob)


@PROFILE
@given(st.binary(max_size=2048))
def test_random_bytes_as_rpm_header_and_package(blob):
    for parse in (parse_header, parse_package_header):
        try:
            parse(blob)
        except RpmHeaderError:
            pass


def _read_bdb(data: bytes):
    return bdb_packages(lambda off, n: data[off:off + n], len(data))


@PROFILE
@given(data=st.data())
def test_mutated_berkeley_db_only_raises_rpmdb_error(rpm_seeds, data):
    blob = mutate(rpm_seeds[1], data.draw)
    try:
        rows = list(_read_bdb(blob))
    except RpmdbError:
        return
    # every item comes from distinct pages of this file: together no bigger than the file
    assert sum(len(b) for _, b in rows) <= len(blob)
    for hnum, header in rows:
        try:
            installed_package(hnum, header)
        except RpmHeaderError:
            pass


@PROFILE
@given(data=st.data())
def test_mutated_rpm_package_file_only_raises_rpm_header_error(rpm_seeds, data):
    try:
        parse_package_header(mutate(rpm_seeds[2], data.draw))
    except RpmHeaderError:
        pass


# ------------------------------------------------------------------------------------------------
# pacman: desc and files pacman wrote, pacman.conf with includes


@functools.lru_cache(maxsize=None)
def _pacman_seeds() -> tuple[bytes, ...]:
    root = Path(tempfile.mkdtemp(prefix="prop-pacman-")) / "root"
    pacman_install(root, [Pkg("nvidia-dkms", "550.90.07", rel="3", epoch=1, groups=("drivers",),
                              provides=("nvidia-driver",), files={"/usr/src/nvidia-550.90.07/dkms.conf": "x\n"})])
    local = root / "var/lib/pacman/local"
    (entry,) = [p for p in local.iterdir() if p.is_dir()]
    return (entry / "desc").read_bytes(), (entry / "files").read_bytes()


@pytest.fixture
def pacman_seeds():
    return _pacman_seeds()


def test_pacman_seeds_parse(pacman_seeds):
    desc, files = pacman_seeds
    assert pacman.parse_desc(desc).version == "1:550.90.07-3"
    assert "usr/src/nvidia-550.90.07/dkms.conf" in pacman.parse_files(files)


@PROFILE
@given(data=st.data())
def test_mutated_pacman_desc_and_files(pacman_seeds, data):
    blob = mutate(data.draw(st.sampled_from(pacman_seeds)), data.draw)
    try:
        p = pacman.parse_desc(blob)
    except pacman.PacmanDbError:
        pass
    else:
        assert p.name and p.version and len(p.groups) + len(p.provides) <= blob.count(b"\n") + 1
    try:
        paths = pacman.parse_files(blob)
    except pacman.PacmanDbError:
        pass
    else:
        assert len(paths) <= min(pacman.MAX_FILES_ENTRIES, blob.count(b"\n") + 1)
    entry = blob.decode("utf-8", "replace")[:80]
    assert pacman.split_entry_name(entry) is None or "-" in entry


_conf_line = st.one_of(
    st.sampled_from(["[options]", "[core]", "[]", "", "# c", "IgnorePkg = linux linux-headers", "IgnoreGroup=zfs",
                     "Include = /etc/pacman.d/*.conf", "Include = /etc/pacman.conf", "Include =", "Include = /none",
                     "SigLevel = Never", "IgnorePkg"]),
    st.text(max_size=40))


@PROFILE
@given(files=st.dictionaries(st.sampled_from(["/etc/pacman.conf", "/etc/pacman.d/a.conf", "/etc/pacman.d/b.conf"]),
                             st.lists(_conf_line, max_size=12).map("\n".join), min_size=1))
@example(files={"/etc/pacman.conf": "[options]\nInclude = /etc/pacman.conf\nInclude = /etc/pacman.conf"})
def test_pacman_conf_only_raises_its_error_and_stays_bounded(files):
    loads = []

    def load(path: str) -> bytes | None:
        loads.append(path)
        text = files.get(path)
        return None if text is None else text.encode("utf-8", "surrogatepass")

    def glob(pattern: str) -> list[str]:
        import fnmatch
        return sorted(p for p in files if fnmatch.fnmatch(p, pattern))

    try:
        rules = pacman.parse_pacman_conf("/etc/pacman.conf", load, glob)
    except pacman.PacmanConfError:
        rules = ()
    # includes nest at most MAX_INCLUDE_DEPTH deep and the first too-deep one stops everything,
    # so a cycle is walked down once: at most the depth times the acyclic fan-out of the files
    assert len(loads) <= (pacman.MAX_INCLUDE_DEPTH + 1) * 13 ** len(files)
    assert all(r.word and r.kind in ("IgnorePkg", "IgnoreGroup") for r in rules)


# ------------------------------------------------------------------------------------------------
# BLS entries, loader.conf, blscfg's order


@PROFILE
@given(st.binary(max_size=1500))
@example(b"options quiet\x0clinux /vmlinuz-evil")   # split in two by str.splitlines before the fix
def test_bls_entry_and_loader_conf_never_raise(blob):
    for parse in (bls.parse_bls_entry, bls.parse_loader_conf):
        fields = parse(blob)
        assert len(fields) <= blob.count(b"\n") + 1
        assert all(k and not k.startswith("#") for k in fields)


_nvr = st.one_of(st.from_regex(r"[a-z0-9]{1,8}-[0-9]\.[0-9]{1,2}\.[0-9]{1,3}-[0-9]{1,3}\.(fc3[0-9]|el9_[0-9])\.x86_64(\+debug)?",
                               fullmatch=True), st.text(max_size=30))


@PROFILE
@given(a=_nvr, b=_nvr, plus=st.booleans())
def test_blscfg_vercmp_is_a_consistent_comparison(a, b, plus):
    ab, ba = bls.blscfg_vercmp(a, b, plus), bls.blscfg_vercmp(b, a, plus)
    assert ab in (-1, 0, 1) and ab == -ba
    assert bls.blscfg_vercmp(a, a, plus) == 0


@PROFILE
@given(entries=st.lists(st.tuples(_nvr, st.dictionaries(st.sampled_from(["linux", "version", "title"]), _nvr)),
                        max_size=6), variant=st.sampled_from(["current", "rhel8"]))
def test_blscfg_order_never_raises_and_only_keeps_bootable_entries(entries, variant):
    menu = bls.blscfg_order(entries, variant)
    assert len(menu) <= len(entries) and all("linux" in f for _, f in menu)
    assert all(e in entries for e in menu)


# ------------------------------------------------------------------------------------------------
# module signatures: parse, then verify against the signing certificate


@functools.lru_cache(maxsize=None)
def _signed_modules() -> tuple[bytes, ...]:
    return tuple(module_elf("acpi_call", K, compression=c) for c in ("none", "zstd"))


@pytest.fixture
def signed_modules():
    return _signed_modules()


@functools.lru_cache(maxsize=None)
def _signing_cert() -> x509.Certificate:
    return x509.load_certificate((KEYS / "dkms-mok.der").read_bytes())


def test_seed_module_signature_verifies(signed_modules):
    kind, body = modfile.decompress_module(signed_modules[0])
    sig = modfile.parse_module(body, compression=kind).signature
    assert sig is not None and modsig.matches(sig, _signing_cert())
    assert modsig.verify(sig, _signing_cert()).ok


@PROFILE
@given(data=st.data())
def test_mutated_signed_modules_verify_or_fail_never_raise(signed_modules, data):
    """Any damage to a signed module is a ModuleFileError or a signature that does not verify:
    verify/check_attributes return a SigCheck, whatever bytes reach them."""
    blob = mutate(data.draw(st.sampled_from(signed_modules)), data.draw)
    try:
        kind, body = modfile.decompress_module(blob)
        sig = modfile.parse_module(body, compression=kind).signature
    except modfile.ModuleFileError:
        return
    if sig is None:
        return
    cert = _signing_cert()
    for check in (modsig.verify, modsig.check_attributes):
        result = check(sig, cert)
        assert isinstance(result, modsig.SigCheck)
    modsig.matches(sig, cert)


def test_bls_lines_end_at_newline_only_as_grub_reads_them():
    """GRUB's grub_file_getline ends a line at \\n and drops \\r; a form feed or vertical tab
    inside a value is part of it (the property test found str.splitlines splitting there)."""
    entry = bls.parse_bls_entry(b"title Fedora\r\noptions quiet\x0clinux /vmlinuz-evil\nlinux /vmlinuz-6.5\n")
    assert entry == {"title": "Fedora", "options": "quiet\x0clinux /vmlinuz-evil", "linux": "/vmlinuz-6.5"}


# ------------------------------------------------------------------------------------------------
# zypper locks (what `zypper addlock` wrote), rpm's ndb Packages.db (written by rpm's own
# rpmpkg.c through tests/ndbtools.py), a kernel image's built-in certificate list (an xz payload
# the real xz wrote, laid out as kbuild lays a bzImage)


@functools.lru_cache(maxsize=None)
def _zypp_seeds() -> tuple[str, ...]:
    """/etc/zypp/locks as the real `zypper --root R addlock` wrote it for every lock form the
    zypper tests use, and the hand-written records libzypp also reads."""
    from test_zypper import ADDLOCK, HANDWRITTEN, zypper
    root = Path(tempfile.mkdtemp(prefix="prop-zypp-"))
    (root / "etc/zypp").mkdir(parents=True)
    for args in ADDLOCK:
        zypper(root, "addlock", *args)
    return (root / "etc/zypp/locks").read_text(), HANDWRITTEN


@functools.lru_cache(maxsize=None)
def _ndb_seed() -> bytes:
    """A Packages.db rpm's own rpmpkgPut/rpmpkgDel wrote: the real headers, one erased (a hole)."""
    import ndbtools
    blobs = dict(enumerate(_rpm_seeds()[0] * 2, start=1))
    db = Path(tempfile.mkdtemp(prefix="prop-ndb-")) / "Packages.db"
    ndbtools.write_ndb(db, blobs, erase=(2,))
    return db.read_bytes()


@functools.lru_cache(maxsize=None)
def _vmlinuz_seeds() -> tuple[bytes, ...]:
    from test_vmlinux import CERTS, bzimage, vmlinux
    return bzimage(vmlinux(CERTS)), vmlinux(CERTS[:1], decoy=False), bzimage(vmlinux(CERTS[1:]))


def test_new_seeds_parse():
    """The seeds are what the parsers read: every addlock record a lock and the image's list
    found (so the mutations start from real inputs)."""
    from exporter.formats import vmlinux, zypplocks
    written, handwritten = _zypp_seeds()
    assert len(zypplocks.parse_locks(written)) == 16 and zypplocks.parse_locks(handwritten)
    assert len(vmlinux.builtin_certificates(__import__("io").BytesIO(_vmlinuz_seeds()[0]),
                                            len(_vmlinuz_seeds()[0])).certificates) == 2


@pytest.mark.slow
def test_ndb_seed_parses():
    """Every blob of the Packages.db rpm's rpmpkg.c wrote is an rpm header (slow: it builds
    rpmpkg.c from Debian's rpm source)."""
    from exporter.formats import ndb
    data = _ndb_seed()
    slots = ndb.ndb_slots(lambda off, n: data[off:off + n], len(data))
    assert len(slots) == 2 * len(_rpm_seeds()[0]) - 1
    for pkgidx, blkoff, blkcnt in slots:
        parse_header(ndb.read_blob(lambda off, n: data[off:off + n], pkgidx, blkoff, blkcnt))


@PROFILE
@given(data=st.data())
def test_mutated_zypp_locks_only_raise_their_error(data):
    """Damaged /etc/zypp/locks: ZyppLocksError or locks, and judging any lock against a
    package never raises."""
    parser_contracts.zypp_locks(mutate(data.draw(st.sampled_from(_zypp_seeds())).encode(), data.draw))


@pytest.mark.slow
@PROFILE
@given(data=st.data())
def test_mutated_ndb_only_raises_ndb_error(data):
    """Damaged Packages.db: NdbError, or slots whose blobs stay inside the file."""
    parser_contracts.ndb_packages(mutate(_ndb_seed(), data.draw))


@PROFILE
@given(data=st.data())
def test_mutated_kernel_images_only_raise_their_errors(data):
    """Damaged vmlinuz: VmlinuxError or TrustDataError (what the module collector catches), or
    a list of certificates the image holds."""
    parser_contracts.kernel_image(mutate(data.draw(st.sampled_from(_vmlinuz_seeds())), data.draw),
                                  data.draw(st.sampled_from([0, 4096])))


def test_zypp_glob_with_a_reversed_bracket_range_is_not_a_crash():
    """atheris (zypplocks target): `solvable_name: [n-e]*` with match_type glob made re.compile
    raise re.error out of judge(); the matcher is invalid, as an invalid regex lock's is: it
    matches nothing (judged as the regex branch judges it), never a crash."""
    from exporter.formats import zypplocks
    (lock,) = zypplocks.parse_locks("type: package\nmatch_type: glob\ncase_sensitive: on\nsolvable_name: [n-e]*\n")
    assert zypplocks.judge(lock, "kernel-default", "6.4.0-1", "x86_64") is False
    (regex,) = zypplocks.parse_locks("type: package\nmatch_type: regex\nsolvable_name: [n-e]\n")
    assert zypplocks.judge(regex, "kernel-default", "6.4.0-1", "x86_64") is False
