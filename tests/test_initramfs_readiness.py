"""Initramfs truth plugged into readiness: early-boot modules, stale and missing images."""

import os

import pytest

import exporter.collectors.initramfs as images
from testkit import K1, K2, scrape
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from hostbuilder import FIXED_MTIME



def zfs_host(host, new_image_modules=("zfake", "spl"), *, running_image=("zfake", "spl")):
    host.kernel(K1, running=True)
    host.kernel(K2)
    host.dkms("zfake", "2.1.11", dest=["zfake", "spl"])
    for k in (K1, K2):
        host.dkms_build("zfake", "2.1.11", k, dest=["zfake", "spl"])
    if running_image is not None:
        host.initramfs(K1, ["e1000e", *running_image])
    if new_image_modules is not None:
        host.initramfs(K2, ["e1000e", *new_image_modules])
    host.grub()
    host.finish()
    return host


def problems(s, kernel=K2):
    return sorted((m.module, p.reason) for m in s.readiness.kernel(kernel).modules for p in m.problems) + \
        sorted(("-", p.reason) for p in s.readiness.kernel(kernel).kernel_problems)


def test_root_on_zfs_ready(host):
    s = scrape(zfs_host(host).root)
    assert problems(s) == [] and s.readiness.verdict == "ready"
    assert all(m.early_boot and m.in_initramfs for m in s.readiness.kernel(K2).modules)


def test_new_image_without_a_module(host):
    s = scrape(zfs_host(host, ("zfake",)).root)
    assert problems(s) == [("spl", "missing_from_initramfs")]
    assert s.readiness.verdict == "not_ready"


def test_image_older_than_the_module(host):
    zfs_host(host)
    os.utime(host.path(f"usr/lib/modules/{K2}/updates/dkms/spl.ko"), (FIXED_MTIME + 60, FIXED_MTIME + 60))
    assert problems(scrape(host.root)) == [("spl", "initramfs_stale")]


def test_no_image_for_the_new_kernel(host):
    s = scrape(zfs_host(host, None).root)
    assert problems(s) == [("-", "initramfs_missing")]
    assert s.readiness.verdict == "not_ready"


def test_no_image_anywhere_is_not_a_problem(host):
    s = scrape(zfs_host(host, None, running_image=None).root)
    assert problems(s) == [] and s.readiness.verdict == "ready"


def test_modules_not_in_the_running_image_are_not_early_boot(host):
    s = scrape(zfs_host(host, ("zfake",), running_image=("zfake",)).root)
    assert problems(s) == []
    assert {m.module: m.early_boot for m in s.readiness.kernel(K2).modules} == {"zfake": True, "spl": False}


def test_config_names_an_in_tree_hba_driver(host):
    zfs_host(host, ("zfake", "spl"))
    cfg = Config(early_boot_modules=frozenset({"e1000e", "mpt3sas"}))
    s = scrape(host.root, cfg)
    assert ("mpt3sas", "file_missing") in problems(s)       # not even in the kernel's tree
    assert ("e1000e", "missing_from_initramfs") not in problems(s)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "directory", "empty"])
def test_damaged_image_is_unreadable_and_not_ready(host, damage):
    zfs_host(host)
    image = host.path(f"boot/initrd.img-{K2}")
    data = image.read_bytes()
    if damage == "truncate":
        image.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        image.write_bytes(data[:200] + b"\xff" * 64 + data[264:])
    elif damage == "empty":
        image.write_bytes(b"")
    else:
        image.unlink()
        image.mkdir()
    s = scrape(host.root)
    assert ("-", "initramfs_unreadable") in problems(s)
    assert s.readiness.verdict == "not_ready"
    detail = next(p.detail for p in s.readiness.kernel(K2).kernel_problems if p.reason == "initramfs_unreadable")
    assert "offset" in detail or "not_a_file" in detail or "empty" in detail


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_running_image_that_cannot_be_listed_leaves_early_boot_unknown(host, damage):
    """The sweep's finding: K2's image lacks zfake, which the host loads in early boot (K1's
    image has it).  With K1's image cut short (a /boot that filled while it was rewritten),
    nothing said zfake was early-boot any more, and K2 passed as ready."""
    zfs_host(host, new_image_modules=())
    assert ("zfake", "missing_from_initramfs") in problems(scrape(host.root))
    image = host.path(f"boot/initrd.img-{K1}")
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    s = scrape(host.root)
    k2 = s.readiness.kernel(K2)
    assert k2.verdict == "unknown" and s.readiness.verdict == "unknown"
    assert any("running kernel's initramfs" in why and "which modules early boot needs is unknown" in why
               for why in k2.unknown_because), k2.unknown_because
    # K1's own image is unreadable: a finding about K1, which a definite problem keeps not ready
    assert s.readiness.kernel(K1).verdict == "not_ready"


@pytest.mark.parametrize("early_boot, verdict", [(True, "unknown"), (False, "ready")])
def test_an_lzop_image_is_not_read_and_not_called_damaged(host, early_boot, verdict):
    """initramfs-tools' COMPRESS=lzop: the kernel unpacks it (CONFIG_RD_LZO), the exporter has no
    LZO decoder.  It used to be initramfs_unreadable ("the boot would fail"): a false "do not
    reboot".  Now it is not judged: unknown when K needs early-boot modules from it, else ready."""
    host.kernel(K1, running=True)
    host.kernel(K2)
    host.dkms("zfake", "2.1.11", dest=["zfake", "spl"])
    for k in (K1, K2):
        host.dkms_build("zfake", "2.1.11", k, dest=["zfake", "spl"])
    host.initramfs(K1, ["e1000e", *(("zfake", "spl") if early_boot else ())])
    host.initramfs(K2, ["e1000e", "zfake", "spl"], compression="lzop")
    host.grub()
    host.finish()
    s = scrape(host.root)
    k2 = s.readiness.kernel(K2)
    assert "initramfs_unreadable" not in {p.reason for p in k2.kernel_problems}
    assert (k2.verdict, s.readiness.verdict) == (verdict, verdict)
    if early_boot:
        assert any("is not read" in why and "lzo" in why for why in k2.unknown_because), k2.unknown_because


def test_unchanged_image_is_not_listed_again_and_a_new_one_is(host, monkeypatch):
    zfs_host(host)
    calls = []
    real = images.list_image_file
    monkeypatch.setattr(images, "list_image_file", lambda path, **kw: calls.append(str(path)) or real(path, **kw))
    scraper = Scraper(HostFS(host.root), Config())
    scraper.scrape()
    assert len(calls) == 2
    scraper.scrape()
    assert len(calls) == 2
    host.initramfs(K2, ["e1000e", "zfake"])   # update-initramfs writes a new file
    s = scraper.scrape()
    assert len(calls) == 3 and problems(s) == [("spl", "missing_from_initramfs")]
