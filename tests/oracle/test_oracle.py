"""The kernel as the oracle: for every scenario tree and every installed kernel, the exporter's
verdict per module must be what the booted kernel did with that module."""

from __future__ import annotations

import errno

import pytest

from .harness import DIRECT_TIMEOUT, SECURE_TIMEOUT
from .scenarios import scenario_names

pytestmark = [pytest.mark.oracle, pytest.mark.slow]


@pytest.mark.parametrize("scenario", scenario_names())
def test_exporter_verdicts_match_the_booted_kernel(oracle_run, scenario: str) -> None:
    mine = [c for c in oracle_run.cases if c.scenario == scenario]
    assert mine, f"no kernels in scenario {scenario}"
    rows = [row for c in mine for row in oracle_run.rows[(c.scenario, c.kernel)]]
    table = "\n".join(row.line() for row in rows)
    boots = "\n\n".join(oracle_run.result(c).describe() for c in mine
                        if any(not r.agree for r in oracle_run.rows[(c.scenario, c.kernel)]))
    assert all(row.agree for row in rows), f"exporter and kernel disagree in {scenario}:\n{table}\n\n{boots}"


def _case(oracle_run, scenario: str, which: str = "NEW_KERNEL"):
    """The case of the newest (NEW_KERNEL) or oldest (OLD_KERNEL) kernel of a scenario."""
    kernels = sorted({c.kernel for c in oracle_run.cases if c.scenario == scenario},
                     key=lambda k: [int(x) if x.isdigit() else x for x in k.replace("-", ".").split(".")])
    newest = kernels[-1] if which == "NEW_KERNEL" else kernels[0]
    return next(c for c in oracle_run.cases if c.scenario == scenario and c.kernel == newest)


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


def test_truncated_initramfs_fails_the_boot_as_the_exporter_says(oracle_run) -> None:
    case = _case(oracle_run, "initramfs_truncated")
    r = oracle_run.result(case)
    reasons = {p["reason"] for p in case.doc["kernels"][0]["problems"]}
    assert "initramfs_unreadable" in reasons, case.doc["kernels"][0]
    assert case.doc["verdict"] != "ready"
    assert r.status == "no_init", r.describe()
    assert r.unpack_error(), r.describe()  # "Initramfs unpacking failed: ..."
    assert r.panic(), r.describe()


def test_secure_boot_locks_down_and_enforces_signatures(oracle_run) -> None:
    """Through OVMF + shim + grub the signed Debian kernel runs with lockdown=integrity and
    sig_enforce; the module signed with the enrolled MOK loads, the unsigned one is refused."""
    case = _case(oracle_run, "signed_sb_on")
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


def test_secure_boot_refuses_a_key_that_was_never_enrolled(oracle_run) -> None:
    case = _case(oracle_run, "sb_mok_not_enrolled")
    assert case.spec.secure_boot is not None and not case.spec.secure_boot.mok_certificates
    r = oracle_run.result(case)
    assert r.status == "ok", r.describe()
    v4l2 = r.view.module("v4l2loopback")
    assert not v4l2.loaded and v4l2.errno == errno.EKEYREJECTED, v4l2
    assert any("Loading of module with unavailable key is rejected" in line for line in r.view.dmesg)


def test_direct_boot_neither_locks_down_nor_enforces(oracle_run) -> None:
    case = _case(oracle_run, "signed_sb_off")
    r = oracle_run.result(case)
    assert (r.view.facts["efi"], r.view.facts["sig_enforce"]) == ("no", "N"), r.view.facts
    assert r.view.facts["lockdown"].startswith("[none]")
    assert r.view.module("acpi_call").loaded  # unsigned, and loads: nothing enforces
    assert any("module verification failed" in line for line in r.view.dmesg)


def test_shims_mok_list_holds_the_trees_certificates(oracle_run) -> None:
    """The tree's MokListRT fixture (mokutil --import's MokNew) against the MokListRT the real
    shim made at boot from MokList: every certificate of the tree is in the kernel's list."""
    from virt.firmware.efi import guids, siglist

    case = _case(oracle_run, "signed_sb_on")
    r = oracle_run.result(case)
    name = "/sys/firmware/efi/mok-variables/MokListRT"
    assert name in r.view.files, sorted(r.view.files)
    booted = {sig["data"] for esl in siglist.EfiSigDB(r.view.files[name])
              if str(esl.guid) == guids.EfiCertX509 for sig in esl}
    assert set(case.spec.secure_boot.mok_certificates) <= booted


def test_a_module_built_for_another_kernel_is_refused_for_its_symbol_versions(oracle_run) -> None:
    """stale_build: the older kernel holds the newer kernel's v4l2loopback; 6.1 checks
    module_layout's CRC before anything else and refuses the file (ENOEXEC) with "disagrees about
    version of symbol module_layout"; its own acpi_call build loads."""
    case = _case(oracle_run, "stale_build", "OLD_KERNEL")
    r = oracle_run.result(case)
    assert r.status == "ok", r.describe()
    v4l2 = r.view.module("v4l2loopback")
    assert v4l2.resolved and not v4l2.loaded and v4l2.errno in (errno.ENOEXEC, errno.EINVAL), v4l2
    assert any("v4l2loopback: disagrees about version of symbol" in line for line in r.view.dmesg), r.view.dmesg
    assert r.view.module("acpi_call").loaded
    reasons = {p["reason"] for k in case.doc["kernels"] for m in k["modules"] if m["module"] == "v4l2loopback"
               for p in m["problems"]}
    assert reasons == {"symbol_version_mismatch"}, case.doc


def test_early_boot_module_missing_from_the_next_kernels_initramfs(oracle_run) -> None:
    """early_boot_missing: the running (older) kernel loads v4l2loopback from its initramfs; the
    next boot's initramfs cannot find it before the root is mounted."""
    old = oracle_run.result(_case(oracle_run, "early_boot_missing", "OLD_KERNEL"))
    assert old.status == "ok", old.describe()
    assert ("v4l2loopback", 0) in [(m, rc) for m, rc in old.view.conf_modules], old.view.conf_modules
    assert old.view.module("v4l2loopback").early_loaded
    new = oracle_run.result(_case(oracle_run, "early_boot_missing"))
    assert new.status == "ok", new.describe()
    m = new.view.module("v4l2loopback")
    assert m.in_initramfs is False and not m.early_loaded and m.loaded, m  # loads only from the root fs


def test_stale_initramfs_loads_the_build_before_the_rebuild(oracle_run) -> None:
    """initramfs_stale: the initramfs' copy (unsigned) is another file than the rebuilt, signed one
    on disk, and it is the one the kernel loads in early boot."""
    r = oracle_run.result(_case(oracle_run, "initramfs_stale"))
    assert r.status == "ok", r.describe()
    m = r.view.module("v4l2loopback")
    assert m.in_initramfs and m.early_loaded, m
    assert m.initramfs_sha256 and m.tree_sha256 and m.initramfs_sha256 != m.tree_sha256, m
    forced = oracle_run.result(_case(oracle_run, "initramfs_forced")).view.module("v4l2loopback")
    assert forced.initramfs_sha256 == forced.tree_sha256 == m.initramfs_sha256, (forced, m)


def test_a_module_depmod_does_not_know_cannot_be_found(oracle_run) -> None:
    r = oracle_run.result(_case(oracle_run, "depmod_stale"))
    assert r.status == "ok", r.describe()
    v4l2 = r.view.module("v4l2loopback")
    assert v4l2.resolved is False and not v4l2.loaded, v4l2
    assert r.view.module("acpi_call").loaded


def test_the_oracle_stage_fits_the_ci_budget(oracle_run) -> None:
    """A few minutes on 2 cores without KVM (the figures go to docs/testing.md)."""
    assert oracle_run.seconds < 8 * 60, oracle_run.report()


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
