"""SUSE's ndb rpmdb (Packages.db): headers written by the real rpm, stored by rpm's own ndb code
(lib/backend/ndb/rpmpkg.c, compiled from Debian's rpm source: tests/ndbtools.py), read by the
exporter without rpm's lock and compared with `rpm -qa` of the same headers and with rpm's own
rpmpkgList / rpmpkgGet / rpmpkgVerify."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import ndbtools
import rpmtools
from exporter.config import Config
from exporter.distro.suse import SUSE
from exporter.formats.ndb import NdbError, ndb_packages
from exporter.host.cache import FileCache
from exporter.host.context import Context
from exporter.host.rootfs import HostFS

FIXTURE = Path(__file__).resolve().parent / "data" / "ndb" / "Packages.db"
NDB = "usr/lib/sysimage/rpm/Packages.db"
K1 = "6.4.0-150600.23.25-default"

PACKAGES = [
    rpmtools.Spec("kernel-default", "6.4.0", "150600.23.25.1", provides=("multiversion(kernel)",),
                  files={f"/usr/lib/modules/{K1}/kernel/fs/dummy.ko": b"x"}),
    rpmtools.Spec("kernel-default", "6.4.0", "150600.23.30.1", provides=("multiversion(kernel)",)),
    rpmtools.Spec("kernel-default-devel", "6.4.0", "150600.23.25.1", arch="noarch"),
    rpmtools.Spec("hello-kmp-default", "1.0_k6.4.0_150600.23.25", "150600.1.1",
                  files={f"/lib/modules/{K1}/updates/hello.ko": b"\x7fELF not really"}),
    rpmtools.Spec("vim-data", "9.1.0330", "1", epoch=2, arch="noarch"),
    rpmtools.Spec("dkms", "3.0.12", "150600.1.2", arch="noarch"),
]


def context(root: Path) -> Context:
    return Context(HostFS(str(root)), FileCache(), Config())


def read(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return list(ndb_packages(lambda off, n: os.pread(fd, n, off), size))
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def rpm_root(tmp_path_factory) -> Path:
    """A tree whose sqlite rpmdb the real rpm wrote (faketime: fixed install times)."""
    root = tmp_path_factory.mktemp("rpmroot")
    rpmtools.install(root, *(rpmtools.rpmbuild(s) for s in PACKAGES), justdb=True, faketime=True)
    return root


@pytest.fixture(scope="module")
def suse_root(rpm_root, tmp_path_factory) -> Path:
    """A SUSE-layout tree: the same headers in /usr/lib/sysimage/rpm/Packages.db, stored by rpm's
    rpmpkgPut, one erased again by rpmpkgDel (a free slot and a hole, as `rpm -e` leaves)."""
    root = tmp_path_factory.mktemp("suse")
    blobs = ndbtools.sqlite_blobs(rpm_root / "var/lib/rpm/rpmdb.sqlite")
    ndbtools.write_ndb(root / NDB, blobs, erase=(erased(rpm_root),))
    return root


def erased(rpm_root: Path) -> int:
    """The header number of dkms: erased again from the ndb copies."""
    return next(int(r[0]) for r in rpmtools.query_all(rpm_root) if r[1] == "dkms")


@pytest.mark.slow
def test_packages_are_rpms(rpm_root, suse_root):
    """The exporter's packages from Packages.db equal `rpm -qa` of the headers it holds."""
    expected = [r for r in rpmtools.query_all(rpm_root) if r[1] != "dkms"]
    db = SUSE.database(context(suse_root))
    assert db.backend == "ndb" and db.bad == ()
    ours = [(str(p.hnum), p.name, str(p.epoch) if p.epoch is not None else "(none)", p.version, p.release, p.arch,
             str(p.installtime)) for p in db.packages]
    assert ours == expected
    facts = SUSE.read_packages(context(suse_root))
    assert facts.database == "/" + NDB and not facts.findings       # two kernels: multiversion, no duplicate
    assert [m.path for m in facts.module_files] == [f"/lib/modules/{K1}/updates/hello.ko"]


@pytest.mark.slow
def test_list_and_blobs_are_rpmpkgs(suse_root):
    db = suse_root / NDB
    listed = sorted(int(x) for x in ndbtools.run(db, "list").stdout.split())
    ours = read(db)
    assert [h for h, _ in ours] == listed and len(listed) == len(PACKAGES) - 1
    for hnum, blob in ours:
        assert blob == ndbtools.run(db, "get", str(hnum)).stdout
    ndbtools.run(db, "verify")


@pytest.mark.slow
def test_damage_is_refused_where_rpm_refuses_it(suse_root, tmp_path):
    """A flipped byte in one blob: rpmpkgVerify fails and that header is a corrupt-header finding,
    the others still read.  A truncated file: rpm cannot open it, the exporter records an error."""
    flipped = tmp_path / "flipped" / NDB
    flipped.parent.mkdir(parents=True)
    shutil.copyfile(suse_root / NDB, flipped)
    ours = read(flipped)
    _, blob = ours[1]
    data = bytearray(flipped.read_bytes())
    at = data.find(blob) + len(blob) // 2
    data[at] ^= 0x40
    flipped.write_bytes(bytes(data))
    assert ndbtools.run(flipped, "verify", check=False).returncode != 0
    got = read(flipped)
    assert [isinstance(b, NdbError) for _, b in got] == [False, True, False, False, False]
    facts = SUSE.read_packages(context(tmp_path / "flipped"))
    assert [f.problem for f in facts.findings] == ["corrupt-header"] and len(facts.packages) == 4

    cut = tmp_path / "cut" / NDB
    cut.parent.mkdir(parents=True)
    whole = (suse_root / NDB).read_bytes()
    cut.write_bytes(whole[:len(whole) // 32 * 16])        # half: the blobs past it are gone
    assert ndbtools.run(cut, "list", check=False).returncode != 0
    ctx = context(tmp_path / "cut")
    facts = SUSE.read_packages(ctx)
    assert facts.manager == "rpm" and facts.packages == () and ctx.errors


@pytest.mark.slow
def test_committed_fixture_is_what_rpm_reads(rpm_root, tmp_path):
    """tests/data/ndb/Packages.db (the quick tier's mutation input) reads the same in rpm's code."""
    if os.environ.get("UPDATE_NDB_FIXTURE"):
        FIXTURE.unlink(missing_ok=True)
        ndbtools.write_ndb(FIXTURE, ndbtools.sqlite_blobs(rpm_root / "var/lib/rpm/rpmdb.sqlite"),
                           erase=(erased(rpm_root),))
    listed = sorted(int(x) for x in ndbtools.run(FIXTURE, "list").stdout.split())
    assert [h for h, _ in read(FIXTURE)] == listed
    ndbtools.run(FIXTURE, "verify")


# --- the quick tier: the committed file, damaged every way -------------------------------------

def test_fixture_reads():
    got = read(FIXTURE)
    assert len(got) == len(PACKAGES) - 1 and not any(isinstance(b, NdbError) for _, b in got)


@pytest.mark.parametrize("cut", [0, 16, 31, 4096, 4100, -12, -1])
def test_truncated_fixture_is_an_error_never_a_crash(tmp_path, cut):
    data = FIXTURE.read_bytes()
    path = tmp_path / "Packages.db"
    path.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    try:
        got = read(path)
    except NdbError:
        return
    assert any(isinstance(b, NdbError) for _, b in got) or len(got) < 5


def test_every_byte_flip_is_answered(tmp_path):
    """Each byte of the slot page and the first blob flipped: a clean NdbError for the file or
    for that blob, or the same packages (the byte was padding or a free slot's)."""
    data = FIXTURE.read_bytes()
    good = read(FIXTURE)
    for at in list(range(0, 200)) + list(range(4096, 4096 + 600, 3)):
        bad = bytearray(data)
        bad[at] ^= 0xFF
        path = tmp_path / "Packages.db"
        path.write_bytes(bytes(bad))
        try:
            got = read(path)
        except NdbError:
            continue
        assert got == good or any(isinstance(b, NdbError) for _, b in got) or \
            [h for h, _ in got] != [h for h, _ in good], at


@pytest.mark.slow
def test_offline_writer_is_read_by_rpm(rpm_root, tmp_path):
    """The example hosts' Packages.db (tests/ndbtools.py ndb_bytes, built offline) is a file rpm's
    own rpmpkg.c opens, lists, verifies and returns the same blobs from."""
    blobs = ndbtools.sqlite_blobs(rpm_root / "var/lib/rpm/rpmdb.sqlite")
    many = {**blobs, **{100 + i: blob for i, blob in enumerate(list(blobs.values()) * 60)}}   # > 1 slot page
    for content in (blobs, many):
        db = tmp_path / f"{len(content)}.db"
        db.write_bytes(ndbtools.ndb_bytes(content))
        ndbtools.run(db, "verify")
        assert sorted(int(x) for x in ndbtools.run(db, "list").stdout.split()) == sorted(content)
        for hnum in sorted(content)[:3] + sorted(content)[-2:]:
            assert ndbtools.run(db, "get", str(hnum)).stdout == content[hnum]
        assert [(h, b) for h, b in read(db)] == sorted(content.items())
