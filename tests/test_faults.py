"""Faults a real host produces: files that vanish or change between listing and reading, EACCES,
EIO, FIFOs, symlink loops, thousands of entries, a 2 GiB sparse "initramfs", a collector stuck on
a read.  Every time: the scrape is served within its timeout, the failure is counted against its
collector (dkms_scrape_collector_errors), nothing crashes, and readiness is "unknown" (check exits
2, dkms_next_boot_ready is absent) whenever a collector it depends on failed: never "ready"."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_tool
from exporter import collectors as registry
from exporter.host import cache as filecache
from exporter.collectors import dkms as dkms_collector
from exporter.collectors import module as module_collector
from exporter.cli import main
from exporter.config import Config
from exporter.host.context import Context
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.facts.kernel import KernelFacts

K1, K2 = "6.1.0-27-amd64", "6.1.0-28-amd64"
UPDATES = f"/lib/modules/{K2}/updates/dkms"   # where the kernel collector finds K2's DKMS module
REPO = Path(__file__).resolve().parent.parent


def two_kernels(host):
    """Running K1, newest K2 booted next, one DKMS module on both, images, Secure Boot on: ready."""
    host.kernel(K1, running=True)
    host.kernel(K2)
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    for k in (K1, K2):
        host.dkms_build("acpi-call", "1.2.2", k, dest=["acpi_call"])
    host.secure_boot(True)
    host.loaded(("acpi_call", "OE"))
    for k in (K1, K2):
        host.initramfs(k, ["e1000e"])
    host.grub()
    host.finish()
    return host


def samples(text: str) -> dict[str, list[tuple[dict, float]]]:
    out: dict[str, list[tuple[dict, float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def scrape_metrics(root: Path, capsys, *flags: str) -> dict[str, list[tuple[dict, float]]]:
    assert main(["metrics", "--path.rootfs", str(root), *flags]) == 0
    return samples(capsys.readouterr().out)


def errors_of(m: dict, collector: str) -> float:
    return next(v for labels, v in m["dkms_scrape_collector_errors"] if labels["collector"] == collector)


def success_of(m: dict, collector: str) -> float:
    return next(v for labels, v in m["dkms_scrape_collector_success"] if labels["collector"] == collector)


def assert_unknown(root: Path, m: dict, capsys) -> None:
    """Readiness undecidable, in both outputs: no dkms_next_boot_ready, and `check` exits 2."""
    assert "dkms_next_boot_ready" not in m and m["dkms_next_boot_readiness_unknown"] == [({}, 1.0)]
    assert main(["check", "--path.rootfs", str(root)]) == 2
    capsys.readouterr()


def test_the_fixture_host_is_ready_to_begin_with(host, capsys):
    """Every fault below turns this ready host into an undecidable or not-ready one."""
    two_kernels(host)
    m = scrape_metrics(host.root, capsys)
    assert m["dkms_next_boot_ready"] == [({}, 1.0)]
    assert all(v == 0 for _, v in m["dkms_scrape_collector_errors"])
    assert main(["check", "--path.rootfs", str(host.root)]) == 0


# ------------------------------------------------------------------------------------------------
# the tree changes between listing a directory and reading what it listed


def _after_listing(monkeypatch, where: str, name: str, action) -> list[str]:
    """Run ``action(local path of name)`` once, right after a collector lists the host directory
    ``where`` (which holds ``name``)."""
    done: list[str] = []
    real = Context.listdir

    def listdir(self, hostpath):
        names = real(self, hostpath)
        if hostpath.rstrip("/") == where and names and name in names and not done:
            done.append(f"{self.collector}:{hostpath}")
            action(Path(self.fs.local(hostpath)) / name)
        return names

    monkeypatch.setattr(Context, "listdir", listdir)
    return done


def test_module_file_vanishes_after_listing(host, capsys, monkeypatch):
    two_kernels(host)
    done = _after_listing(monkeypatch, UPDATES, "acpi_call.ko", lambda p: p.unlink())
    s = Scraper(HostFS(host.root), Config()).scrape()
    assert done and not any(r.crashed for r in s.facts.runs.values())
    k2 = s.readiness.kernel(K2)
    assert k2.verdict != "ready" and s.readiness.verdict != "ready"


def test_module_file_replaced_by_garbage_after_listing(host, monkeypatch):
    two_kernels(host)
    _after_listing(monkeypatch, UPDATES, "acpi_call.ko", lambda p: p.write_bytes(b"\x7fELF truncated"))
    s = Scraper(HostFS(host.root), Config()).scrape()
    mod = next(m for m in s.readiness.kernel(K2).modules if m.module == "acpi_call")
    assert "module_unreadable" in {p.reason for p in mod.problems} and s.readiness.verdict == "not_ready"


def test_module_file_replaced_by_a_directory_after_listing(host, capsys, monkeypatch):
    two_kernels(host)

    def to_dir(p: Path) -> None:
        p.unlink()
        p.mkdir()

    _after_listing(monkeypatch, UPDATES, "acpi_call.ko", to_dir)
    m = scrape_metrics(host.root, capsys)
    assert errors_of(m, "module") >= 1 and success_of(m, "module") == 0
    assert "dkms_next_boot_ready" not in m


# ------------------------------------------------------------------------------------------------
# EACCES, as a real unprivileged user (chmod 000 means nothing to root)


@pytest.fixture
def public_tmp():
    """A directory nobody can reach (pytest's own tmp dirs sit under a 0700 /tmp/pytest-of-root,
    where an unprivileged run would see EACCES everywhere and prove nothing)."""
    path = Path(tempfile.mkdtemp(prefix="dkms-faults-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody(root: Path, work: Path, command: str) -> subprocess.CompletedProcess:
    """Run the exporter as nobody: a readable copy of the package, every file readable but the
    ones the test made mode 0."""
    shutil.copytree(REPO / "exporter", work / "pkg" / "exporter", dirs_exist_ok=True)
    for p in [work, *work.rglob("*")]:
        if not p.is_symlink() and p.stat().st_mode & 0o777 != 0:
            os.chmod(p, p.stat().st_mode | 0o044 | (0o011 if p.is_dir() else 0))
    import prometheus_client
    site = Path(prometheus_client.__file__).parent.parent
    env = dict(os.environ, PYTHONPATH=f"{work / 'pkg'}{os.pathsep}{site}")
    return subprocess.run([require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "exporter", command, "--path.rootfs", str(root)],
                          capture_output=True, text=True, env=env, cwd="/", timeout=120)


@pytest.mark.parametrize("victim, collectors", [
    (f"usr/lib/modules/{K2}/updates/dkms/acpi_call.ko", {"module", "dkms"}),  # dkms compares it with its build
    (f"boot/initrd.img-{K2}", {"initramfs"}),
    ("boot/grub/grub.cfg", {"bootloader"}),
    ("sys/firmware/efi/efivars", {"secureboot"}),
    ("usr/src/acpi-call-1.2.2/dkms.conf", {"dkms"}),
])
def test_eacces_makes_readiness_unknown(public_tmp, victim, collectors):
    from hostbuilder import Host
    host = two_kernels(Host(public_tmp / "h"))
    os.chmod(host.path(victim), 0)
    out = _as_nobody(host.root, public_tmp, "metrics")
    assert out.returncode == 0, out.stderr[-2000:]
    m = samples(out.stdout)
    failed = {labels["collector"] for labels, v in m["dkms_scrape_collector_success"] if v == 0}
    assert failed == collectors, out.stderr[-2000:]           # only those that met the mode-0 file
    assert all(errors_of(m, c) >= 1 for c in collectors) and "Permission denied" in out.stderr
    assert "dkms_next_boot_ready" not in m
    check = _as_nobody(host.root, public_tmp, "check")
    assert check.returncode == 2, check.stdout[-1000:] + check.stderr[-1000:]


# ------------------------------------------------------------------------------------------------
# EIO, FIFOs


def test_eio_reading_a_module_file(host, capsys, monkeypatch):
    """A bad sector under one module file: EIO from read(), as the kernel reports it."""
    two_kernels(host)
    real = filecache.read_bounded

    def failing(path, limit):
        if str(path).endswith(f"{K2}/updates/dkms/acpi_call.ko"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real(path, limit)

    monkeypatch.setattr(filecache, "read_bounded", failing)
    monkeypatch.setattr(module_collector, "read_bounded", failing)
    m = scrape_metrics(host.root, capsys)
    assert errors_of(m, "module") == 1 and success_of(m, "module") == 0
    assert_unknown(host.root, m, capsys)


@pytest.mark.parametrize("victim, collector", [
    (f"usr/lib/modules/{K2}/modules.dep", "kernel"),
    ("boot/grub/grub.cfg", "bootloader"),
    (f"usr/lib/modules/{K2}/updates/dkms/acpi_call.ko", "module"),
    ("var/lib/dpkg/status", "packages"),
])
def test_a_fifo_where_a_file_was_is_an_error_not_a_hang(host, capsys, victim, collector):
    """Opening a FIFO for reading blocks until a writer comes: the reader refuses anything that
    is not a regular file, before reading."""
    two_kernels(host)
    path = host.path(victim)
    path.unlink()
    os.mkfifo(path)
    start = time.monotonic()
    m = scrape_metrics(host.root, capsys, "--scrape.timeout", "20s")
    assert time.monotonic() - start < 10
    assert errors_of(m, collector) >= 1 and success_of(m, collector) == 0
    if collector != "packages":   # held packages are not readiness evidence
        assert_unknown(host.root, m, capsys)


def test_a_collector_stuck_on_a_read_is_timed_out_left_alone_and_resumed(host, monkeypatch):
    """A read of make.log that hangs (a dead NFS server: the host reader never blocks on a FIFO,
    so the hang is the test's hook).  The scrape is served at its deadline with dkms failed; the
    next one does not start a second stuck thread; once the read returns, the scrape after that
    is whole again."""
    two_kernels(host)
    log = host.path("var/lib/dkms/acpi-call/1.2.2/build/make.log")
    log.parent.mkdir(parents=True)
    log.write_text("DKMS make.log\n")
    unblock = threading.Event()
    real_read_ends = dkms_collector.read_ends

    def hanging(path, head, tail):
        unblock.wait(30)
        return real_read_ends(path, head, tail)

    monkeypatch.setattr(dkms_collector, "read_ends", hanging)
    scraper = Scraper(HostFS(host.root), Config(), timeout=2.5)
    start = time.monotonic()
    first = scraper.scrape()
    assert 2.4 < time.monotonic() - start < 6
    assert "timed out" in first.facts.runs["dkms"].crashed and first.readiness.verdict == "unknown"
    assert all(r.success for n, r in first.facts.runs.items() if n != "dkms")
    start = time.monotonic()
    second = scraper.scrape()
    assert time.monotonic() - start < 2.0       # not waiting for it again
    assert "still running" in second.facts.runs["dkms"].crashed and second.readiness.verdict == "unknown"
    assert scraper.inflight.names() == ["dkms"]
    unblock.set()                               # the hung read returns
    deadline = time.monotonic() + 10
    while scraper.inflight.names() and time.monotonic() < deadline:
        time.sleep(0.05)
    log.unlink()
    third = scraper.scrape()
    assert third.facts.runs["dkms"].success and third.readiness.verdict == "ready"


def test_a_stuck_kernel_collector_leaves_its_dependents_unstarted(host, monkeypatch):
    two_kernels(host)
    release = threading.Event()
    real = registry.by_name()["kernel"]

    def stuck(ctx):
        release.wait(30)
        return real.collect(ctx)

    monkeypatch.setitem(registry.REGISTRY, "kernel", dataclasses.replace(real, collect=stuck))
    try:
        start = time.monotonic()
        s = Scraper(HostFS(host.root), Config(), timeout=1.0).scrape()
        assert time.monotonic() - start < 3
        runs = s.facts.runs
        assert "timed out" in runs["kernel"].crashed
        assert "waiting for kernel" in runs["module"].crashed and "waiting for kernel" in runs["initramfs"].crashed
        assert runs["dkms"].success and runs["packages"].success and runs["bootloader"].success
        assert s.readiness.verdict == "unknown"
    finally:
        release.set()


# ------------------------------------------------------------------------------------------------
# symlink loops, thousands of entries, huge sparse files


def _loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name + ".loop")
    path.with_name(path.name + ".loop").symlink_to(path.name)


@pytest.mark.parametrize("victim, collector", [
    (f"usr/lib/modules/{K2}/updates/dkms/acpi_call.ko", "kernel"),   # found by the kernel collector's walk
    (f"usr/lib/modules/{K2}/modules.dep", "kernel"),
    ("boot/grub/grub.cfg", "bootloader"),
    ("var/lib/dpkg/status", "packages"),
])
def test_symlink_loops_are_read_errors(host, capsys, victim, collector):
    two_kernels(host)
    _loop(host.path(victim))
    m = scrape_metrics(host.root, capsys)
    assert errors_of(m, collector) >= 1 and success_of(m, collector) == 0
    others = {labels["collector"] for labels, v in m["dkms_scrape_collector_success"] if v == 0} - {collector}
    assert others <= {"module", "dkms"}   # they read the same module file, or lack the kernel's facts
    if collector != "packages":
        assert_unknown(host.root, m, capsys)


def test_an_initramfs_that_is_a_symlink_loop_is_a_missing_image(host, capsys):
    """The bootloader cannot load it either: a fact about the kernel (not ready), not a read error."""
    two_kernels(host)
    _loop(host.path(f"boot/initrd.img-{K2}"))
    m = scrape_metrics(host.root, capsys)
    assert ({"kernel": K2, "reason": "initramfs_missing"}, 1.0) in m["dkms_kernel_problem"]
    assert m["dkms_next_boot_ready"] == [({}, 0.0)]
    assert main(["check", "--path.rootfs", str(host.root)]) == 1


def test_a_lib_modules_with_thousands_of_entries(host, capsys):
    """3,000 orphaned module dirs and 25,000 files under one kernel's updates/: the walk stops at
    its bound, says so, and the scrape stays quick, cold and warm."""
    two_kernels(host)
    mods = host.path("usr/lib/modules")
    for i in range(3000):
        (mods / f"5.10.0-{i}-amd64").mkdir()
    junk = mods / K2 / "updates" / "junk"
    junk.mkdir()
    for i in range(25_000):
        (junk / f"f{i}.txt").touch()
    scraper = Scraper(HostFS(host.root), Config(), timeout=60)
    start = time.monotonic()
    s = scraper.scrape()
    cold = time.monotonic() - start
    assert len(s.facts.get(KernelFacts).orphans) == 3000
    assert any("more than" in e.message for e in s.facts.runs["kernel"].errors)
    assert s.readiness.verdict == "unknown"
    start = time.monotonic()
    scraper.scrape()
    warm = time.monotonic() - start
    assert cold < 20 and warm < 5, (cold, warm)


def _bytes_read() -> int:
    return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])


def test_2gib_sparse_files_named_like_an_initramfs_and_a_module(host, capsys):
    """Not read through: a sparse image is all hole (SEEK_DATA), a zstd magic followed by 2 GiB of
    zeros is refused after 1,024 empty blocks, a 2 GiB .ko is over its size bound before any read.
    Each is reported; none makes the kernel ready."""
    two_kernels(host)
    for k, head in ((K1, b""), (K2, b"\x28\xb5\x2f\xfd\x04\x58")):
        image = host.path(f"boot/initrd.img-{k}")
        with open(image, "wb") as fh:
            fh.write(head)
            fh.truncate(2 << 30)
    ko = host.path(f"usr/lib/modules/{K2}/updates/dkms/acpi_call.ko")
    with open(ko, "r+b") as fh:
        fh.truncate(2 << 30)
    before, start = _bytes_read(), time.monotonic()
    m = scrape_metrics(host.root, capsys)
    assert time.monotonic() - start < 15 and _bytes_read() - before < 64 << 20
    problems = {(l["kernel"], l["reason"]) for l, v in m["dkms_kernel_problem"]}
    assert {(K1, "initramfs_unreadable"), (K2, "initramfs_unreadable")} <= problems
    assert ({"kernel": K2, "module": "acpi_call", "dkms": "acpi-call/1.2.2", "reason": "module_unreadable"}, 1.0) \
        in m["dkms_module_problem"]
    assert errors_of(m, "dkms") >= 1        # dkms compares the installed .ko with its build: too large
    assert_unknown(host.root, m, capsys)


# ------------------------------------------------------------------------------------------------
# memory limits


def test_reads_allocate_what_the_file_holds_not_the_bound(tmp_path):
    """read(limit + 1) asked malloc for 256 MiB per module file: under an address-space limit
    every module read failed with MemoryError and the host looked undecidable."""
    from example_hosts import healthy
    root = tmp_path / "h"
    healthy(root)

    def limit_as() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (300 << 20, 300 << 20))

    out = subprocess.run([sys.executable, "-m", "exporter", "metrics", "--path.rootfs", str(root)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, preexec_fn=limit_as)
    assert out.returncode == 0 and "MemoryError" not in out.stderr, out.stderr[-2000:]
    m = samples(out.stdout)
    assert all(v == 1 for _, v in m["dkms_scrape_collector_success"]), out.stderr[-2000:]
    assert m["dkms_next_boot_ready"] == [({}, 1.0)]


# ------------------------------------------------------------------------------------------------
# the timeout's plumbing


def test_scrape_timeout_flag(host, capsys):
    from exporter.cli import duration
    assert [duration(t) for t in ("30s", "1m", "500ms", "2", "1.5s")] == [30, 60, 0.5, 2, 1.5]
    two_kernels(host)
    for bad in ("0", "-1s", "soon", "1d"):
        with pytest.raises(SystemExit) as exc:
            main(["check", "--scrape.timeout", bad, "--path.rootfs", str(host.root)])
        assert exc.value.code == 2
    assert "not a positive duration" in capsys.readouterr().err
    assert main(["check", "--scrape.timeout", "1ms", "--path.rootfs", str(host.root)]) == 2  # nothing in time
    assert "timed out" in capsys.readouterr().out


def test_depends_names_every_collector_whose_facts_another_reads():
    """A collector only sees the facts of the collectors its registration's ``after`` lists (and
    runs after them): reading ctx.previous["x"] without declaring x would silently get None."""
    used: dict[str, set[str]] = {}
    ordered = registry.collectors()
    for c in ordered:
        source = Path(sys.modules[c.collect.__module__].__file__).read_text()
        used[c.name] = set(re.findall(r"""previous(?:\.get\(|\[)["'](\w+)["']""", source))
    assert {n: deps for n, deps in used.items() if deps} == {c.name: set(c.after) for c in ordered if c.after}
    order = [c.name for c in ordered]
    assert all(order.index(d) < order.index(c.name) for c in ordered for d in c.after)
