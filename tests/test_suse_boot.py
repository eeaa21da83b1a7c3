"""SUSE's boot loaders as sdbootutil leaves them: entries on the ESP named TOKEN-RELEASE-SNAPSHOT
with ``version SNAPSHOT@RELEASE`` and the image at /TOKEN/RELEASE/linux-HASH (sdbootutil's entry
template), the default set by `sdbootutil set-default` (LoaderEntryDefault, or ``default=`` in
the ESP's grubenv for grub2-bls older than 2.13), chosen by /etc/sysconfig/bootloader."""

from __future__ import annotations

import struct

import pytest

from testkit import scrape
from exporter.facts.bootloader import BootFacts
from exporter.formats.efi import LOADER_GUID

TOKEN = "opensuse-tumbleweed"
KERNELS = ("6.11.8-1-default", "6.12.1-1-default")


def loader_var(host, name: str, value: str) -> None:
    host.write(f"sys/firmware/efi/efivars/{name}-{LOADER_GUID}", struct.pack("<I", 7) + f"{value}\0".encode("utf-16-le"))


def sdbootutil_host(host, loader: str, snapshot: int = 42):
    host.write("etc/sysconfig/bootloader", f'LOADER_TYPE="{loader}"\n')
    for k in KERNELS:
        host.kernel(k)
        host.write(f"boot/efi/loader/entries/{TOKEN}-{k}-{snapshot}.conf",
                   f"title      openSUSE Tumbleweed 20241201\nversion    {snapshot}@{k}\nsort-key   {TOKEN}\n"
                   f"options    root=UUID=3f1c rootflags=subvol=@/.snapshots/{snapshot}/snapshot\n"
                   f"linux      /{TOKEN}/{k}/linux-0123abcd\ninitrd     /{TOKEN}/{k}/initrd-4567ef01\n")
    return host


def next_boot(host):
    host.finish()
    boot = scrape(host.root).facts.get(BootFacts)
    return boot.loader, boot.next_boot, boot.entry


def test_grub2_bls_newest_entry_without_a_default(host):
    assert next_boot(sdbootutil_host(host, "grub2-bls"))[:2] == ("grub2-bls", "6.12.1-1-default")


def test_grub2_bls_follows_loader_entry_default(host):
    sdbootutil_host(host, "grub2-bls")
    loader_var(host, "LoaderEntryDefault", f"{TOKEN}-{KERNELS[0]}-42.conf")
    loader, kernel, how = next_boot(host)
    assert (loader, kernel) == ("grub2-bls", KERNELS[0]) and "LoaderEntryDefault" in how


def test_grub2_bls_grubenv_default(host):
    sdbootutil_host(host, "grub2-bls")
    host.write("boot/efi/EFI/opensuse/grubenv", f"# GRUB Environment Block\ndefault={TOKEN}-{KERNELS[0]}-42.conf\n"
               + "#" * 900)
    assert next_boot(host)[1] == KERNELS[0]


def test_systemd_boot_entries_with_snapshots(host):
    sdbootutil_host(host, "systemd-boot")
    host.write("boot/efi/loader/loader.conf", "timeout 8\n")
    loader_var(host, "LoaderEntryDefault", f"{TOKEN}-{KERNELS[0]}-42.conf")
    assert next_boot(host)[:2] == ("systemd-boot", KERNELS[0])


@pytest.mark.parametrize("value", ["grub2", "", "grub2-efi"])
def test_other_loader_types_are_not_grub2_bls(host, value):
    sdbootutil_host(host, "grub2-bls")
    host.write("etc/sysconfig/bootloader", f'LOADER_TYPE="{value}"\n')
    assert next_boot(host)[0] != "grub2-bls"
