"""rpm's own ndb backend for tests: Debian's rpm 4.18 is built without ndb (`rpm --showrc`:
"available backends: sqlite bdb_ro dummy"), so SUSE's Packages.db cannot be written by
`rpmdb --rebuilddb` here.  Instead the tests compile rpm's ``lib/backend/ndb/rpmpkg.c`` from
Debian's source package of the installed rpm (``apt-get source --download-only`` with the
test cache's own deb-src list: the machine's apt sources are never edited) together with
tests/ndb/ndbtool.c, a command-line driver, and store real headers, written by the real rpm,
with rpm's own code.  Built once per source version and driver, under the shared test cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import tarfile
import tempfile
from pathlib import Path

import modbuild
from testkit import require_tool

HERE = Path(__file__).resolve().parent / "ndb"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _mirror() -> str:
    """The Debian mirror the machine's apt uses (deb.debian.org when none is named)."""
    texts = [p.read_text(errors="replace") for p in Path("/etc/apt").glob("sources.list*") if p.is_file()]
    texts += [p.read_text(errors="replace") for p in Path("/etc/apt/sources.list.d").glob("*") if p.is_file()]
    for text in texts:
        for m in re.finditer(r"(?:URIs:|^deb)\s+(?:\[[^\]]*\]\s+)?(https?://\S+/debian)/?\s", text, re.M):
            return m[1]
    return "http://deb.debian.org/debian"


def rpm_source() -> Path:
    """Debian's orig tarball of the installed rpm (downloaded once, signature-checked by apt)."""
    from testkit import slow_artifact
    slow_artifact("Debian's rpm source package (apt-get source) and a C build of its rpmpkg.c")
    version = subprocess.run([require_tool("dpkg-query"), "-W", "-f", "${source:Version}", "rpm"],
                             capture_output=True, text=True, check=True).stdout.strip()
    upstream = version.split(":")[-1].rsplit("-", 1)[0]
    dest = modbuild.cache_dir() / "rpm-source" / version
    found = sorted(dest.glob(f"rpm_{upstream}.orig.tar.*"))
    if found:
        return found[0]
    apt = modbuild.cache_dir() / "rpm-source" / "apt"
    for d in ("lists/partial", "cache/archives/partial"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    suite = subprocess.run(["sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME"], capture_output=True,
                           text=True).stdout.strip() or "bookworm"
    (apt / "sources.list").write_text(f"deb-src [signed-by={KEYRING}] {_mirror()} {suite} main\n")
    opts = [f"-oDir::Etc::SourceList={apt}/sources.list", f"-oDir::Etc::SourceParts={apt}/none",
            f"-oDir::State::Lists={apt}/lists", f"-oDir::Cache={apt}/cache", "-oDebug::NoLocking=1"]
    apt_get = require_tool("apt-get")
    subprocess.run([apt_get, *opts, "update"], capture_output=True, text=True, check=True, timeout=600)
    with tempfile.TemporaryDirectory(dir=apt) as tmp:
        r = subprocess.run([apt_get, *opts, "source", "--download-only", f"rpm={version}"], cwd=tmp,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise AssertionError(f"apt-get source rpm={version} failed:\n{r.stderr[-2000:]}")
        (orig,) = Path(tmp).glob(f"rpm_{upstream}.orig.tar.*")
        dest.mkdir(parents=True, exist_ok=True)
        os.replace(orig, dest / orig.name)
    return sorted(dest.glob(f"rpm_{upstream}.orig.tar.*"))[0]


def ndbtool() -> Path:
    """The compiled driver around rpm's rpmpkg.c (cached by the sources' and the driver's digest)."""
    tarball = rpm_source()
    digest = hashlib.sha256(tarball.name.encode())
    for f in sorted(HERE.rglob("*.[ch]")):
        digest.update(str(f.relative_to(HERE)).encode() + b"\0" + f.read_bytes())
    binary = modbuild.cache_dir() / "rpm-source" / f"ndbtool-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if re.search(r"/lib/backend/ndb/rpmpkg\.[ch]$", m.name)]
            if len(members) != 2:
                raise AssertionError(f"{tarball.name} has no lib/backend/ndb/rpmpkg.[ch]")
            for m in members:
                src = tar.extractfile(m)
                (Path(tmp) / Path(m.name).name).write_bytes(src.read())
        out = Path(tmp) / "ndbtool"
        r = subprocess.run([require_tool("gcc"), "-O2", "-Wall", f"-I{HERE / 'stub'}", f"-I{tmp}", "-o", str(out),
                            str(HERE / "ndbtool.c"), str(Path(tmp) / "rpmpkg.c")], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"compiling rpm's rpmpkg.c failed:\n{r.stderr[-3000:]}")
        os.replace(out, binary)
    return binary


def run(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(ndbtool()), str(db), *args], capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"ndbtool {db} {' '.join(args)}: exit {proc.returncode}\n{proc.stderr.decode()}")
    return proc


def sqlite_blobs(rpmdb: Path) -> dict[int, bytes]:
    """hnum -> header blob of an rpmdb.sqlite the real rpm wrote (read-only, immutable)."""
    con = sqlite3.connect(f"file:{rpmdb}?mode=ro", uri=True)
    try:
        return {h: bytes(b) for h, b in con.execute("SELECT hnum, blob FROM Packages")}
    finally:
        con.close()


def write_ndb(db: Path, blobs: dict[int, bytes], erase: tuple[int, ...] = ()) -> None:
    """Packages.db holding ``blobs`` under their header numbers, stored by rpm's rpmpkgPut (then
    ``erase`` removed by rpmpkgDel: free slots and holes, as an erased package leaves them)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for hnum, blob in sorted(blobs.items()):
            path = Path(tmp) / str(hnum)
            path.write_bytes(blob)
            run(db, "put", str(hnum), str(path))
    for hnum in erase:
        run(db, "del", str(hnum))


def ndb_bytes(blobs: dict[int, bytes], generation: int = 1) -> bytes:
    """A Packages.db holding ``blobs`` laid out as rpmpkgPut lays out a fresh file (slot pages,
    then the blobs in header-number order), for the example hosts, which are built offline; the
    slow test_ndb.py::test_offline_writer_is_read_by_rpm checks rpm's own code reads it back."""
    import struct
    import zlib
    slots_per_page = 4096 // 16
    pages = max(1, -(-(len(blobs) + 2) // slots_per_page))
    out = bytearray(4096 * pages)
    struct.pack_into("<4sIIII", out, 0, b"RpmP", 0, generation, pages, max(blobs, default=0) + 1)
    for i in range(2, pages * slots_per_page):
        out[i * 16:i * 16 + 4] = b"Slot"
    for n, (hnum, blob) in enumerate(sorted(blobs.items())):
        blkoff = len(out) // 16
        blkcnt = -(-(16 + len(blob) + 12) // 16)
        record = bytearray(blkcnt * 16)
        struct.pack_into("<4sIII", record, 0, b"BlbS", hnum, generation, len(blob))
        record[16:16 + len(blob)] = blob
        struct.pack_into("<II4s", record, len(record) - 12, zlib.adler32(bytes(record[:-12])), len(blob), b"BlbE")
        struct.pack_into("<III", out, (n + 2) * 16 + 4, hnum, blkoff, blkcnt)
        out += record
    return bytes(out)
