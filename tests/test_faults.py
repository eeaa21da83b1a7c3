"""Faults a real host produces: files that vanish or change between listing and reading, EACCES,
EIO, FIFOs, symlink loops, thousands of entries, a 2 GiB sparse "initramfs", a collector stuck on
a read.  Every time: the scrape is served within its timeout, the failure is counted against its
collector (dkms_scrape_collector_errors), nothing crashes, and readiness is "unknown" (check exits
2, dkms_next_boot_ready is absent) whenever a collector it depends on failed: never "ready"."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import resource
import sys
import threading
import time
from pathlib import Path

import pytest
from testkit import (K1, K2, errors_of, failed_collectors, metrics_of, run_as_nobody, run_exporter, samples,
                     scrape, success_of, two_kernels, wait_for)

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

UPDATES = f"/lib/modules/{K2}/updates/dkms"   # where the kernel collector finds K2's DKMS module


def assert_unknown(root: Path, m: dict, capsys) -> None:
    """Readiness undecidable, in both outputs: no dkms_next_boot_ready, and `check` exits 2."""
    assert "dkms_next_boot_ready" not in m and m["dkms_next_boot_readiness_unknown"] == [({}, 1.0)]
    assert main(["check", "--path.rootfs", str(root)]) == 2
    capsys.readouterr()


def test_the_fixture_host_is_ready_to_begin_with(host, capsys):
    """Every fault below turns this ready host into an undecidable or not-ready one."""
    two_kernels(host)
    m = metrics_of(host.root, capsys)
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

    def listdir(self, hostpath, **kw):
        names = real(self, hostpath, **kw)
        if hostpath.rstrip("/") == where and names and name in names and not done:
            done.append(f"{self.collector}:{hostpath}")
            action(Path(self.fs.local(hostpath)) / name)
        return names

    monkeypatch.setattr(Context, "listdir", listdir)
    return done


def test_module_file_vanishes_after_listing(host, capsys, monkeypatch):
    two_kernels(host)
    done = _after_listing(monkeypatch, UPDATES, "acpi_call.ko", lambda p: p.unlink())
    s = scrape(host.root)
    assert done and not any(r.crashed for r in s.facts.runs.values())
    k2 = s.readiness.kernel(K2)
    assert k2.verdict != "ready" and s.readiness.verdict != "ready"


def test_module_file_replaced_by_garbage_after_listing(host, monkeypatch):
    two_kernels(host)
    _after_listing(monkeypatch, UPDATES, "acpi_call.ko", lambda p: p.write_bytes(b"\x7fELF truncated"))
    s = scrape(host.root)
    mod = next(m for m in s.readiness.kernel(K2).modules if m.module == "acpi_call")
    assert "module_unreadable" in {p.reason for p in mod.problems} and s.readiness.verdict == "not_ready"


def test_module_file_replaced_by_a_directory_after_listing(host, capsys, monkeypatch):
    two_kernels(host)

    def to_dir(p: Path) -> None:
        p.unlink()
        p.mkdir()

    _after_listing(monkeypatch, UPDATES, "acpi_call.ko", to_dir)
    m = metrics_of(host.root, capsys)
    assert errors_of(m, "module") >= 1 and success_of(m, "module") == 0
    assert "dkms_next_boot_ready" not in m


# ------------------------------------------------------------------------------------------------
# EACCES, as a real unprivileged user (chmod 000 means nothing to root)


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
    out = run_as_nobody(public_tmp, "metrics", "--path.rootfs", str(host.root))
    assert out.returncode == 0, out.stderr[-2000:]
    m = samples(out.stdout)
    assert failed_collectors(m) == collectors, out.stderr[-2000:]           # only those that met the mode-0 file
    assert all(errors_of(m, c) >= 1 for c in collectors) and "Permission denied" in out.stderr
    assert "dkms_next_boot_ready" not in m
    check = run_as_nobody(public_tmp, "check", "--path.rootfs", str(host.root))
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

    class EioReader:
        """The module collector streams module files (open_regular + reads): every read fails."""

        def __init__(self, fh) -> None:
            self._fh = fh

        def fileno(self) -> int:
            return self._fh.fileno()

        def seek(self, *args) -> int:
            return self._fh.seek(*args)

        def read(self, n: int = -1) -> bytes:
            raise OSError(errno.EIO, os.strerror(errno.EIO), "acpi_call.ko")

        def __enter__(self) -> "EioReader":
            return self

        def __exit__(self, *exc) -> None:
            self._fh.close()

    real_open = module_collector.open_regular

    def failing_open(path):
        fh = real_open(path)
        return EioReader(fh) if str(path).endswith(f"{K2}/updates/dkms/acpi_call.ko") else fh

    monkeypatch.setattr(filecache, "read_bounded", failing)
    monkeypatch.setattr(module_collector, "open_regular", failing_open)
    m = metrics_of(host.root, capsys)
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
    m = metrics_of(host.root, capsys, "--scrape.timeout", "20s")
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
    wait_for("the hung read to return", lambda: not scraper.inflight.names(), timeout=10, every=0.05)
    log.unlink()
    third = scraper.scrape()
    assert third.facts.runs["dkms"].success and third.readiness.verdict == "ready"


@contextlib.contextmanager
def stuck_collector(monkeypatch, name: str):
    """The collector ``name`` blocked (up to 30 s) until the block ends, then run as usual."""
    release = threading.Event()
    real = registry.by_name()[name]

    def stuck(ctx):
        release.wait(30)
        return real.collect(ctx)

    monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(real, collect=stuck))
    try:
        yield
    finally:
        release.set()


def test_a_stuck_kernel_collector_leaves_its_dependents_unstarted(host, monkeypatch):
    two_kernels(host)
    with stuck_collector(monkeypatch, "kernel"):
        start = time.monotonic()
        s = Scraper(HostFS(host.root), Config(), timeout=1.0).scrape()
        assert time.monotonic() - start < 3
        runs = s.facts.runs
        assert "timed out" in runs["kernel"].crashed
        assert "waiting for kernel" in runs["module"].crashed and "waiting for kernel" in runs["initramfs"].crashed
        assert runs["dkms"].success and runs["packages"].success and runs["bootloader"].success
        assert s.readiness.verdict == "unknown"


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
    m = metrics_of(host.root, capsys)
    assert errors_of(m, collector) >= 1 and success_of(m, collector) == 0
    others = failed_collectors(m) - {collector}
    assert others <= {"module", "dkms"}   # they read the same module file, or lack the kernel's facts
    if collector != "packages":
        assert_unknown(host.root, m, capsys)


def test_an_initramfs_that_is_a_symlink_loop_is_a_missing_image(host, capsys):
    """The bootloader cannot load it either: a fact about the kernel (not ready), not a read error."""
    two_kernels(host)
    _loop(host.path(f"boot/initrd.img-{K2}"))
    m = metrics_of(host.root, capsys)
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
    m = metrics_of(host.root, capsys)
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

    out = run_exporter("metrics", "--path.rootfs", str(root), timeout=120, preexec_fn=limit_as)
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
    declared = {c.name: set(c.after) | set(c.uses) for c in ordered if c.after or c.uses}
    assert {n: deps for n, deps in used.items() if deps} == declared
    order = [c.name for c in ordered]
    assert all(order.index(d) < order.index(c.name) for c in ordered for d in c.after + c.uses)


def test_a_stuck_collector_another_only_uses_does_not_hold_it_back(host, monkeypatch):
    """module uses secureboot's facts to spare decompressing kernel images, but needs them for
    no verdict: with secureboot stuck past the stall point, module runs without them (and reads
    the images), where a stuck kernel collector would leave it unstarted."""
    two_kernels(host)
    with stuck_collector(monkeypatch, "secureboot"):
        s = Scraper(HostFS(host.root), Config(), timeout=2.0).scrape()
        runs = s.facts.runs
        assert "timed out" in runs["secureboot"].crashed
        assert runs["module"].success and runs["module"].facts.kernels
        assert s.readiness.verdict == "unknown"     # secureboot is readiness evidence


def test_a_disabled_collector_another_uses_leaves_it_running(host, capsys):
    two_kernels(host)
    m = metrics_of(host.root, capsys, "--no-collector.secureboot", "--no-collector.os")
    assert success_of(m, "module") == 1


def test_run_order_pulls_dependencies_in_just_before_and_refuses_cycles():
    """By name, each collector's after/uses placed right before it (module right after os and
    secureboot, packages after it); an unknown dependency or a cycle fails at start-up."""
    names = [c.name for c in registry.collectors()]
    assert names.index("module") == names.index("secureboot") + 1 < names.index("packages")
    make = lambda name, after=(), uses=(): registry.Collector(name, lambda ctx: None, object, after, uses=uses)  # noqa: E731
    order = registry._run_order({"a": make("a", uses=("c",)), "b": make("b"), "c": make("c", after=("d",)), "d": make("d")})
    assert [c.name for c in order] == ["d", "c", "a", "b"]
    for broken in ({"a": make("a", after=("b",)), "b": make("b", uses=("a",))}, {"a": make("a", after=("x",))}):
        with pytest.raises(ValueError, match="cannot be met"):
            registry._run_order(broken)
