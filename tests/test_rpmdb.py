"""The rpmdb readers against the real rpm: packages built with rpmbuild, installed with
`rpm --root` (a sqlite rpmdb), the same headers loaded into Berkeley DB hash files by
Berkeley DB's own db_load (RHEL 8's format, both byte orders, two page sizes) and read back
by rpm's bdb_ro backend; header fields, provides and module files against `rpm -q --qf`,
`--provides` and `-ql`; damaged files; and a database rpm writes while it is being read."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import require_tool
from rpmtools import DBPATH, Spec, install, query_all, rpm, rpmbuild
from exporter.formats.rpmdb import (InstalledPackage, RpmdbError, bdb_packages, identify,
                                    installed_package)
from exporter.formats.rpmheader import RpmHeaderError, parse_header
from exporter.host.reader import ChangedWhileRead, query_sqlite

K1, K2 = "5.14.0-427.13.1.el9_4.x86_64", "5.14.0-503.11.1.el9_5.x86_64"


def specs() -> list[Spec]:
    many = {f"/usr/share/doc/bulky/file-{i:05d}-{'x' * 40}.txt": f"{i}\n" for i in range(1500)}
    return [
        Spec("kernel-core", "5.14.0", "427.13.1.el9_4", provides=(f"kernel = 5.14.0-427.13.1.el9_4",
                                                              f"kernel-uname-r = {K1}", "installonlypkg(kernel)"),
             files={f"/lib/modules/{K1}/vmlinuz": b"MZ image", f"/lib/modules/{K1}/kernel/drivers/a.ko.xz": b"a"}),
        Spec("kernel-core", "5.14.0", "503.11.1.el9_5", provides=(f"kernel = 5.14.0-503.11.1.el9_5",
                                                              f"kernel-uname-r = {K2}", "installonlypkg(kernel)"),
             files={f"/lib/modules/{K2}/vmlinuz": b"MZ image 2"}),
        Spec("kernel-devel", "5.14.0", "427.13.1.el9_4", files={f"/usr/src/kernels/{K1}/Makefile": "all:\n"}),
        Spec("kmod-foo", "2.1", "3.el9", epoch=1, provides=("kmod(foo.ko) = 2.1",),
             files={f"/lib/modules/{K1}/extra/foo/foo.ko": b"\x7fELF foo", f"/lib/modules/{K1}/extra/foo/bar.ko.xz": b"b",
                    "/etc/depmod.d/foo.conf": "override foo * weak-updates/foo\n"}),
        Spec("bulky", "0.1~rc1^git3", "1", arch="noarch", files=many),
        Spec("akmod-baz", "1.0", "1.fc39", files={"/usr/src/akmods/baz-kmod-1.0-1.fc39.src.rpm": b"srpm"}),
        Spec("zero-epoch", "1", "1", epoch=0),
    ]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rpmroot")
    install(root, *(rpmbuild(s) for s in specs()))
    return root


def sqlite_rows(root: Path) -> list[tuple[int, bytes]]:
    return query_sqlite(root / DBPATH.lstrip("/") / "rpmdb.sqlite", "SELECT hnum, blob FROM Packages", 1 << 30)


def as_rpm_prints(p: InstalledPackage) -> tuple[str, ...]:
    """The exporter's package in `rpm -qa --qf` words ("(none)" for an absent tag)."""
    none = "(none)"
    return (str(p.hnum), p.name, none if p.epoch is None else str(p.epoch), p.version, p.release,
            p.arch or none, none if p.installtime is None else str(p.installtime))


def test_sqlite_reader_lists_what_rpm_lists(tree):
    mine = sorted((as_rpm_prints(installed_package(h, b)) for h, b in sqlite_rows(tree)), key=lambda r: int(r[0]))
    theirs = query_all(tree)
    assert len(theirs) == len(specs())
    assert mine == theirs


def test_provides_and_module_files_are_rpms(tree):
    for hnum, blob in sqlite_rows(tree):
        p = installed_package(hnum, blob)
        provides = rpm(tree, "-q", "--qf", "[%{PROVIDENAME}\n]", p.nevra).stdout.split()
        assert list(p.provides) == provides, p.name
        files = rpm(tree, "-ql", p.nevra).stdout.splitlines()
        expected = [f for f in files if "/lib/modules/" in f and "/extra/" in f and ".ko" in f]
        assert sorted(p.module_files) == sorted(expected), p.name
    kmod = next(installed_package(h, b) for h, b in sqlite_rows(tree) if installed_package(h, b).name == "kmod-foo")
    assert kmod.evr == "1:2.1-3.el9" and len(kmod.module_files) == 2


def test_a_big_header_is_parsed_whole(tree):
    """bulky's header (1,500 file names) spans many Berkeley DB overflow pages below."""
    blob = next(b for h, b in sqlite_rows(tree) if installed_package(h, b).name == "bulky")
    assert len(blob) > 60_000
    count = rpm(tree, "-ql", "bulky").stdout.count("\n")
    from exporter.formats.rpmheader import RPMTAG_BASENAMES
    assert len(parse_header(blob).strings(RPMTAG_BASENAMES)) == count == 1500


# ---------------------------------------------------------------------------------------------
# Berkeley DB: files written by Berkeley DB itself (db_load), read by rpm's bdb_ro


def bdb_file(rows: list[tuple[int, bytes]], path: Path, lorder: int, pagesize: int) -> Path:
    """A RHEL 8-style Packages file: Berkeley DB hash, key = header number (4 bytes, the file's
    byte order), value = blob; key 0 holds the instance counter as rpm's db3 backend kept it."""
    order = "<" if lorder == 1234 else ">"
    lines = ["VERSION=3", "format=bytevalue", "type=hash", f"db_pagesize={pagesize}", "HEADER=END",
             " " + struct.pack(order + "I", 0).hex(), " " + struct.pack(order + "I", max(h for h, _ in rows)).hex()]
    for hnum, blob in rows:
        lines += [" " + struct.pack(order + "I", hnum).hex(), " " + blob.hex()]
    path.parent.mkdir(parents=True, exist_ok=True)
    dump = path.parent.parent / f"{path.name}.dump"
    dump.write_text("\n".join(lines + ["DATA=END"]) + "\n")
    proc = subprocess.run([require_tool("db5.3_load"), "-c", f"db_lorder={lorder}", "-f", str(dump), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return path


def read_bdb(path: Path) -> list[tuple[int, bytes]]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        return list(bdb_packages(lambda off, n: os.pread(f.fileno(), n, off), size))


@pytest.mark.parametrize("lorder,pagesize", [(1234, 4096), (4321, 4096), (1234, 512), (4321, 16384)])
def test_berkeley_db_reader_agrees_with_rpms_bdb_ro(tree, tmp_path, lorder, pagesize):
    rows = sqlite_rows(tree)
    root = tmp_path / "rhel8"
    path = bdb_file(rows, root / "var/lib/rpm/Packages", lorder, pagesize)
    assert identify(path.read_bytes()[:512]) == "bdb-hash"
    mine = read_bdb(path)
    assert sorted(mine) == sorted(rows)       # the same blobs, byte for byte
    theirs = query_all(root, backend="bdb_ro")
    assert sorted((as_rpm_prints(installed_package(h, b)) for h, b in mine), key=lambda r: int(r[0])) == theirs


def test_many_packages_fill_many_buckets(tree, tmp_path):
    """2,000 headers: the hash splits into hundreds of buckets with overflow chains."""
    rows = sqlite_rows(tree)
    many = [(i + 1, rows[i % len(rows)][1]) for i in range(2000)]
    path = bdb_file(many, tmp_path / "r/var/lib/rpm/Packages", 1234, 4096)
    assert sorted(read_bdb(path)) == sorted(many)
    assert len(query_all(tmp_path / "r", backend="bdb_ro")) == 2000


def test_identify_by_magic(tree, tmp_path):
    db = (tree / "var/lib/rpm/rpmdb.sqlite").read_bytes()[:512]
    assert identify(db) == "sqlite"
    assert identify(b"RpmP" + bytes(60)) == "ndb"
    assert identify(b"\0" * 512) is None


def test_damaged_berkeley_db_files_are_refused_never_crash(tree, tmp_path):
    rows = sqlite_rows(tree)
    path = bdb_file(rows, tmp_path / "d/Packages", 1234, 4096)
    good = path.read_bytes()
    rng = random.Random(13)
    outcomes = {"same": 0, "refused": 0, "other rows": 0}
    for trial in range(400):
        data = bytearray(good)
        if trial % 4 == 0:
            data = data[: rng.randrange(0, len(data))]
        else:
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            got = list(bdb_packages(lambda off, n: bytes(data[off:off + n]), len(data)))
            for h, b in got:
                try:
                    installed_package(h, b)
                except RpmHeaderError:
                    pass
            outcomes["same" if sorted(got) == sorted(rows) else "other rows"] += 1
        except RpmdbError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100, outcomes


def test_a_loop_in_the_bucket_chain_is_refused(tree, tmp_path):
    path = bdb_file(sqlite_rows(tree), tmp_path / "l/Packages", 1234, 4096)
    data = bytearray(path.read_bytes())
    pagesize = 4096
    first = next(p for p in range(1, len(data) // pagesize) if data[p * pagesize + 25] == 13)
    data[first * pagesize + 16:first * pagesize + 20] = struct.pack("<I", first)   # next_pgno -> itself
    with pytest.raises(RpmdbError, match="twice"):
        list(bdb_packages(lambda off, n: bytes(data[off:off + n]), len(data)))


# ---------------------------------------------------------------------------------------------
# Header blobs: rpm's own checks


def test_damaged_headers_are_refused_with_rpms_reasons(tree):
    blob = next(b for h, b in sqlite_rows(tree) if installed_package(h, b).name == "kmod-foo")
    with pytest.raises(RpmHeaderError, match="blob size"):
        parse_header(blob[:-1])
    with pytest.raises(RpmHeaderError, match="hdr tags"):
        parse_header(struct.pack(">II", 0x10000, 0) + blob[8:])
    il = struct.unpack(">I", blob[:4])[0]
    trailer_at = 8 + 16 * il + struct.unpack(">i", blob[16:20])[0]
    bad = bytearray(blob)
    bad[trailer_at:trailer_at + 4] = struct.pack(">I", 62)
    with pytest.raises(RpmHeaderError, match="region trailer"):
        parse_header(bytes(bad))
    rng = random.Random(7)
    refused = 0
    for _ in range(500):
        data = bytearray(blob)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(8 + 16 * il)] = rng.randrange(256)   # the index: tags, types, offsets, counts
        try:
            p = installed_package(1, bytes(data))
            assert isinstance(p.name, str)
        except RpmHeaderError:
            refused += 1
    assert refused > 200


# ---------------------------------------------------------------------------------------------
# Read while rpm writes


def test_reading_while_rpm_installs_sees_whole_transactions(tmp_path):
    """rpm installs 12 packages one transaction at a time while the reader reads as fast as it
    can: every read is a set of packages rpm had committed (a prefix of the install order), or a
    ChangedWhileRead to retry; never an error, never a package half there."""
    root = tmp_path / "busy"
    first = rpmbuild(Spec("base-pkg"))
    install(root, first)
    pkgs = [rpmbuild(Spec(f"busy-{i:02d}", files={f"/opt/busy/{i}/{j}": f"{j}\n" for j in range(200)}))
            for i in range(12)]
    order = ["base-pkg"] + [f"busy-{i:02d}" for i in range(12)]
    db = root / "var/lib/rpm/rpmdb.sqlite"
    done = threading.Event()
    seen: list[tuple[str, ...]] = []
    retries = 0

    def writer():
        try:
            for p in pkgs:
                install(root, p)
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 300
    while not done.is_set() and time.monotonic() < deadline:
        try:
            names = tuple(sorted(installed_package(h, b).name for h, b in
                                 query_sqlite(db, "SELECT hnum, blob FROM Packages", 1 << 30)))
            seen.append(names)
        except ChangedWhileRead:
            retries += 1
    t.join()
    prefixes = {tuple(sorted(order[:n])) for n in range(1, len(order) + 1)}
    assert seen and all(s in prefixes for s in seen), [s for s in seen if s not in prefixes][:3]
    assert len(set(seen)) >= 3, (len(seen), retries)   # it did read between transactions
    final = tuple(sorted(installed_package(h, b).name for h, b in query_sqlite(db, "SELECT hnum, blob FROM Packages",
                                                                                  1 << 30)))
    assert final == tuple(sorted(order))


def test_sqlite_reader_creates_no_files_and_takes_no_rpm_lock(tree, tmp_path):
    root = tmp_path / "ro"
    (root / "var/lib/rpm").mkdir(parents=True)
    src = tree / "var/lib/rpm/rpmdb.sqlite"
    con = sqlite3.connect(src)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    (root / "var/lib/rpm/rpmdb.sqlite").write_bytes(src.read_bytes())
    before = sorted(os.listdir(root / "var/lib/rpm"))
    rows = query_sqlite(root / "var/lib/rpm/rpmdb.sqlite", "SELECT hnum FROM Packages", 1 << 30)
    assert len(rows) == len(specs())
    assert sorted(os.listdir(root / "var/lib/rpm")) == before == ["rpmdb.sqlite"]


def test_damaged_headers_rpm_skips_are_the_ones_refused(tree, tmp_path):
    """600 headers damaged at random in their index and data, put into a copy of the sqlite rpmdb:
    the ones `rpm -qa` skips ("rpmdbNextIterator: skipping h# N": a structural check, or a
    SHA256HEADER/SHA1HEADER digest that no longer matches the region) are exactly the ones the
    parser refuses, and the rest read the same name, version and release as rpm prints."""
    rows = sqlite_rows(tree)
    good = [b for _, b in rows]
    rng = random.Random(21)
    damaged = []
    for i in range(600):
        blob = bytearray(good[i % len(good)])
        il = struct.unpack(">I", blob[:4])[0]
        trailer = 8 + 16 * il + struct.unpack(">i", blob[16:20])[0]
        ril = -struct.unpack(">i", blob[trailer + 8:trailer + 12])[0] // 16
        for _ in range(rng.randrange(1, 4)):
            if i % 2:      # the dribbles' index entries (INSTALLTIME...): no digest covers them
                where = rng.randrange(8 + 16 * ril, 8 + 16 * il)
            else:
                where = rng.randrange(8, 8 + 16 * il) if rng.random() < 0.7 else rng.randrange(len(blob))
            blob[where] = rng.randrange(256)
        damaged.append((i + 1, bytes(blob)))
    root = tmp_path / "damaged"
    (root / "var/lib/rpm").mkdir(parents=True)
    src = tree / "var/lib/rpm/rpmdb.sqlite"
    con = sqlite3.connect(src)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    db = root / "var/lib/rpm/rpmdb.sqlite"
    db.write_bytes(src.read_bytes())
    con = sqlite3.connect(db)
    con.execute("DELETE FROM Packages")
    con.executemany("INSERT INTO Packages(hnum, blob) VALUES (?, ?)", damaged)
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    proc = rpm(root, "-qa", "--qf", "%{DBINSTANCE}\t%{NAME}\t%{VERSION}\t%{RELEASE}\n", check=False)
    skipped = {int(n) for n in re.findall(r"skipping h#\s*(\d+)", proc.stderr)}
    read = {int(line.split("\t")[0]): tuple(line.split("\t")[1:]) for line in proc.stdout.splitlines() if line}
    mine_refused, mine_read = set(), {}
    for hnum, blob in damaged:
        try:
            p = installed_package(hnum, blob)
            mine_read[hnum] = (p.name, p.version, p.release)
        except RpmHeaderError:
            mine_refused.add(hnum)
    assert len(skipped) > 200 and len(read) > 20, (len(skipped), len(read))
    assert mine_refused == skipped, (sorted(mine_refused - skipped)[:5], sorted(skipped - mine_refused)[:5])
    assert {h: v for h, v in mine_read.items() if h in read} == read
