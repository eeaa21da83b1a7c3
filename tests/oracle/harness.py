"""Boot a real Debian kernel under QEMU (TCG) and read what it did with the modules.

A boot is described by a :class:`BootSpec`: kernel K's real vmlinuz and initramfs from a host
tree, the module names to try, and how to boot (straight from QEMU, or through OVMF + shim + grub
with Secure Boot on).  :func:`build_payload` makes the small cpio that is appended to K's
initramfs (the kernel unpacks concatenated archives): busybox, the loader, oracle-init.sh, a plan,
and the tree's /lib/modules/K index files with the module files the plan needs (resolved by the
host's kmod in the tree's modules.dep).  :func:`boot` runs QEMU with a timeout, keeps the serial
console, and :func:`parse_console` turns the ``ORACLE ...`` lines into a :class:`KernelView`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import artifacts, records

DIRECT_TIMEOUT = 180.0   # ~12-20 s normally; TCG on a loaded 2-core machine can be 5x slower
SECURE_TIMEOUT = 420.0   # ~35-45 s normally (OVMF, shim, grub reading 40 MB through EFI calls)
SHIM_LOCK_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"
CMDLINE = "console=ttyS0 panic=-1 rdinit=/oracle-init loglevel=1"
# The time stamp of every file the harness makes for a VM (payload cpio, ESP), so equal inputs are
# equal bytes and a recorded boot can be replayed (records.py); nothing in the guest reads it.
SOURCE_DATE_EPOCH = 1700000000
ESP_SERIAL = "0E5AC1E5"
INDEX_FILES = ("modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin",
               "modules.softdep", "modules.symbols", "modules.symbols.bin", "modules.builtin",
               "modules.builtin.bin", "modules.builtin.alias.bin", "modules.builtin.modinfo",
               "modules.devname", "modules.order", "modules.weakdep")   # weakdep: kmod 33+ (Debian 13)


@dataclass(frozen=True)
class SecureBootSetup:
    """Secure Boot on: the MOK certificates (DER) written into the variable store stand for
    `mokutil --import` + MokManager; shim copies them to MokListRT and the mokvar table."""

    mok_certificates: tuple[bytes, ...] = ()
    suite: str = "bookworm"       # whose signed shim and grub boot (the tree's Debian release)
    dbx_certificates: tuple[bytes, ...] = ()   # revoked in dbx (virt-fw-vars --add-dbx-cert)


@dataclass(frozen=True)
class BootSpec:
    """Everything that decides what one boot does (equal specs boot once)."""

    tree: Path                    # the host tree (its /lib/modules/K is shipped)
    release: str                  # K
    vmlinuz: Path                 # the tree's /boot/vmlinuz-K
    initrd: Path                  # the tree's /boot/initrd.img-K, unchanged
    modules: tuple[str, ...]      # names to try, in this order
    secure_boot: SecureBootSetup | None = None
    capture: bool = False
    extra_files: tuple[str, ...] = ()   # module files (tree paths) loaded as they are, after the plan:
                                        # another kernel's kmod that weak-modules would or would not link

    @property
    def payload_modules(self) -> tuple[str, ...]:
        """Modules whose files go into the payload: the plan's, and efivarfs for a capture (Debian
        builds it as a module and initramfs-tools leaves it out)."""
        return self.modules + (("efivarfs",) if self.capture else ())

    @property
    def timeout(self) -> float:
        return SECURE_TIMEOUT if self.secure_boot else DIRECT_TIMEOUT

    def key(self) -> str:
        """A content hash: two scenarios that would boot the same bytes share one boot."""
        h = hashlib.sha256()
        for part in (self.release, " ".join(self.modules), str(self.capture)):
            h.update(part.encode() + b"\0")
        for f in (self.vmlinuz, self.initrd):
            h.update(_file_digest(f))
        for name in INDEX_FILES:
            p = self.tree / "lib/modules" / self.release / name
            h.update(name.encode() + (_file_digest(p) if p.exists() else b"-"))
        for rel in sorted(resolve_files(self.tree, self.release, self.payload_modules)):
            path = self.tree / "lib/modules" / self.release / rel
            h.update(rel.encode() + (_file_digest(path) if path.exists() else b"-"))
        for rel in self.extra_files:
            h.update(b"extra " + rel.encode() + _file_digest(self.tree / rel.lstrip("/")))
        if self.secure_boot is not None:
            h.update(b"secure-boot " + self.secure_boot.suite.encode())
            for der in self.secure_boot.mok_certificates:
                h.update(hashlib.sha256(der).digest())
            for der in self.secure_boot.dbx_certificates:
                h.update(b"dbx" + hashlib.sha256(der).digest())
        return h.hexdigest()[:20]

    def image_key(self) -> str:
        """What decides whether the kernel boots to the init at all: the kernel, its initramfs and
        the firmware setup (a spec with an empty plan is judged on that alone)."""
        h = hashlib.sha256(self.release.encode() + b"\0")
        for f in (self.vmlinuz, self.initrd):
            h.update(_file_digest(f))
        if self.secure_boot is not None:
            h.update(b"secure-boot " + self.secure_boot.suite.encode())
            for der in self.secure_boot.mok_certificates:
                h.update(hashlib.sha256(der).digest())
            for der in self.secure_boot.dbx_certificates:
                h.update(b"dbx" + hashlib.sha256(der).digest())
        return h.hexdigest()[:20]


_DIGESTS: dict[tuple[str, int, int], bytes] = {}


def _file_digest(path: Path) -> bytes:
    st = path.stat()
    k = (str(path), st.st_ino, st.st_mtime_ns)
    if k not in _DIGESTS:
        with open(path, "rb") as f:
            _DIGESTS[k] = hashlib.file_digest(f, "sha256").digest()
    return _DIGESTS[k]


# ---------------------------------------------------------------------------------------------
# The payload: the cpio appended to K's initramfs


def resolve_files(tree: Path, release: str, modules: Iterable[str]) -> set[str]:
    """Module files (relative to /lib/modules/K) the host's modprobe resolves in the tree's
    modules.dep for ``modules``, dependencies included; names it cannot find add nothing.  A file
    modules.dep names but the tree lacks is listed too (the payload leaves it out, as the tree does)."""
    modprobe = artifacts.need("modprobe", "kmod")
    prefix = str(tree / "lib/modules" / release) + "/"
    files: set[str] = set()
    for name in modules:
        proc = subprocess.run([modprobe, "-d", str(tree), "-S", release, "-C", "/dev/null",
                               "--show-depends", name], capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            verb, _, path = line.partition(" ")
            path = path.strip()
            if verb == "insmod":
                real = os.path.realpath(path)
                for root in (prefix, os.path.realpath(prefix) + "/"):
                    if real.startswith(root):
                        files.add(real[len(root):])
                        break
                else:
                    files.add(path.split(f"/lib/modules/{release}/", 1)[1])
    return files


def extra_payload_path(rel: str) -> str:
    """Where an extra file is in the VM: /oracle/extra/ + its tree path, '/' as '_'."""
    return "/oracle/extra/" + rel.strip("/").replace("/", "_")


def _plan(spec: BootSpec) -> str:
    return (f"RELEASE='{spec.release}'\nMODULES='{' '.join(spec.modules)}'\n"
            f"CAPTURE={1 if spec.capture else 0}\n"
            f"EXTRA='{' '.join(extra_payload_path(f) for f in spec.extra_files)}'\n")


def build_payload(spec: BootSpec, work: Path) -> Path:
    """Stage the oracle's files and pack them with the real cpio (newc, owned by root)."""
    stage = work / "payload"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "oracle/bin").mkdir(parents=True)
    shutil.copy(artifacts.busybox(), stage / "oracle/bin/busybox")
    shutil.copy(artifacts.loader(), stage / "oracle/bin/loadmod")
    shutil.copy(artifacts.INIT_SCRIPT, stage / "oracle-init")
    for exe in ("oracle/bin/busybox", "oracle/bin/loadmod", "oracle-init"):
        (stage / exe).chmod(0o755)
    (stage / "oracle/plan").write_text(_plan(spec))
    src = spec.tree / "lib/modules" / spec.release
    dst = stage / "oracle/root/lib/modules" / spec.release
    dst.mkdir(parents=True)
    for name in INDEX_FILES:
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    for rel in resolve_files(spec.tree, spec.release, spec.payload_modules):
        if not (src / rel).exists():
            continue  # modules.dep names a file the tree does not have: the VM must miss it too
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, dst / rel)
    for rel in spec.extra_files:
        dest = stage / extra_payload_path(rel).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(spec.tree / rel.lstrip("/"), dest)
    pin_mtimes(stage)
    names = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
    out = work / "oracle.cpio"
    with open(out, "wb") as f:
        proc = subprocess.run([artifacts.need("cpio", "cpio"), "-o", "-H", "newc", "-R", "0:0",
                               "--reproducible", "--quiet"], cwd=stage, input="\n".join(names).encode(),
                              stdout=f, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"cpio failed: {proc.stderr.decode()}")
    return out


def pin_mtimes(stage: Path) -> None:
    """Every file and directory under ``stage`` stamped SOURCE_DATE_EPOCH (cpio keeps mtimes, and
    shutil.copy gives the copy's time): the same staged content packs to the same bytes."""
    for p in sorted(stage.rglob("*"), reverse=True):
        os.utime(p, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)


def combined_initrd(initrd: Path, payload: Path, out: Path) -> Path:
    """K's initramfs, zero padding to a 4-byte boundary (the kernel skips NULs between archives but
    wants an uncompressed cpio to start aligned), then the payload."""
    with open(out, "wb") as f:
        with open(initrd, "rb") as src:
            shutil.copyfileobj(src, f)
        f.write(b"\0" * (-f.tell() % 4))
        with open(payload, "rb") as src:
            shutil.copyfileobj(src, f)
    return out


# ---------------------------------------------------------------------------------------------
# Running QEMU


@dataclass
class RunResult:
    """One QEMU run: how it ended and the serial console."""

    status: str          # "exited" (QEMU quit: power off or panic with -no-reboot) or "timeout"
    returncode: int | None
    seconds: float
    console: str
    stderr: str
    cpu_seconds: float = 0.0   # QEMU's user + system CPU: what a boot costs whatever the load
    replayed: bool = False     # read from records.py, QEMU not started
    recorded_console: str | None = None   # a fresh run's record before it (or, if none, as stored now)


def run_vm(argv: Sequence[str], console: Path, timeout: float) -> RunResult:
    """Run a VM whose serial console goes to ``console``; kill its process group at the timeout.
    The VM is reaped with wait4 for its CPU time (wall time on a shared machine says little)."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err_file, start_new_session=True)
        killed = threading.Event()
        timer = threading.Timer(timeout, _kill_group, (proc.pid, killed))
        timer.start()
        try:
            _, wait_status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        status = "timeout" if killed.is_set() else "exited"
        err_file.seek(0)
        err = err_file.read()
    seconds = time.monotonic() - start
    text = console.read_bytes().decode("utf-8", "replace") if console.exists() else ""
    return RunResult(status, proc.returncode, seconds, text, err.decode("utf-8", "replace"),
                     usage.ru_utime + usage.ru_stime)


def run_recorded(argv: Sequence[str], console: Path, timeout: float, *, fresh: bool = False) -> RunResult:
    """run_vm, or the record of a run with byte-identical inputs (records.py).  ``fresh`` (a
    canary) or DKMS_EXPORTER_ORACLE_REBOOT boots anyway; a fresh run keeps the record it replaces
    (or, on a first run, the one it wrote, read back) so the two answers can be compared."""
    k = records.key(argv, console.parent, console)
    (console.parent / "record-key").write_text(k + "\n")
    if not fresh and not records.reboot_forced():
        recorded = records.load(k)
        if recorded is not None:
            return RunResult(**recorded, replayed=True)
    before = records.load(k)
    run = run_vm(argv, console, timeout)
    fields = {f: getattr(run, f) for f in records.FIELDS}
    records.store(k, fields)
    after = before or records.load(k)
    run.recorded_console = after["console"] if after else None
    return run


def _kill_group(pid: int, killed: threading.Event) -> None:
    killed.set()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def direct_argv(spec: BootSpec, initrd: Path, console: Path) -> list[str]:
    """SeaBIOS loads K and the initramfs itself (-kernel/-initrd): no EFI, no Secure Boot."""
    return [artifacts.qemu(), "-machine", "pc", "-accel", "tcg", "-m", "1024", "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", f"file:{console}", "-kernel", str(spec.vmlinuz), "-initrd", str(initrd),
            "-append", CMDLINE]


GRUB_CFG = """\
set timeout=0
set default=0
menuentry "oracle {release}" {{
  echo "ORACLE grub loading {release}"
  linux /vmlinuz {cmdline}
  initrd /initrd.img
}}
"""


def esp_image(spec: BootSpec, initrd: Path, work: Path) -> Path:
    """A FAT ESP made with mtools (no mounts): shim as the removable-media loader, grub beside it
    (shim's second stage), the signed kernel, the combined initramfs and grub.cfg where Debian's
    signed grub looks ($prefix /EFI/debian, else next to itself)."""
    chain = artifacts.secure_boot_chain(spec.secure_boot.suite if spec.secure_boot else artifacts.HOST_SUITE)
    mformat, mmd, mcopy = artifacts.mtools()
    image = work / "esp.img"
    size = spec.vmlinuz.stat().st_size + initrd.stat().st_size + 16 * 2**20
    with open(image, "wb") as f:
        f.truncate(max(64 * 2**20, size * 5 // 4))
    cfg = work / "grub.cfg"
    cfg.write_text(GRUB_CFG.format(release=spec.release, cmdline=CMDLINE))
    img = ["-i", str(image)]
    steps = [[mformat, *img, "-F", "-v", "ORACLEESP", "-N", ESP_SERIAL, "::"],
             [mmd, *img, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"],
             [mcopy, *img, str(chain.shim), "::/EFI/BOOT/BOOTX64.EFI"],
             [mcopy, *img, str(chain.grub), "::/EFI/BOOT/grubx64.efi"],
             [mcopy, *img, str(cfg), "::/EFI/BOOT/grub.cfg"],
             [mcopy, *img, str(cfg), "::/EFI/debian/grub.cfg"],
             [mcopy, *img, str(spec.vmlinuz), "::/vmlinuz"],
             [mcopy, *img, str(initrd), "::/initrd.img"]]
    for argv in steps:
        subprocess.run(argv, check=True, capture_output=True,   # time stamps from SOURCE_DATE_EPOCH
                       env={**os.environ, "MTOOLS_SKIP_CHECK": "1", "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)})
    return image


def firmware_vars(setup: SecureBootSetup, work: Path) -> Path:
    """A copy of OVMF's Microsoft-enrolled variable store with the MOK certificates in MokList,
    written by virt-fw-vars (what MokManager would have written after `mokutil --import`)."""
    chain = artifacts.secure_boot_chain(setup.suite)
    out = work / "OVMF_VARS.fd"
    argv = [*artifacts.virt_fw_vars(), "-i", str(chain.ovmf_vars), "-o", str(out)]
    for i, der in enumerate(setup.mok_certificates):
        cert = work / f"mok{i}.der"
        cert.write_bytes(der)
        argv += ["--add-mok", SHIM_LOCK_GUID, str(cert)]
    for i, der in enumerate(setup.dbx_certificates):
        cert = work / f"dbx{i}.der"
        cert.write_bytes(der)
        argv += ["--add-dbx-cert", SHIM_LOCK_GUID, str(cert)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"virt-fw-vars failed:\n{proc.stdout}\n{proc.stderr}")
    return out


def secure_argv(esp: Path, fw_vars: Path, console: Path, suite: str = artifacts.HOST_SUITE) -> list[str]:
    """OVMF with Secure Boot (SMM, secure pflash) boots shim from the ESP on a virtio disk."""
    chain = artifacts.secure_boot_chain(suite)
    return [artifacts.qemu(), "-machine", "q35,smm=on", "-accel", "tcg", "-m", "1024", "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-drive", f"if=pflash,format=raw,unit=0,file={chain.ovmf_code},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={fw_vars}",
            "-drive", f"if=virtio,format=raw,file={esp},readonly=on",
            "-serial", f"file:{console}"]


# ---------------------------------------------------------------------------------------------
# What the kernel did


@dataclass
class ModuleOutcome:
    """One module as the booted kernel treated it."""

    name: str
    in_initramfs: bool | None = None      # the initramfs' modprobe resolves it
    early_loaded: bool | None = None      # loaded before the tree's files were tried
    resolved: bool | None = None          # the tree's modules.dep has it (modprobe -d)
    loads: list[tuple[str, int | None]] = field(default_factory=list)  # (file, errno or None=ok)
    loaded: bool | None = None            # live after the attempt
    initramfs_sha256: str | None = None   # of the file the initramfs' modprobe would load
    tree_sha256: str | None = None        # of the file the tree's modules.dep resolves it to

    @property
    def errno(self) -> int | None:
        """The kernel's answer for the module's own file (its last load), None when it loaded."""
        own = [e for path, e in self.loads if _modname(path) == self.name]
        return own[-1] if own else None


def _modname(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base).replace("-", "_")


@dataclass
class KernelView:
    """Everything the oracle init printed."""

    release: str | None = None
    began_at: float | None = None         # kernel uptime when the init started
    ended: bool = False
    facts: dict[str, str] = field(default_factory=dict)
    conf_modules: list[tuple[str, int]] = field(default_factory=list)
    modules: dict[str, ModuleOutcome] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    dmesg: list[str] = field(default_factory=list)
    extra: dict[str, int | None] = field(default_factory=dict)   # extra file (VM path) -> errno, None: loaded
    load_via: dict[str, str] = field(default_factory=dict)      # file -> how loadmod gave it to the kernel
    keyrings: dict[str, str] = field(default_factory=dict)      # ".machine" -> "1" (keys linked) or "empty"

    def module(self, name: str) -> ModuleOutcome:
        name = name.replace("-", "_")
        return self.modules.setdefault(name, ModuleOutcome(name))

    def dmesg_about(self, name: str) -> list[str]:
        return [line for line in self.dmesg if re.search(rf"\b{re.escape(name)}\b", line)]


_LINE = re.compile(r"ORACLE (\S+) ?(.*)")


def parse_console(text: str) -> KernelView:
    """The ``ORACLE ...`` lines of a serial console, in order; anything else is ignored."""
    view = KernelView()
    current_dep: dict[str, str] = {}
    for raw in text.splitlines():
        m = _LINE.search(raw.rstrip("\r"))
        if not m:
            continue
        what, rest = m.group(1), m.group(2)
        words = rest.split()
        if what == "begin":
            kv = dict(w.split("=", 1) for w in words if "=" in w)
            view.release, view.began_at = kv.get("release"), float(kv.get("uptime", "nan"))
        elif what == "end":
            view.ended = True
        elif what == "fact" and "=" in rest:
            k, v = rest.split("=", 1)
            view.facts[k] = v
        elif what == "conf_modules" and words and words[0].startswith("rc="):
            view.conf_modules.append((" ".join(words[1:]), int(words[0][3:])))
        elif what == "initramfs" and len(words) == 2:
            view.module(words[0]).in_initramfs = words[1] == "found"
        elif what == "early" and len(words) == 2:
            view.module(words[0]).early_loaded = words[1] == "loaded"
        elif what == "initramfs_file" and len(words) == 2:
            view.module(words[0]).initramfs_sha256 = words[1]
        elif what == "tree_file" and len(words) == 2:
            view.module(words[0]).tree_sha256 = words[1]
        elif what == "resolve" and len(words) == 2:
            view.module(words[0]).resolved = words[1] == "found"
        elif what == "dep" and len(words) == 2:
            current_dep[words[1]] = words[0]
        elif what == "keyring" and len(words) >= 2:
            view.keyrings[words[0]] = " ".join(words[1:])
        elif what == "loadvia" and len(words) == 2:
            view.load_via[words[0]] = words[1]
        elif what == "load" and len(words) >= 2 and words[0].startswith("/oracle/extra/"):
            view.extra[words[0]] = None if words[1] == "ok" else int(words[1].removeprefix("errno="))
        elif what == "load" and len(words) >= 2:
            owner = current_dep.get(words[0], _modname(words[0]))
            err = None if words[1] == "ok" else int(words[1].removeprefix("errno="))
            view.module(owner).loads.append((words[0], err))
        elif what == "state" and len(words) == 2:
            view.module(words[0]).loaded = words[1] == "loaded"
        elif what == "file" and len(words) == 2:
            view.files[words[0]] = base64.b64decode(words[1])
        elif what == "dmesg":
            view.dmesg.append(rest)
    return view


_STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s*")


def answer(view: KernelView) -> dict:
    """What the kernel did, without what varies between two boots of the same bytes (uptimes,
    dmesg time stamps, /proc/keys serials, boot_params): the per-module outcomes, the facts,
    keyrings, extra loads, the EFI variables read, and the log lines about the plan's modules."""
    from dataclasses import asdict
    names = set(view.modules) | {_modname(f) for f in view.extra}
    return {"release": view.release, "ended": view.ended, "facts": view.facts, "conf_modules": view.conf_modules,
            "modules": {n: asdict(m) for n, m in sorted(view.modules.items())}, "extra": view.extra,
            "load_via": view.load_via, "keyrings": view.keyrings,
            "files": {f: d for f, d in view.files.items() if f.startswith("/sys/firmware/efi/")},
            "dmesg": sorted({_STAMP.sub("", line) for line in view.dmesg
                             if any(re.search(rf"\b{re.escape(n)}\b", line) for n in names)})}


@dataclass
class BootResult:
    """A finished boot: how it ended, the kernel's view, the times, the console."""

    spec: BootSpec
    status: str               # "ok", "timeout", "no_init" (the oracle init never ran), "init_died"
    seconds: float            # wall time of the QEMU run
    view: KernelView
    console: str
    detail: str = ""
    cpu_seconds: float = 0.0  # QEMU's CPU time
    replayed: bool = False    # the console came from a record (records.py), QEMU did not run
    recorded_console: str | None = None   # a fresh boot's record (for the canaries' comparison)

    def panic(self) -> str | None:
        m = re.search(r"Kernel panic - not syncing: (.*)", self.console)
        return m.group(1).strip() if m else None

    def unpack_error(self) -> str | None:
        m = re.search(r"Initramfs unpacking failed: (.*)", self.console)
        return m.group(1).strip() if m else None

    def describe(self) -> str:
        tail = "\n".join(self.console.splitlines()[-25:])
        return (f"boot of {self.spec.release} ({'Secure Boot' if self.spec.secure_boot else 'direct'}): "
                f"{self.status} after {self.seconds:.1f}s {self.detail}\nconsole (end):\n{tail}")


def boot(spec: BootSpec, work: Path, *, fresh: bool = False) -> BootResult:
    """Boot once, or replay the record of the same bytes (``fresh``: always boot); never raises
    for what the guest does (a hang or a panic is a result)."""
    work.mkdir(parents=True, exist_ok=True)
    payload = build_payload(spec, work)
    initrd = combined_initrd(spec.initrd, payload, work / "initrd.img")
    console = work / "console.log"
    console.unlink(missing_ok=True)
    if spec.secure_boot is None:
        argv = direct_argv(spec, initrd, console)
    else:
        argv = secure_argv(esp_image(spec, initrd, work), firmware_vars(spec.secure_boot, work), console,
                           spec.secure_boot.suite)
    (work / "argv").write_text(" ".join(argv) + "\n")
    run = run_recorded(argv, console, spec.timeout, fresh=fresh)
    return result_of(spec, run)


def result_of(spec: BootSpec, run: RunResult) -> BootResult:
    """A run (booted or replayed) read and classified, here, on every run."""
    view = parse_console(run.console)
    if run.status == "timeout":
        status, detail = "timeout", f"(killed at {spec.timeout:.0f}s)"
    elif view.release is None:
        status, detail = "no_init", f"(QEMU exit {run.returncode}) {run.stderr.strip()[-500:]}"
    elif not view.ended:
        status, detail = "init_died", ""
    else:
        status, detail = "ok", ""
    return BootResult(spec, status, run.seconds, view, run.console, detail, run.cpu_seconds, run.replayed,
                      run.recorded_console)
