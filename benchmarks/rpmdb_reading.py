#!/usr/bin/env python3
"""How fast does the exporter read an rpm database, next to `rpm -qa` on the same file?

Usage:  .venv/bin/python benchmarks/rpmdb_reading.py [--packages N] [--repeat N]

Builds (once, cached by tests/rpmtools.py) a few real packages with rpmbuild, installs them with
`rpm --root`, then fills a sqlite rpmdb with N copies of their headers (a RHEL 9 host has
~1,000-2,000 packages) and loads the same blobs into a Berkeley DB hash Packages file with
db_load (RHEL 8). Prints the wall time of: the exporter's cold read (parse every header), its warm
packages collector (an unchanged database: identity check only), `rpm -qa` and `rpm -qa` with
bdb_ro, and the ratios.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from rpmtools import Spec, install, rpmbuild  # noqa: E402

from exporter.config import Config  # noqa: E402
from exporter.distro.rhel import _read_bdb, _read_sqlite  # noqa: E402
from exporter.host.rootfs import HostFS  # noqa: E402
from exporter.scrape.scraper import Scraper  # noqa: E402


def build(root: Path, n: int) -> None:
    specs = [Spec("kernel-core", "5.14.0", "427.13.1.el9_4", provides=("kernel = 5.14.0-427.13.1.el9_4",),
                  files={f"/lib/modules/5.14.0-427.13.1.el9_4.x86_64/f{i}": f"{i}" for i in range(300)}),
             Spec("glibc", "2.34", "100.el9", files={f"/usr/lib64/lib{i}.so": "x" for i in range(120)}),
             Spec("tool", "1.0", "1", files={"/usr/bin/tool": "#!/bin/sh\n"})]
    install(root, *(rpmbuild(s) for s in specs), justdb=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/os-release").write_text('ID="rhel"\nVERSION_ID="9.4"\n')
    db = root / "var/lib/rpm/rpmdb.sqlite"
    con = sqlite3.connect(db)
    blobs = [b for (b,) in con.execute("SELECT blob FROM Packages")]
    con.execute("DELETE FROM Packages")
    con.executemany("INSERT INTO Packages(hnum, blob) VALUES (?, ?)", [(i + 1, blobs[i % len(blobs)]) for i in range(n)])
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "HEADER=END", " 00000000", " " + struct.pack("<I", n).hex()]
    for i in range(n):
        lines += [" " + struct.pack("<I", i + 1).hex(), " " + blobs[i % len(blobs)].hex()]
    (root / "dump").write_text("\n".join(lines + ["DATA=END"]) + "\n")
    bdb = root / "rhel8/var/lib/rpm"
    bdb.mkdir(parents=True)
    subprocess.run(["db5.3_load", "-f", str(root / "dump"), str(bdb / "Packages")], check=True)


def times(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "host"
        build(root, args.packages)
        db = root / "var/lib/rpm/rpmdb.sqlite"
        bdb = root / "rhel8/var/lib/rpm/Packages"
        cold_sqlite = times(lambda: _read_sqlite(db, "/var/lib/rpm/rpmdb.sqlite"), args.repeat)
        cold_bdb = times(lambda: _read_bdb(bdb, "/var/lib/rpm/Packages"), args.repeat)
        scraper = Scraper(HostFS(str(root)), Config())
        scraper.scrape()
        warm = statistics.median(scraper.scrape().facts.runs["packages"].duration for _ in range(args.repeat))
        rpm_qa = times(lambda: subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-qa"],
                                              stdout=subprocess.DEVNULL, check=True), args.repeat)
        rpm_bdb = times(lambda: subprocess.run(["rpm", "--root", str(root / "rhel8"), "--dbpath", "/var/lib/rpm",
                                                "--define", "_db_backend bdb_ro", "-qa"], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, check=True), args.repeat)
    print(f"{args.packages} headers, median of {args.repeat}")
    print(f"  exporter, sqlite, cold      {cold_sqlite * 1000:8.1f} ms   rpm -qa          {rpm_qa * 1000:8.1f} ms"
          f"   ratio {cold_sqlite / rpm_qa:.2f}")
    print(f"  exporter, Berkeley DB, cold {cold_bdb * 1000:8.1f} ms   rpm -qa (bdb_ro) {rpm_bdb * 1000:8.1f} ms"
          f"   ratio {cold_bdb / rpm_bdb:.2f}")
    print(f"  exporter, packages collector, warm {warm * 1000:.2f} ms   ratio to rpm -qa {warm / rpm_qa:.3f}")


if __name__ == "__main__":
    main()
