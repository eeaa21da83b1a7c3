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


def _damaged(data: bytes) -> bytes:
    """One bit of the RSA signature value flipped (the PKCS#7 ends with it, before the 12-byte
    module_signature struct and the magic)."""
    out = bytearray(data)
    out[-(len(b"~Module signature appended~\n") + 12 + 16)] ^= 0x01
    return bytes(out)


def test_kernel_build_key_with_an_unreadable_image_is_recognised_by_name(host):
    """The DKMS module signed with K's own build key (the key of K's in-tree modules), which
    is not enrolled; K's image is the fixture's stand-in, so its certificates cannot be read:
    the signer is taken by name and serial, as before (no untrusted_key)."""
    s = host_with(host, sb=True, key="kernel-build")
    assert s.facts.runs["module"].facts.kernels[K2].builtin_keys_error
    assert reasons(s) == []


def test_an_enrolled_build_key_is_verified_not_taken_by_name(host):
    """The same signer, now also enrolled: K's image is not read (the enrolled key names the
    signer), so nothing may fall back to the by-name rule; a damaged signature is
    signature_invalid, as the kernel would refuse it."""
    from hostbuilder import module_elf
    damaged = _damaged(module_elf("acpi_call", K2, key="kernel-build", version="1.2.2"))
    s = host_with(host, sb=True, key="kernel-build", mok=("dkms-mok", "kernel-build"), content=damaged)
    kmf = s.facts.runs["module"].facts.kernels[K2]
    assert kmf.builtin_keys is None and kmf.builtin_keys_error == ""    # not read
    assert reasons(s) == ["signature_invalid"]
