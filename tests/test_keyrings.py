"""Which enrolled keys a target kernel verifies modules with (docs/readiness.md, "Keyrings a
kernel verifies modules with"): Debian's kernel falls back to .platform (MOK and db); an
upstream-style kernel (Arch) trusts MOK only through .machine, which needs
CONFIG_INTEGRITY_MACHINE_KEYRING and shim's MokListTrustedRT, and never db."""

from __future__ import annotations

from testkit import K2, scrape

from test_module_truth import host_with, reasons

MOKVARS = "sys/firmware/efi/mok-variables"


def arch(host, *, machine_keyring: bool, trusted_rt: bool):
    host.write("etc/os-release", 'NAME="Arch Linux"\nID=arch\n')
    cfg = host.path(f"boot/config-{K2}")
    extra = "CONFIG_SECONDARY_TRUSTED_KEYRING=y\n" + ("CONFIG_INTEGRITY_MACHINE_KEYRING=y\n" if machine_keyring else "")
    cfg.write_text(cfg.read_text() + extra)
    if trusted_rt:
        host.write(f"{MOKVARS}/MokListTrustedRT", b"\x01")
    return scrape(host.root)


def test_debian_kernel_verifies_modules_with_mok(host):
    assert reasons(host_with(host, sb=True)) == []


def test_upstream_kernel_without_machine_keyring_refuses_a_mok_key(host):
    host_with(host, sb=True)
    s = arch(host, machine_keyring=False, trusted_rt=True)
    (p,) = [p for m in s.readiness.kernel(K2).modules for p in m.problems]
    assert p.reason == "untrusted_key" and "not in a keyring" in p.detail and "MokListTrustedRT" in p.detail


def test_upstream_kernel_with_machine_keyring_but_no_trust_flag_refuses(host):
    host_with(host, sb=True)
    s = arch(host, machine_keyring=True, trusted_rt=False)
    assert reasons(s) == ["untrusted_key"]


def test_upstream_kernel_with_machine_keyring_and_mok_trusted_accepts(host):
    host_with(host, sb=True)
    s = arch(host, machine_keyring=True, trusted_rt=True)
    assert reasons(s) == []
