"""The kernel as the oracle: for every scenario tree and every installed kernel, the exporter's
verdict per module must be what the booted kernel did with that module."""

from __future__ import annotations

import errno
import re

import pytest

from .harness import DIRECT_TIMEOUT, SECURE_TIMEOUT
from .scenarios import GENERATIONS, scenario_names

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

# bookworm's ids stay the bare scenario names; a later generation's are "trixie:NAME"
PAIRS = [pytest.param(g, s, id=s if g == "bookworm" else f"{g}:{s}") for g in GENERATIONS for s in scenario_names(g)]
DEBIAN = [g for g in GENERATIONS if g in ("bookworm", "trixie")]


@pytest.mark.parametrize(("generation", "scenario"), PAIRS)
def test_exporter_verdicts_match_the_booted_kernel(oracle_run, generation: str, scenario: str) -> None:
    mine = [c for c in oracle_run.cases if c.scenario == scenario and c.generation == generation]
    assert mine, f"no kernels in scenario {scenario} ({generation})"
    rows = [row for c in mine for row in oracle_run.rows[(c.scenario, c.kernel)]]
    table = "\n".join(row.line() for row in rows)
    boots = "\n\n".join(oracle_run.result(c).describe() for c in mine
                        if any(not r.agree for r in oracle_run.rows[(c.scenario, c.kernel)]))
    assert all(row.agree for row in rows), f"exporter and kernel disagree in {scenario}:\n{table}\n\n{boots}"


def _case(oracle_run, scenario: str, which: str = "NEW_KERNEL", generation: str = "bookworm"):
    """The case of the newest (NEW_KERNEL) or oldest (OLD_KERNEL) kernel of a scenario."""
    mine = [c for c in oracle_run.cases if c.scenario == scenario and c.generation == generation]
    kernels = sorted({c.kernel for c in mine},
                     key=lambda k: [int(x) if x.isdigit() else x for x in re.split(r"[-.+]", k)])
    newest = kernels[-1] if which == "NEW_KERNEL" else kernels[0]
    return next(c for c in mine if c.kernel == newest)


def test_every_boot_reached_the_oracle_init_or_failed_for_its_initramfs(oracle_run) -> None:
    """No boot hung; only the truncated image failed to boot."""
    for case in oracle_run.cases:
        r = oracle_run.result(case)
        assert r.status != "timeout", r.describe()
        broken = {p["reason"] for k in case.doc["kernels"] for p in k["problems"]}
        if r.status != "ok":
            assert "initramfs_unreadable" in broken, r.describe()
        limit = SECURE_TIMEOUT if case.spec.secure_boot else DIRECT_TIMEOUT
        assert r.seconds < limit


@pytest.mark.parametrize("generation", DEBIAN)
def test_truncated_initramfs_fails_the_boot_as_the_exporter_says(oracle_run, generation: str) -> None:
    case = _case(oracle_run, "initramfs_truncated", generation=generation)
    r = oracle_run.result(case)
    reasons = {p["reason"] for p in case.doc["kernels"][0]["problems"]}
    assert "initramfs_unreadable" in reasons, case.doc["kernels"][0]
    assert case.doc["verdict"] != "ready"
    assert r.status == "no_init", r.describe()
    assert r.unpack_error(), r.describe()  # "Initramfs unpacking failed: ..."
    assert r.panic(), r.describe()


@pytest.mark.parametrize("generation", DEBIAN)
def test_secure_boot_locks_down_and_enforces_signatures(oracle_run, generation: str) -> None:
    """Through OVMF + shim + grub the signed Debian kernel runs with lockdown=integrity and
    sig_enforce; the module signed with the enrolled MOK loads, the unsigned one is refused."""
    case = _case(oracle_run, "signed_sb_on", generation=generation)
    assert case.spec.secure_boot is not None and case.spec.secure_boot.mok_certificates
    r = oracle_run.result(case)
    assert r.status == "ok", r.describe()
    assert r.view.facts["efi"] == "yes"
    assert r.view.facts["lockdown"].split(",")[1] == "[integrity]", r.view.facts
    assert r.view.facts["sig_enforce"] == "Y"
    assert r.view.module("v4l2loopback").loaded, r.view.module("v4l2loopback")
    acpi = r.view.module("acpi_call")
    assert not acpi.loaded and acpi.errno == errno.EKEYREJECTED, acpi
    assert any("Loading of unsigned module is rejected" in line for line in r.view.dmesg)


@pytest.mark.parametrize("generation", DEBIAN)
def test_secure_boot_refuses_a_key_that_was_never_enrolled(oracle_run, generation: str) -> None:
    case = _case(oracle_run, "sb_mok_not_enrolled", generation=generation)
    assert case.spec.secure_boot is not None and not case.spec.secure_boot.mok_certificates
    r = oracle_run.result(case)
    assert r.status == "ok", r.describe()
    v4l2 = r.view.module("v4l2loopback")
    assert not v4l2.loaded and v4l2.errno == errno.EKEYREJECTED, v4l2
    assert any("Loading of module with unavailable key is rejected" in line for line in r.view.dmesg)


@pytest.mark.parametrize("generation", DEBIAN)
def test_direct_boot_neither_locks_down_nor_enforces(oracle_run, generation: str) -> None:
    case = _case(oracle_run, "signed_sb_off", generation=generation)
    r = oracle_run.result(case)
    assert (r.view.facts["efi"], r.view.facts["sig_enforce"]) == ("no", "N"), r.view.facts
    assert r.view.facts["lockdown"].startswith("[none]")
    assert r.view.module("acpi_call").loaded  # unsigned, and loads: nothing enforces
    assert any("module verification failed" in line for line in r.view.dmesg)


@pytest.mark.parametrize("generation", DEBIAN)
def test_shims_mok_list_holds_the_trees_certificates(oracle_run, generation: str) -> None:
    """The tree's MokListRT fixture (mokutil --import's MokNew) against the MokListRT the real
    shim made at boot from MokList: every certificate of the tree is in the kernel's list."""
    from virt.firmware.efi import guids, siglist

    case = _case(oracle_run, "signed_sb_on", generation=generation)
    r = oracle_run.result(case)
    name = "/sys/firmware/efi/mok-variables/MokListRT"
    assert name in r.view.files, sorted(r.view.files)
    booted = {sig["data"] for esl in siglist.EfiSigDB(r.view.files[name])
              if str(esl.guid) == guids.EfiCertX509 for sig in esl}
    assert set(case.spec.secure_boot.mok_certificates) <= booted


@pytest.mark.parametrize("generation", DEBIAN)
def test_a_module_built_for_another_kernel_is_refused_for_its_symbol_versions(oracle_run, generation: str) -> None:
    """stale_build: the older kernel holds the newer kernel's v4l2loopback; 6.1 checks
    module_layout's CRC before anything else and refuses the file (ENOEXEC) with "disagrees about
    version of symbol module_layout"; its own acpi_call build loads."""
    case = _case(oracle_run, "stale_build", "OLD_KERNEL", generation=generation)
    r = oracle_run.result(case)
    assert r.status == "ok", r.describe()
    v4l2 = r.view.module("v4l2loopback")
    assert v4l2.resolved and not v4l2.loaded and v4l2.errno in (errno.ENOEXEC, errno.EINVAL), v4l2
    assert any("v4l2loopback: disagrees about version of symbol" in line for line in r.view.dmesg), r.view.dmesg
    assert r.view.module("acpi_call").loaded
    reasons = {p["reason"] for k in case.doc["kernels"] for m in k["modules"] if m["module"] == "v4l2loopback"
               for p in m["problems"]}
    assert reasons == {"symbol_version_mismatch"}, case.doc


@pytest.mark.parametrize("generation", DEBIAN)
def test_early_boot_module_missing_from_the_next_kernels_initramfs(oracle_run, generation: str) -> None:
    """early_boot_missing: the running (older) kernel loads v4l2loopback from its initramfs; the
    next boot's initramfs cannot find it before the root is mounted."""
    old = oracle_run.result(_case(oracle_run, "early_boot_missing", "OLD_KERNEL", generation=generation))
    assert old.status == "ok", old.describe()
    assert ("v4l2loopback", 0) in [(m, rc) for m, rc in old.view.conf_modules], old.view.conf_modules
    assert old.view.module("v4l2loopback").early_loaded
    new = oracle_run.result(_case(oracle_run, "early_boot_missing", generation=generation))
    assert new.status == "ok", new.describe()
    m = new.view.module("v4l2loopback")
    assert m.in_initramfs is False and not m.early_loaded and m.loaded, m  # loads only from the root fs


@pytest.mark.parametrize("generation", DEBIAN)
def test_stale_initramfs_loads_the_build_before_the_rebuild(oracle_run, generation: str) -> None:
    """initramfs_stale: the initramfs' copy (unsigned) is another file than the rebuilt, signed one
    on disk, and it is the one the kernel loads in early boot."""
    r = oracle_run.result(_case(oracle_run, "initramfs_stale", generation=generation))
    assert r.status == "ok", r.describe()
    m = r.view.module("v4l2loopback")
    assert m.in_initramfs and m.early_loaded, m
    assert m.initramfs_sha256 and m.tree_sha256 and m.initramfs_sha256 != m.tree_sha256, m
    forced = oracle_run.result(_case(oracle_run, "initramfs_forced", generation=generation)).view.module("v4l2loopback")
    assert forced.initramfs_sha256 == forced.tree_sha256 == m.initramfs_sha256, (forced, m)


@pytest.mark.parametrize("generation", DEBIAN)
def test_a_module_depmod_does_not_know_cannot_be_found(oracle_run, generation: str) -> None:
    r = oracle_run.result(_case(oracle_run, "depmod_stale", generation=generation))
    assert r.status == "ok", r.describe()
    v4l2 = r.view.module("v4l2loopback")
    assert v4l2.resolved is False and not v4l2.loaded, v4l2
    assert r.view.module("acpi_call").loaded


@pytest.mark.parametrize("generation", DEBIAN)
def test_compressed_modules_go_to_the_kernels_decompressor(oracle_run, generation: str) -> None:
    """Debian 13's modules are .ko.xz and its kernel decompresses xz itself
    (CONFIG_MODULE_DECOMPRESS: /sys/module/compression says xz), so they go to finit_module with
    MODULE_INIT_COMPRESSED_FILE, as kmod gives them; Debian 12's are plain ELF files."""
    r = oracle_run.result(_case(oracle_run, "healthy", generation=generation))
    assert r.status == "ok", r.describe()
    (dkms_file,) = [f for f, _ in r.view.module("v4l2loopback").loads if "v4l2loopback" in f]
    if generation == "bookworm":
        assert dkms_file.endswith("/v4l2loopback.ko") and r.view.load_via[dkms_file] == "plain", r.view.load_via
    else:
        assert r.view.facts["module_compression"] == "xz", r.view.facts
        assert dkms_file.endswith("/v4l2loopback.ko.xz") and r.view.load_via[dkms_file] == "kernel-xz", r.view.load_via
    assert r.view.module("v4l2loopback").loaded


@pytest.mark.skipif("trixie" not in GENERATIONS, reason="DKMS_EXPORTER_REALHOST_GENERATIONS leaves out trixie")
def test_a_crc64_ko_xz_is_refused_by_the_kernels_decompressor(oracle_run) -> None:
    """xz_crc64 (Debian 13): the DKMS .ko.xz recompressed with `xz --check=crc64`, what dkms 3.0's
    `xz -f` writes.  The kernel decompresses it itself and refuses it (EINVAL, "decompression
    failed with status 6"); the exporter says module_unreadable (it said working before)."""
    case = _case(oracle_run, "xz_crc64", generation="trixie")
    r = oracle_run.result(case)
    assert r.status == "ok", r.describe()
    v4l2 = r.view.module("v4l2loopback")
    assert not v4l2.loaded and v4l2.errno == errno.EINVAL, v4l2
    assert any("decompression failed with status 6" in line for line in r.view.dmesg), r.view.dmesg
    reasons = {p["reason"] for k in case.doc["kernels"] for m in k["modules"] if m["module"] == "v4l2loopback"
               for p in m["problems"]}
    assert reasons == {"module_unreadable"}, case.doc


@pytest.mark.parametrize("generation", DEBIAN)
def test_the_enrolled_mok_is_in_the_keyring_the_exporter_expects(oracle_run, generation: str) -> None:
    """Where the MOK went: a kernel with CONFIG_INTEGRITY_MACHINE_KEYRING (and
    SECONDARY_TRUSTED_KEYRING) puts it in .machine when shim sets MokListTrustedRT, else in
    .platform.  Either way the Debian kernel verifies modules with it (the exporter trusts MOK on
    Debian: the platform-keyring patch); this pins which one each generation uses."""
    case = _case(oracle_run, "signed_sb_on", generation=generation)
    r = oracle_run.result(case)
    cfg = (case.tree / "boot" / f"config-{case.kernel}").read_text()
    machine = "CONFIG_INTEGRITY_MACHINE_KEYRING=y" in cfg and "CONFIG_SECONDARY_TRUSTED_KEYRING=y" in cfg
    trusted_rt = "/sys/firmware/efi/mok-variables/MokListTrustedRT" in r.view.files
    if machine and trusted_rt:
        # shim's MokListRT starts with its vendor certificate (Debian's Secure Boot CA), which
        # reaches .machine without any enrolled MOK too: the tree's MOKs are the difference
        without = oracle_run.result(_case(oracle_run, "sb_mok_not_enrolled", generation=generation)).view.keyrings
        count = {k: 0 if v == "empty" else int(v) for k, v in (("on", r.view.keyrings.get(".machine", "empty")),
                                                                 ("off", without.get(".machine", "empty")))}
        assert count["on"] == count["off"] + len(case.spec.secure_boot.mok_certificates), (r.view.keyrings, without)
    else:
        assert r.view.keyrings.get(".machine", "empty") == "empty", r.view.keyrings
    assert r.view.module("v4l2loopback").loaded


def test_the_oracle_stage_fits_the_ci_budget(oracle_run) -> None:
    """A few minutes on 2 cores without KVM for both generations (the figures go to
    docs/testing.md).  Judged by QEMU's CPU time, two VMs at a time: the wall time on a machine
    shared with other runs says more about them than about the oracle (the last full run: 731 s
    of QEMU CPU, 2921 s wall at load 17-19).  A hang is caught per boot (killed at its timeout,
    test_every_boot_reached_the_oracle_init_or_failed_for_its_initramfs)."""
    assert oracle_run.cpu_seconds() < 2 * 8 * 60, oracle_run.report()


@pytest.mark.parametrize("generation", DEBIAN)
def test_the_canaries_boot_every_run_and_answer_as_their_records(oracle_run, generation: str) -> None:
    """Records (tests/oracle/records.py) replay a boot of identical bytes; the canaries never: per
    generation a direct and a Secure Boot boot run QEMU on every run, and what the kernel did now
    must be what the record of the same bytes says it did (the previous run's; on a first run, the
    record just written, read back)."""
    from .harness import answer, parse_console

    mine = [oracle_run.boots[k] for k in oracle_run.canaries
            if any(c.generation == generation and c.spec.key() == k for c in oracle_run.cases)]
    assert sorted(b.spec.secure_boot is not None for b in mine) == [False, True], [b.describe() for b in mine]
    for b in mine:
        assert not b.replayed and b.status == "ok", b.describe()
        assert b.recorded_console is not None, f"no record was written for the canary {b.spec.release}"
        assert answer(parse_console(b.recorded_console)) == answer(b.view), b.describe()


def _rhel_case(oracle_run, scenario: str, kernel_abi: str):
    return next(c for c in oracle_run.cases if c.scenario == scenario and f"-{kernel_abi}-" in c.kernel)


def test_weak_modules_decision_is_the_kernels(oracle_run) -> None:
    """RHEL layout: the kmod built for 56 loads into 57 through its weak-updates link (their
    symbol versions are the same); without the link 57 cannot find it, though the file itself
    loads (weak_update_missing); 54 refuses the file for its symbol versions (kabi_mismatch)."""
    from .harness import extra_payload_path
    new = oracle_run.cases and sorted({c.kernel for c in oracle_run.cases if c.scenario == "rhel9_healthy"})[-1]
    abi = new.split("-")[1]
    healthy = oracle_run.result(_rhel_case(oracle_run, "rhel9_healthy", abi))
    assert healthy.status == "ok" and healthy.view.module("kabidemo").loaded, healthy.describe()
    missing = _rhel_case(oracle_run, "rhel9_weak_missing", abi)
    r = oracle_run.result(missing)
    assert r.view.module("kabidemo").resolved is False, r.view.module("kabidemo")
    (candidate,) = missing.spec.extra_files
    assert r.view.extra[extra_payload_path(candidate)] is None, r.describe()
    broken = next(c for c in oracle_run.cases if c.scenario == "rhel9_kabi_break" and c.kernel != "6.1.0-56-amd64")
    r = oracle_run.result(broken)
    (candidate,) = broken.spec.extra_files
    assert r.view.extra[extra_payload_path(candidate)] in (errno.ENOEXEC, errno.EINVAL), r.describe()
    assert any("kabidemo: disagrees about version of symbol" in line for line in r.view.dmesg), r.view.dmesg


def test_secure_boot_refuses_a_module_changed_after_signing(oracle_run) -> None:
    """One bit of .text flipped after sign-file, the trailer intact: the exporter says
    signature_invalid and the kernel, which found the enrolled key, refuses the digest."""
    case = _case(oracle_run, "sb_module_changed")
    (m,) = [m for k in case.doc["kernels"] if k["kernel"] == case.kernel for m in k["modules"]
            if m["module"] == "v4l2loopback"]
    assert [p["reason"] for p in m["problems"]] == ["signature_invalid"], m
    r = oracle_run.result(case)
    assert r.status == "ok", r.describe()
    v4l2 = r.view.module("v4l2loopback")
    assert not v4l2.loaded and v4l2.errno in (errno.EKEYREJECTED, errno.EBADMSG), v4l2


def test_a_mok_certificate_in_dbx_revokes_nothing_on_debian(oracle_run) -> None:
    """Debian's kernel has no CONFIG_SYSTEM_REVOCATION_LIST: an EFI_CERT_X509 dbx entry is passed
    to the stub add_key_to_revocation_list(), so the module that certificate signed still loads
    and the exporter must not call it revoked (docs/readiness.md, "Revocations")."""
    case = _case(oracle_run, "sb_mok_revoked_dbx")
    assert case.spec.secure_boot is not None and case.spec.secure_boot.dbx_certificates
    r = oracle_run.result(case)
    assert r.status == "ok", r.describe()
    assert r.view.module("v4l2loopback").loaded, r.view.module("v4l2loopback")
