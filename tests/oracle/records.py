"""A content-addressed record of the kernel's answers, so that a boot of byte-identical inputs is
replayed instead of run again (as a build cache replays a compile).

TCG has no hardware to vary: a VM given the same kernel, initramfs, disks, firmware, command line
and QEMU answers the same way (what the oracle reads is what the kernel did with each module, not
when).  The key is a sha256 over everything QEMU is given and everything that decides what the
guest does: QEMU's binary, version and firmware directories, every argument (the run's temporary
directory written as ``<work>``), the bytes of every file an argument names (kernel, combined
initramfs with the oracle payload, ESP image, OVMF code and variable store), the oracle init and
loadmod.c (they are inside the initramfs too) and :data:`PROTOCOL`.  The inputs are made
reproducible for this (harness.pin_mtimes, SOURCE_DATE_EPOCH and a fixed serial for mtools), so
an unchanged tree hits and any changed byte misses.

The guest's clock (QEMU's RTC starts at the host's time) is the one input not keyed: Linux stopped
checking X.509 validity dates ("X.509: Remove certificate date checks"), and shim and OVMF verify
Authenticode with OpenSSL's X509_V_FLAG_NO_CHECK_TIME, so the date cannot change an answer; the
canary boots (conftest.py), fresh on every run and compared with their records, would show it if
it did.

Only the kernel's half is stored (QEMU's exit, the console, stderr, the times); the console is
parsed and judged live on every run.  A timed-out run is never stored.  A record is JSON with a
sha256 of its content, written to a temporary name and renamed; one that does not parse, whose
checksum or key differs, or whose protocol is older is ignored (the boot runs and rewrites it).
``DKMS_EXPORTER_ORACLE_REBOOT=1`` boots everything (and rewrites the records).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import artifacts

# Bump when the harness changes what a boot means without changing a keyed byte (how the console
# is captured, what a run result holds).
PROTOCOL = 1
REBOOT_ENV = "DKMS_EXPORTER_ORACLE_REBOOT"
FIELDS = ("status", "returncode", "seconds", "console", "stderr", "cpu_seconds")
FIRMWARE_DIRS = (Path("/usr/share/seabios"), Path("/usr/share/qemu"), Path("/usr/share/OVMF"))

_IDENTITY: dict[str, bytes] = {}
_DIGESTS: dict[tuple[str, int, int, int], bytes] = {}


def records_dir() -> Path:
    return artifacts.oracle_cache() / "records"


def reboot_forced() -> bool:
    """DKMS_EXPORTER_ORACLE_REBOOT set to anything but empty or 0: replay nothing."""
    return os.environ.get(REBOOT_ENV, "") not in ("", "0")


def file_digest(path: Path | str) -> bytes:
    """sha256 of a file, remembered by (path, inode, size, mtime): a replaced file is read again."""
    st = os.stat(path)
    k = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if k not in _DIGESTS:
        with open(path, "rb") as f:
            _DIGESTS[k] = hashlib.file_digest(f, "sha256").digest()
    return _DIGESTS[k]


def _emulator_identity(exe: str) -> bytes:
    """The emulator's binary and, for QEMU, its version and the firmware it loads by itself
    (SeaBIOS, the option ROMs of -kernel, OVMF): a package upgrade is a miss."""
    if exe not in _IDENTITY:
        path = shutil.which(exe) or exe
        h = hashlib.sha256(b"exe " + file_digest(path))
        if os.path.basename(path).startswith("qemu"):
            h.update(subprocess.run([path, "--version"], capture_output=True, check=False).stdout)
            for d in FIRMWARE_DIRS:
                for f in sorted(d.glob("*")) if d.is_dir() else ():
                    if f.is_file():
                        h.update(f.name.encode() + file_digest(f))
        _IDENTITY[exe] = h.digest()
    return _IDENTITY[exe]


def _paths(arg: str) -> list[str]:
    """Absolute paths inside one QEMU argument (``file=/x,readonly=on``, ``file:/x``, ``/x``)."""
    return [t.removeprefix("file:") for t in re.split(r"[,=]", arg) if t.removeprefix("file:").startswith("/")]


def key(argv: Sequence[str], work: Path, console: Path) -> str:
    """The record key of one QEMU run (see the module docstring)."""
    h = hashlib.sha256(f"oracle-record protocol {PROTOCOL}\0".encode())
    h.update(_emulator_identity(argv[0]))
    for src in (artifacts.INIT_SCRIPT, artifacts.LOADER_SOURCE):
        h.update(src.name.encode() + file_digest(src))
    w = str(work)
    for arg in argv[1:]:
        h.update(b"arg " + arg.replace(w, "<work>").encode() + b"\0")
        for path in _paths(arg):
            if path != str(console) and os.path.isfile(path):
                h.update(b"file " + path.replace(w, "<work>").encode() + b"\0" + file_digest(path))
    return h.hexdigest()


def _path(k: str) -> Path:
    return records_dir() / k[:2] / f"{k}.json"


def _checksum(run: dict) -> str:
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()


def load(k: str) -> dict | None:
    """The recorded run of key ``k``, or None: missing, damaged or of another protocol."""
    try:
        doc = json.loads(_path(k).read_text())
        run = {f: doc["run"][f] for f in FIELDS}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if doc.get("protocol") != PROTOCOL or doc.get("key") != k or doc.get("sha256") != _checksum(run) \
            or run["status"] != "exited":
        return None
    return run


def store(k: str, run: dict) -> None:
    """Write a finished run atomically (a timed-out one is not an answer and is not stored)."""
    if run["status"] != "exited":
        return
    run = {f: run[f] for f in FIELDS}
    path = _path(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"protocol": PROTOCOL, "key": k, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "sha256": _checksum(run), "run": run}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
