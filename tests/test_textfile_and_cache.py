"""textfile output, and the file-identity cache that makes an unchanged host cost stat calls."""

import builtins
import os

from example_hosts import healthy, reboot_trap
from testkit import samples

from exporter.cli import main
from exporter.collectors import bootloader
from exporter.distro import debian
from exporter.config import Config
from exporter.formats import symvers
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.verdict import loader


def test_textfile_is_complete_and_has_timestamp(tmp_path):
    reboot_trap(tmp_path / "h")
    out = tmp_path / "dkms.prom"
    assert main(["textfile", "--output", str(out), "--path.rootfs", str(tmp_path / "h")]) == 0
    names = set(samples(out.read_text()))
    assert {"dkms_textfile_last_run_timestamp_seconds", "dkms_next_boot_ready"} <= names
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dkms.prom")] == []


def test_textfile_unwritable_dir_is_exit_1(tmp_path, capsys):
    assert main(["textfile", "--output", str(tmp_path / "nope" / "x.prom"), "--path.rootfs", str(tmp_path)]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_unchanged_host_is_not_reread(tmp_path, monkeypatch):
    root = tmp_path / "h"
    reboot_trap(root)
    scraper = Scraper(HostFS(root), Config())
    first = scraper.scrape()
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *a, **kw):
        f = real_open(file, *a, **kw)  # a failed open (probing for an absent file) costs what a stat does
        # procfs/sysfs files are read on every scrape by design: they have no usable identity
        if str(file).startswith(str(root)) and not str(file).startswith((str(root / "proc"), str(root / "sys"))):
            opened.append(str(file))
        return f

    monkeypatch.setattr(builtins, "open", counting_open)
    misses = scraper.cache.misses
    second = scraper.scrape()
    assert opened == [] and scraper.cache.misses == misses
    assert second.readiness == first.readiness

    status = root / "var/lib/dpkg/status"
    st = status.stat()
    os.utime(status, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    scraper.scrape()
    assert opened == [str(status)]


def test_warm_scrape_walks_no_export_table(tmp_path, monkeypatch):
    """A warm scrape of an unchanged host opens nothing, parses nothing and derives no verdict
    from a kernel's export table again: the table's summaries and each module's symbol check are
    computed once per identity of the files they come from (counted, not timed)."""
    root = tmp_path / "h"
    healthy(root)
    scraper = Scraper(HostFS(root), Config())
    calls = {"check": 0, "names": 0}
    real_check, real_names = loader._check_versions, symvers.module_name_of

    def counting_check(*a, **kw):
        calls["check"] += 1
        return real_check(*a, **kw)

    def counting_names(*a, **kw):
        calls["names"] += 1
        return real_names(*a, **kw)

    monkeypatch.setattr(loader, "_check_versions", counting_check)
    monkeypatch.setattr(symvers, "module_name_of", counting_names)
    first = scraper.scrape()
    assert calls["check"] >= 4 and calls["names"] >= 1   # 2 DKMS modules x 2 kernels, checked once
    calls.update(check=0, names=0)
    misses = scraper.cache.misses
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *a, **kw):
        f = real_open(file, *a, **kw)
        if str(file).startswith(str(root)) and not str(file).startswith((str(root / "proc"), str(root / "sys"))):
            opened.append(str(file))
        return f

    monkeypatch.setattr(builtins, "open", counting_open)
    for _ in range(3):
        again = scraper.scrape()
    assert calls == {"check": 0, "names": 0} and opened == [] and scraper.cache.misses == misses
    assert again.readiness == first.readiness


def test_warm_scrape_derives_no_package_audit_or_boot_menu_again(tmp_path, monkeypatch):
    """The collectors' warm gather is stat calls and cached lookups: dpkg's audit over every
    package and grub.cfg's tokenising run once per identity of their files (counted, not timed);
    a new entry in /var/lib/dpkg/info (a companion of the status file) derives them again."""
    root = tmp_path / "h"
    healthy(root)
    scraper = Scraper(HostFS(root), Config())
    calls = {"audit": 0, "grub": 0}
    real_audit, real_grub = debian.audit, bootloader.parse_grub_cfg

    def counting_audit(*a, **kw):
        calls["audit"] += 1
        return real_audit(*a, **kw)

    def counting_grub(*a, **kw):
        calls["grub"] += 1
        return real_grub(*a, **kw)

    monkeypatch.setattr(debian, "audit", counting_audit)
    monkeypatch.setattr(bootloader, "parse_grub_cfg", counting_grub)
    first = scraper.scrape()
    assert calls == {"audit": 1, "grub": 1}
    for _ in range(3):
        again = scraper.scrape()
    assert calls == {"audit": 1, "grub": 1}
    assert again.facts.runs["packages"].facts == first.facts.runs["packages"].facts
    info = root / "var/lib/dpkg/info"
    (info / "new-package.list").write_text("")
    os.utime(info, ns=(info.stat().st_atime_ns, info.stat().st_mtime_ns + 1_000_000_000))
    scraper.scrape()
    assert calls["audit"] == 2


def test_module_rewritten_in_place_keeping_size_and_mtime_is_read_again(tmp_path):
    """cp -p / rsync -t / a restore: same inode, size and mtime, new content. Only the ctime
    tells, so a running scraper must key its cache on it (or keep the old verdict until restart)."""
    root = tmp_path / "h"
    healthy(root)
    scraper = Scraper(HostFS(root), Config())
    assert scraper.scrape().readiness.verdict == "ready"
    module = next(root.glob("usr/lib/modules/*/updates/dkms/acpi_call.ko*"))
    st = module.stat()
    with open(module, "r+b") as f:          # in place: same inode, same size
        f.write(b"\0" * st.st_size)
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = module.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    misses = scraper.cache.misses
    readiness = scraper.scrape().readiness
    assert scraper.cache.misses > misses
    problems = {p.reason for k in readiness.kernels for m in k.modules for p in m.problems}
    assert "module_unreadable" in problems


def test_the_verdict_is_derived_once_per_state_of_the_facts(tmp_path, monkeypatch):
    """A warm scrape of an unchanged host reuses the previous verdict (assess is not called);
    a changed fact makes a new one."""
    from exporter.scrape import scraper as scraper_mod
    root = tmp_path / "h"
    healthy(root)
    calls = []
    real = scraper_mod.assess
    monkeypatch.setattr(scraper_mod, "assess", lambda facts, config: calls.append(1) or real(facts, config))
    scraper = Scraper(HostFS(root), Config())
    first = scraper.scrape().readiness
    second = scraper.scrape().readiness
    assert second is first and len(calls) == 1
    for module in root.glob("usr/lib/modules/*/updates/dkms/acpi_call.ko*"):
        module.unlink()
    third = scraper.scrape().readiness
    assert len(calls) == 2 and third.verdict == "not_ready"


def test_a_module_changed_only_in_its_signed_bytes_gets_a_new_verdict(tmp_path):
    """One bit of .text flipped in place, size and mtime restored: the parsed module compares
    in its vermagic and signer; the verdict memo must not reuse the old verdict."""
    root = tmp_path / "h"
    healthy(root)
    scraper = Scraper(HostFS(root), Config())
    assert scraper.scrape().readiness.verdict == "ready"
    module = next(root.glob("usr/lib/modules/*/updates/dkms/acpi_call.ko"))
    st = module.stat()
    with open(module, "r+b") as f:            # one bit of .text (the first section), trailer intact
        f.seek(64)
        byte = f.read(1)
        f.seek(64)
        f.write(bytes([byte[0] ^ 0x01]))
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    readiness = scraper.scrape().readiness
    problems = {p.reason for k in readiness.kernels for m in k.modules for p in m.problems}
    assert "signature_invalid" in problems
