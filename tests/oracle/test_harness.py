"""The harness and the judge without booting: the console parser, the hang killer, the initramfs
concatenation, and that the judge reports a disagreement (an oracle that always agrees proves
nothing)."""

from __future__ import annotations

import errno
import subprocess
import time
from pathlib import Path

import pytest

from .harness import BootResult, BootSpec, combined_initrd, parse_console, run_vm
from .judge import judge_kernel, judge_module

CONSOLE = """\
\x1bc\x1b[?7l\x1b[2JSeaBIOS (version 1.16.2-debian-1.16.2-1)
ORACLE begin release=6.1.0-56-amd64 uptime=7.34\r
ORACLE fact sig_enforce=Y
ORACLE fact lockdown=none,[integrity],confidentiality
ORACLE conf_modules rc=0 v4l2loopback
ORACLE initramfs v4l2loopback found
ORACLE early v4l2loopback loaded
ORACLE initramfs acpi_call notfound
ORACLE early acpi_call notloaded
ORACLE resolve v4l2loopback found
ORACLE dep v4l2loopback /oracle/root/lib/modules/K/kernel/drivers/media/mc/mc.ko
ORACLE load /oracle/root/lib/modules/K/kernel/drivers/media/mc/mc.ko errno=17 File exists
ORACLE dep v4l2loopback /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko
ORACLE load /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko errno=17 File exists
ORACLE state v4l2loopback loaded
ORACLE resolve acpi_call found
ORACLE dep acpi_call /oracle/root/lib/modules/K/updates/dkms/acpi_call.ko
[   13.3] some kernel line in between
ORACLE load /oracle/root/lib/modules/K/updates/dkms/acpi_call.ko errno=129 Key was rejected by service
ORACLE state acpi_call notloaded
ORACLE resolve zfs notfound
ORACLE file /proc/keys aGVsbG8=
ORACLE dmesg [   13.355092] Loading of unsigned module is rejected
ORACLE end uptime=13.66
"""


def _result(console: str = CONSOLE, status: str = "ok") -> BootResult:
    spec = BootSpec(Path("/tree"), "6.1.0-56-amd64", Path("/v"), Path("/i"), ("v4l2loopback", "acpi_call", "zfs"))
    return BootResult(spec, status, 20.0, parse_console(console), console)


def test_console_lines_become_the_kernels_view() -> None:
    view = _result().view
    assert (view.release, view.began_at, view.ended) == ("6.1.0-56-amd64", 7.34, True)
    assert view.facts["sig_enforce"] == "Y" and view.conf_modules == [("v4l2loopback", 0)]
    v4l2, acpi, zfs = view.modules["v4l2loopback"], view.modules["acpi_call"], view.modules["zfs"]
    assert (v4l2.in_initramfs, v4l2.early_loaded, v4l2.loaded, v4l2.errno) == (True, True, True, errno.EEXIST)
    assert len(v4l2.loads) == 2  # its dependency's load is counted as its own attempt
    assert (acpi.in_initramfs, acpi.resolved, acpi.loaded, acpi.errno) == (False, True, False, errno.EKEYREJECTED)
    assert zfs.resolved is False and zfs.loads == []
    assert view.files == {"/proc/keys": b"hello"}


def _module(name: str, working: bool, *reasons: str, early: bool = False) -> dict:
    return {"module": name, "working": working, "early_boot": early,
            "problems": [{"reason": r, "severity": "error"} for r in reasons]}


def test_judge_agrees_only_when_the_kernel_did_what_the_reason_means() -> None:
    r = _result()
    assert judge_module("K", _module("acpi_call", False, "unsigned"), r).agree
    assert judge_module("K", _module("v4l2loopback", True, early=True), r).agree
    assert judge_module("K", _module("zfs", False, "not_built"), r).agree
    # each of these is a lie the oracle must catch
    assert not judge_module("K", _module("acpi_call", True), r).agree
    assert not judge_module("K", _module("acpi_call", False, "symbol_version_mismatch"), r).agree
    assert not judge_module("K", _module("v4l2loopback", False, "unsigned"), r).agree
    assert not judge_module("K", _module("v4l2loopback", False, "missing_from_initramfs"), r).agree
    assert not judge_module("K", _module("zfs", True), r).agree
    assert not judge_module("K", _module("acpi_call", True, early=True), r).agree


STALE = """\
ORACLE begin release=K uptime=7.0
ORACLE conf_modules rc=0 v4l2loopback
ORACLE initramfs v4l2loopback found
ORACLE initramfs_file v4l2loopback 1111111111111111111111111111111111111111111111111111111111111111
ORACLE early v4l2loopback loaded
ORACLE initramfs videodev found
ORACLE initramfs_file videodev 3333333333333333333333333333333333333333333333333333333333333333
ORACLE resolve v4l2loopback found
ORACLE tree_file v4l2loopback 2222222222222222222222222222222222222222222222222222222222222222
ORACLE dep v4l2loopback /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko
ORACLE load /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko errno=17 File exists
ORACLE state v4l2loopback loaded
ORACLE resolve videodev found
ORACLE tree_file videodev 3333333333333333333333333333333333333333333333333333333333333333
ORACLE resolve acpi_call found
ORACLE dep acpi_call /oracle/root/lib/modules/K/updates/dkms/acpi_call.ko
ORACLE load /oracle/root/lib/modules/K/updates/dkms/acpi_call.ko errno=8 Exec format error
ORACLE state acpi_call notloaded
ORACLE dmesg [    9.1] acpi_call: disagrees about version of symbol module_layout
ORACLE end uptime=9.5
"""


def test_stale_initramfs_needs_another_build_in_the_image() -> None:
    r = _result(STALE)
    v4l2 = r.view.modules["v4l2loopback"]
    assert (v4l2.initramfs_sha256, v4l2.tree_sha256) == ("1" * 64, "2" * 64)
    assert judge_module("K", _module("v4l2loopback", False, "initramfs_stale", early=True), r).agree
    # the same build in the image and on disk: "stale" would be a false alarm
    assert not judge_module("K", _module("videodev", False, "initramfs_stale", early=True), r).agree
    assert "another build" in judge_module("K", _module("v4l2loopback", True, early=True), r).kernel_did


def test_module_layout_refusal_is_a_symbol_version_mismatch() -> None:
    """6.1 checks module_layout first and answers ENOEXEC (not EINVAL) with the same log line."""
    r = _result(STALE)
    assert judge_module("K", _module("acpi_call", False, "symbol_version_mismatch"), r).agree
    assert not judge_module("K", _module("acpi_call", False, "vermagic_mismatch"), r).agree
    assert not judge_module("K", _module("acpi_call", False, "unknown_symbol"), r).agree


def test_refusal_needs_the_kernels_log_line_too() -> None:
    quiet = CONSOLE.replace("ORACLE dmesg [   13.355092] Loading of unsigned module is rejected\n", "")
    assert not judge_module("K", _module("acpi_call", False, "unsigned"), _result(quiet)).agree


def test_a_failed_boot_agrees_only_with_a_broken_image() -> None:
    failed = _result("[    7.4] Initramfs unpacking failed: ZSTD-compressed data is corrupt\n"
                     "[    9.4] Kernel panic - not syncing: VFS: Unable to mount root fs\n", status="no_init")
    broken = {"kernels": [{"kernel": "K", "problems": [{"reason": "initramfs_unreadable"}], "modules": []}]}
    fine = {"kernels": [{"kernel": "K", "problems": [], "modules": [_module("acpi_call", True)]}]}
    assert [row.agree for row in judge_kernel("K", broken, failed)] == [True]
    assert [row.agree for row in judge_kernel("K", fine, failed)] == [False]
    assert failed.unpack_error() == "ZSTD-compressed data is corrupt"
    assert judge_kernel("K", broken, _result())[0].agree is False  # broken image, yet it booted


def test_a_hung_vm_is_killed_at_the_timeout(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text("ORACLE begin release=K uptime=1.0\n")
    start = time.monotonic()
    run = run_vm(["sh", "-c", "sleep 60 & sleep 60"], console, timeout=1.0)
    assert run.status == "timeout" and time.monotonic() - start < 10
    assert run.console.startswith("ORACLE begin")


def test_a_vms_cpu_time_is_measured(tmp_path: Path) -> None:
    """The stage's cost is judged by QEMU's CPU time (wall time on a shared machine says little)."""
    run = run_vm(["sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo err >&2"],
                 tmp_path / "console.log", timeout=60.0)
    assert (run.status, run.returncode, run.stderr) == ("exited", 0, "err\n")
    assert 0.05 < run.cpu_seconds <= run.seconds + 0.5


def test_payload_starts_aligned_after_the_real_initramfs(tmp_path: Path) -> None:
    """The kernel accepts an uncompressed cpio after a compressed one only at a 4-byte boundary."""
    initrd, payload = tmp_path / "initrd", tmp_path / "payload.cpio"
    initrd.write_bytes(b"\x28\xb5\x2f\xfd" + b"x" * 5)  # 9 bytes
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage/oracle-init").write_text("#!/bin/sh\n")
    with open(payload, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=b"oracle-init", cwd=tmp_path / "stage",
                       stdout=f, check=True)
    out = combined_initrd(initrd, payload, tmp_path / "combined").read_bytes()
    assert out[:9] == initrd.read_bytes() and out[9:12] == b"\0\0\0" and out[12:18] == b"070701"
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=out[12:], capture_output=True, check=True).stdout
    assert listing.split() == [b"oracle-init"]


def test_the_init_script_passes_shellcheck_as_posix_sh() -> None:
    """It runs under busybox ash inside the VM; a quoting slip there is a wrong verdict here."""
    from testkit import require_tool

    from .artifacts import INIT_SCRIPT

    r = subprocess.run([require_tool("shellcheck"), "--shell=sh", "--severity=style", str(INIT_SCRIPT)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_empty_plan_shares_the_boot_of_the_same_kernel_and_initramfs(tmp_path: Path) -> None:
    """unregistered needs no module: its boots only prove the image boots, which a boot of the same
    bytes with modules to try proves too; other bytes or a Secure Boot setup still boot alone."""
    from .conftest import _empty_plan_aliases
    from .harness import SecureBootSetup

    for name, data in (("vmlinuz", b"k"), ("initrd", b"i"), ("other-initrd", b"j")):
        (tmp_path / name).write_bytes(data)
    v, i, j = tmp_path / "vmlinuz", tmp_path / "initrd", tmp_path / "other-initrd"
    planned = BootSpec(tmp_path, "K", v, i, ("v4l2loopback",))
    empty = BootSpec(tmp_path, "K", v, i, ())
    elsewhere = BootSpec(tmp_path, "K", v, j, ())
    secure = BootSpec(tmp_path, "K", v, i, (), SecureBootSetup())
    specs = {s.key(): s for s in (planned, empty, elsewhere, secure)}
    assert _empty_plan_aliases(specs) == {empty.key(): planned.key()}


def test_a_file_modules_dep_names_but_the_tree_lacks_is_absent() -> None:
    """module_deleted: modprobe resolves the name, the file is gone; open() fails, not the kernel."""
    gone = ("ORACLE begin release=K uptime=5.0\n"
            "ORACLE resolve v4l2loopback found\n"
            "ORACLE tree_file v4l2loopback none\n"
            "ORACLE dep v4l2loopback /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko\n"
            "ORACLE load /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko errno=2 No such file or directory\n"
            "ORACLE state v4l2loopback notloaded\nORACLE end uptime=6.0\n")
    r = _result(gone)
    assert judge_module("K", _module("v4l2loopback", False, "file_missing"), r).agree
    assert not judge_module("K", _module("v4l2loopback", False, "unknown_symbol"), r).agree  # ENOENT, no log
    assert "its file is gone" in judge_module("K", _module("v4l2loopback", False, "file_missing"), r).kernel_did


def test_load_paths_and_keyrings_are_parsed() -> None:
    """loadmod's `loadvia` line (kernel decompression of a .ko.xz) and the keyring sizes."""
    console = ("ORACLE begin release=6.12.118+deb13-amd64 uptime=5.0\n"
               "ORACLE fact module_compression=xz\n"
               "ORACLE keyring .machine 1\nORACLE keyring .platform empty\n"
               "ORACLE dep v4l2loopback /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko.xz\n"
               "ORACLE loadvia /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko.xz kernel-xz\n"
               "ORACLE load /oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko.xz ok\n"
               "ORACLE end uptime=6.0\n")
    view = parse_console(console)
    path = "/oracle/root/lib/modules/K/updates/dkms/v4l2loopback.ko.xz"
    assert view.load_via == {path: "kernel-xz"}
    assert view.keyrings == {".machine": "1", ".platform": "empty"}
    assert view.modules["v4l2loopback"].loads == [(path, None)]
    assert view.modules["v4l2loopback"].errno is None


def test_a_trees_debian_release_picks_its_boot_chain(tmp_path: Path) -> None:
    from .harness import SecureBootSetup
    from .scenarios import debian_suite

    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n')
    assert debian_suite(tmp_path) == "trixie"
    (tmp_path / "usr/lib/os-release").write_text("ID=opensuse-leap\n")
    assert debian_suite(tmp_path) == "bookworm"
    v, i = tmp_path / "v", tmp_path / "i"
    v.write_bytes(b"k"), i.write_bytes(b"i")
    keys = {BootSpec(tmp_path, "K", v, i, (), SecureBootSetup((), suite)).key() for suite in ("bookworm", "trixie")}
    assert len(keys) == 2   # another shim and grub boot other bytes: never shared


# ---------------------------------------------------------------------------------------------
# The records of the kernel's answers (records.py): a fake VM (sh copying its input file to the
# console), so each test can count the runs that really happened.

VM_SCRIPT = 'disk=${1#file=}; cat "${disk%%,*}" > "$2"; echo ran >> "$ORACLE_TEST_RUNS"\n'


def _fake_vm(tmp_path: Path, run_dir: str, data: bytes) -> tuple[list[str], Path]:
    """A VM run in its own work directory (as each pytest run has its own tmp): input file there."""
    work = tmp_path / run_dir
    work.mkdir(parents=True, exist_ok=True)
    (tmp_path / "vm.sh").write_text(VM_SCRIPT)
    (work / "disk.img").write_bytes(data)
    console = work / "console.log"
    return ["sh", str(tmp_path / "vm.sh"), f"file={work / 'disk.img'},readonly=on", str(console)], console


def _runs(tmp_path: Path) -> int:
    path = tmp_path / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def record_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from . import records
    monkeypatch.setattr(records, "records_dir", lambda: tmp_path / "records")
    monkeypatch.delenv(records.REBOOT_ENV, raising=False)
    monkeypatch.setenv("ORACLE_TEST_RUNS", str(tmp_path / "runs"))   # counted outside the keyed arguments
    return tmp_path / "records"


def test_a_recorded_boot_is_replayed_without_starting_the_vm(tmp_path: Path, record_store: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from . import harness
    argv, console = _fake_vm(tmp_path, "run1", b"ORACLE begin release=K uptime=1\nORACLE end\n")
    first = harness.run_recorded(argv, console, 30.0)
    assert not first.replayed and _runs(tmp_path) == 1 and first.console.startswith("ORACLE begin")
    assert len(list(record_store.rglob("*.json"))) == 1

    def no_vm(*a, **k):
        raise AssertionError("QEMU started for a recorded boot")
    monkeypatch.setattr(harness, "run_vm", no_vm)
    argv2, console2 = _fake_vm(tmp_path, "run2", b"ORACLE begin release=K uptime=1\nORACLE end\n")  # another tmp dir
    again = harness.run_recorded(argv2, console2, 30.0)
    assert again.replayed and (again.console, again.status, again.returncode) == (first.console, "exited", 0)
    assert harness.result_of(_result().spec, again).status == "ok"   # parsed and classified live


def test_any_changed_input_byte_misses_the_record(tmp_path: Path, record_store: Path) -> None:
    from . import harness
    data = b"ORACLE begin release=K uptime=1\nORACLE end\n"
    argv, console = _fake_vm(tmp_path, "a", data)
    harness.run_recorded(argv, console, 30.0)
    changed = bytearray(data)
    changed[15] ^= 0x01
    argv, console = _fake_vm(tmp_path, "b", bytes(changed))
    r = harness.run_recorded(argv, console, 30.0)
    assert not r.replayed and _runs(tmp_path) == 2 and r.console == changed.decode()
    argv, console = _fake_vm(tmp_path, "c", data)
    argv[2] = argv[2].replace("readonly=on", "readonly=off")      # another argument, same bytes
    assert not harness.run_recorded(argv, console, 30.0).replayed and _runs(tmp_path) == 3


def test_a_damaged_record_is_ignored_and_the_boot_runs(tmp_path: Path, record_store: Path) -> None:
    import json

    from . import harness
    argv, console = _fake_vm(tmp_path, "a", b"ORACLE begin release=K uptime=1\nORACLE end\n")
    harness.run_recorded(argv, console, 30.0)
    (path,) = record_store.rglob("*.json")
    doc = json.loads(path.read_text())
    doc["run"]["console"] = doc["run"]["console"].replace("end", "END")   # valid JSON, wrong checksum
    path.write_text(json.dumps(doc))
    r = harness.run_recorded(argv, console, 30.0)
    assert not r.replayed and _runs(tmp_path) == 2 and "ORACLE end" in r.console
    path.write_bytes(path.read_bytes()[:40])                              # cut short
    assert not harness.run_recorded(argv, console, 30.0).replayed and _runs(tmp_path) == 3
    assert harness.run_recorded(argv, console, 30.0).replayed             # rewritten whole


def test_a_canary_or_the_reboot_variable_always_boots(tmp_path: Path, record_store: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from . import harness, records
    argv, console = _fake_vm(tmp_path, "a", b"ORACLE begin release=K uptime=1\nORACLE end\n")
    first = harness.run_recorded(argv, console, 30.0)
    assert first.recorded_console == first.console     # a first run compares with what it stored
    canary = harness.run_recorded(argv, console, 30.0, fresh=True)
    assert not canary.replayed and _runs(tmp_path) == 2 and canary.recorded_console == first.console
    monkeypatch.setenv(records.REBOOT_ENV, "1")
    assert not harness.run_recorded(argv, console, 30.0).replayed and _runs(tmp_path) == 3


def test_a_timed_out_run_is_not_recorded(tmp_path: Path, record_store: Path) -> None:
    from . import harness
    (tmp_path / "hang.sh").write_text("sleep 60 & sleep 60\n")
    console = tmp_path / "console.log"
    r = harness.run_recorded(["sh", str(tmp_path / "hang.sh")], console, 1.0)
    assert r.status == "timeout" and not list(record_store.rglob("*.json"))


def test_the_payload_packs_to_the_same_bytes_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cpio keeps mtimes and shutil.copy stamps the copy's time: pinned, the payload of the same
    plan is the same bytes (a record can only hit if it is), every entry stamped SOURCE_DATE_EPOCH."""
    from . import artifacts, harness
    for name in ("busybox", "loadmod"):
        (tmp_path / name).write_bytes(name.encode())
    monkeypatch.setattr(artifacts, "busybox", lambda: tmp_path / "busybox")
    monkeypatch.setattr(artifacts, "loader", lambda: tmp_path / "loadmod")
    mods = tmp_path / "tree/lib/modules/K"
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text("")
    spec = BootSpec(tmp_path / "tree", "K", Path("/v"), Path("/i"), ("v4l2loopback",))
    one = harness.build_payload(spec, tmp_path / "w1").read_bytes()
    time.sleep(1.1)   # cpio stores seconds
    two = harness.build_payload(spec, tmp_path / "w2").read_bytes()
    assert one == two
    headers = [one[i:i + 110] for i in range(len(one)) if one[i:i + 6] == b"070701"]
    assert len(headers) > 5 and {int(h[46:54], 16) for h in headers[:-1]} == {harness.SOURCE_DATE_EPOCH}  # not TRAILER!!!


def test_the_esp_image_is_the_same_bytes_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mformat's random serial and mtools' clock time stamps would make every ESP new bytes."""
    from . import artifacts, harness
    from .harness import SecureBootSetup
    files = {}
    for name in ("shim", "grub", "code", "vars", "vmlinuz", "initrd"):
        files[name] = tmp_path / name
        files[name].write_bytes(name.encode() * 1000)
    chain = artifacts.SecureBootChain(files["shim"], files["grub"], files["code"], files["vars"])
    monkeypatch.setattr(artifacts, "secure_boot_chain", lambda suite=artifacts.HOST_SUITE: chain)
    spec = BootSpec(tmp_path, "K", files["vmlinuz"], files["initrd"], (), SecureBootSetup())
    images = []
    for run in ("w1", "w2"):
        (tmp_path / run).mkdir()
        images.append(harness.esp_image(spec, files["initrd"], tmp_path / run).read_bytes())
        time.sleep(2.1)   # FAT time stamps have 2 s steps
    assert images[0] == images[1]


def test_the_variable_store_is_the_same_bytes_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """virt-fw-vars on OVMF's Microsoft-enrolled store with a MOK and a dbx certificate: equal
    certificates, equal bytes (else every Secure Boot boot would miss its record)."""
    from testkit import REPO

    from . import artifacts, harness
    from .harness import SecureBootSetup
    vars_ = artifacts.OVMF_DIR / "OVMF_VARS_4M.ms.fd"
    assert vars_.is_file(), "apt-get install ovmf (listed in .ci/apt-packages)"
    chain = artifacts.SecureBootChain(vars_, vars_, vars_, vars_)
    monkeypatch.setattr(artifacts, "secure_boot_chain", lambda suite=artifacts.HOST_SUITE: chain)
    der = (REPO / "tests/data/keys/dkms-mok.der").read_bytes()
    setup = SecureBootSetup((der,), dbx_certificates=(der,))
    stores = []
    for run in ("w1", "w2"):
        (tmp_path / run).mkdir()
        stores.append(harness.firmware_vars(setup, tmp_path / run).read_bytes())
        time.sleep(1.1)
    assert stores[0] == stores[1] and stores[0] != vars_.read_bytes()
