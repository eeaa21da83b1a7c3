"""Path roots (node_exporter's convention) and the command line."""

import os

import pytest

from example_hosts import healthy
from testkit import cli, scrape

from exporter.cli import build_parser, main
from exporter.host.rootfs import HostFS


def test_absolute_links_resolve_inside_the_root(tmp_path):
    root = tmp_path / "r"
    (root / "usr/src/hdr").mkdir(parents=True)
    (root / "usr/lib/modules/K").mkdir(parents=True)
    os.symlink("usr/lib", root / "lib")
    os.symlink("/usr/src/hdr", root / "usr/lib/modules/K/build")
    fs = HostFS(root)
    assert fs.path("/lib/modules/K/build/x") == root / "usr/src/hdr/x"
    assert fs.realpath("/lib/modules/K/build") == "/usr/src/hdr"
    assert fs.path("/../../etc/passwd") == root / "etc/passwd"  # '..' never leaves the root


def test_link_escaping_with_dotdot_stays_inside(tmp_path):
    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    os.symlink("../../../../../etc", root / "a/evil")
    assert HostFS(root).path("/a/evil/passwd") == root / "etc/passwd"


def test_loop_is_an_error(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    with pytest.raises(OSError):
        HostFS(root).path("/a/x")


def test_procfs_and_sysfs_default_under_rootfs_or_explicit(tmp_path):
    fs = HostFS(tmp_path)
    assert fs.proc("sys/kernel/osrelease") == tmp_path / "proc/sys/kernel/osrelease"
    fs = HostFS(tmp_path, procfs="/proc", sysfs="/sys")
    assert str(fs.proc("sys/kernel/osrelease")) == "/proc/sys/kernel/osrelease"
    assert str(fs.sys("module")) == "/sys/module"


def test_procfs_flag_chooses_the_running_kernel(tmp_path, capsys):
    healthy(tmp_path / "h")
    proc = tmp_path / "otherproc/sys/kernel"
    proc.mkdir(parents=True)
    (proc / "osrelease").write_text("6.1.0-28-amd64\n")
    _, out = cli(capsys, "metrics", "--path.rootfs", str(tmp_path / "h"), "--path.procfs", str(tmp_path / "otherproc"))
    assert 'dkms_running_kernel_info{kernel="6.1.0-28-amd64"} 1.0' in out


def test_disabling_a_collector_readiness_depends_on_makes_it_unknown(tmp_path, capsys):
    healthy(tmp_path / "h")
    assert main(["check", "--path.rootfs", str(tmp_path / "h")]) == 0
    assert main(["check", "--no-collector.dkms", "--path.rootfs", str(tmp_path / "h")]) == 2
    _, out = cli(capsys, "metrics", "--no-collector.dpkg", "--path.rootfs", str(tmp_path / "h"))
    assert 'collector="dpkg"' not in out and "dkms_next_boot_ready 1.0" in out


def test_flags_before_or_after_the_subcommand(tmp_path):
    p = build_parser()
    a = p.parse_args(["--path.rootfs", "/host", "check", "--json"])
    b = p.parse_args(["check", "--json", "--path.rootfs", "/host"])
    assert a.rootfs == b.rootfs == "/host" and a.json and b.json


def test_bad_config_file_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "c.yml"
    cfg.write_text("required_modules: zfs\n")
    assert main(["check", "--config.file", str(cfg), "--path.rootfs", str(tmp_path)]) == 2
    assert "must be a list" in capsys.readouterr().err
    cfg.write_text("requierd_modules: [zfs]\n")
    assert main(["check", "--config.file", str(cfg), "--path.rootfs", str(tmp_path)]) == 2
    assert "unknown keys" in capsys.readouterr().err


def test_required_and_ignored_modules(tmp_path):
    from exporter.config import Config
    healthy(tmp_path / "h")
    s = scrape(tmp_path / "h", Config(required_modules=frozenset({"zfs"}), ignored_modules=frozenset({"acpi_call"})))
    kv = s.readiness.kernel("6.1.0-28-amd64")
    assert {m.module for m in kv.modules} == {"zfs", "v4l2loopback"}
    assert [p.reason for m in kv.modules if m.module == "zfs" for p in m.problems] == ["file_missing"]
    assert s.readiness.verdict == "not_ready"
