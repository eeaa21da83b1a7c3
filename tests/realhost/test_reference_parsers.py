"""The reference parsers on the exact formats of bookworm's tools, and on output they do not know
(which must raise, not shrink to an empty set that would agree with anything).  No build needed."""

from __future__ import annotations

import pytest

from .facts import facts_from_metrics
from .reference import (
    DkmsStatusLine,
    ReferenceFormatError,
    module_name,
    parse_depmod_symbols,
    parse_dkms_sources,
    parse_dkms_status,
    parse_dpkg_audit,
    parse_enrolled_sha1,
    parse_initramfs_copies,
    parse_lsinitramfs,
    parse_modinfo_tsv,
    parse_modversions_tsv,
    parse_sb_state,
    parse_show_depends,
    parse_showhold,
)


def test_dkms_status_lines_and_notes() -> None:
    text = ("acpi-call/1.2.2: added\n"
            "v4l2loopback/0.12.7, 6.1.0-56-amd64, x86_64: installed "
            "(original_module exists) (WARNING! Diff between built and installed module!)\n"
            "zfs/2.1.11, 6.1.0-55-amd64, x86_64: built\n")
    assert parse_dkms_status(text) == [
        DkmsStatusLine("acpi-call", "1.2.2", "", "", "added"),
        DkmsStatusLine("v4l2loopback", "0.12.7", "6.1.0-56-amd64", "x86_64", "installed",
                       ("original_module_exists", "built_installed_differ")),
        DkmsStatusLine("zfs", "2.1.11", "6.1.0-55-amd64", "x86_64", "built"),
    ]


def test_dkms_status_notes_in_dkms_3_2_words() -> None:
    """Debian 13's dkms 3.2.2 (module_status_built_extra, reworded in 3.1.3), as its module_deleted
    scenario printed it."""
    text = ("v4l2loopback/0.15.0, 6.12.118+deb13-amd64, x86_64: installed "
            "(Differences between built and installed modules)\n"
            "acpi-call/1.2.2, 6.12.118+deb13-amd64, x86_64: installed (Original modules exist) "
            "(Built modules are missing in the kernel modules folder)\n"
            "v4l2loopback/0.15.0: broken\n")
    assert [line.flags for line in parse_dkms_status(text)] == [
        ("built_installed_differ",), ("original_module_exists", "missing_built_modules"), ()]


@pytest.mark.parametrize("line", [
    "Error! Could not locate dkms.conf file.",
    "v4l2loopback/0.12.7, 6.1.0-56-amd64, x86_64: installed (something new)",
    "v4l2loopback, 0.12.7, 6.1.0-56-amd64, x86_64: installed",   # dkms 2.x layout
    "v4l2loopback/0.12.7: installed",
])
def test_dkms_status_unknown_output_raises(line: str) -> None:
    with pytest.raises(ReferenceFormatError):
        parse_dkms_status(line + "\n")


def test_dpkg_audit_headings_map_to_states() -> None:
    text = ("The following packages have been unpacked but not yet configured.\n"
            "They must be configured using dpkg --configure or the configure\n"
            "menu option in dselect for them to work:\n"
            " dkms-exporter-test-unpacked dkms-exporter test package\n"
            " a-package-name-longer-than-twenty a description\n"
            "\n"
            "The following packages are in a mess due to serious problems during\n"
            "installation.  They must be reinstalled for them (and any packages\n"
            "that depend on them) to function properly:\n"
            " openssl              Secure Sockets Layer toolkit\n\n")
    assert parse_dpkg_audit(text) == [("dkms-exporter-test-unpacked", "unpacked"),
                                      ("a-package-name-longer-than-twenty", "unpacked"),
                                      ("openssl", "reinstreq")]
    assert parse_dpkg_audit("") == []


def test_dpkg_audit_unknown_heading_raises() -> None:
    with pytest.raises(ReferenceFormatError):
        parse_dpkg_audit("The following packages are frobnicated:\n foo  bar\n")


def test_modinfo_rows_group_per_file_and_bad_rows_raise() -> None:
    path = "/usr/lib/modules/6.1.0-56-amd64/updates/dkms/acpi_call.ko"
    rows = "".join(f"{path}\t{f}\t{v}\n" for f, v in
                   [("vermagic", "6.1.0-56-amd64 SMP preempt mod_unload modversions"), ("signer", ""),
                    ("sig_key", ""), ("sig_hashalgo", "")])
    (f,) = parse_modinfo_tsv(rows)
    assert (f.name, f.kernel, f.signer) == ("acpi_call", "6.1.0-56-amd64", "")
    with pytest.raises(ReferenceFormatError):
        parse_modinfo_tsv(f"{path}\tauthor\tsomeone\n")
    with pytest.raises(ReferenceFormatError):
        parse_modinfo_tsv(rows.splitlines(keepends=True)[0])  # fields missing
    with pytest.raises(ReferenceFormatError):
        parse_modinfo_tsv("/opt/x.ko\tvermagic\tx\n/opt/x.ko\tsigner\t\n/opt/x.ko\tsig_key\t\n/opt/x.ko\tsig_hashalgo\t\n")


def test_lsinitramfs_module_names() -> None:
    text = ("usr/lib/modules/6.1.0-56-amd64/kernel/drivers/media/v4l2-core/videodev.ko\n"
            "usr/lib/modules/6.1.0-56-amd64/updates/dkms/v4l2loopback.ko\n"
            "usr/lib/modules/6.1.0-56-amd64/kernel/drivers/hid/hid-generic.ko.xz\n"
            "usr/lib/modules/6.1.0-56-amd64/modules.dep\n.\nbin\n")
    assert set(parse_lsinitramfs(text)) == {"videodev", "v4l2loopback", "hid_generic"}
    assert module_name("x/acpi-call.ko.zst") == "acpi_call"
    with pytest.raises(ReferenceFormatError):
        parse_lsinitramfs("/absolute/path.ko\n")


def test_showhold_and_mokutil() -> None:
    assert parse_showhold("dkms\nlinux-image-6.1.0-55-amd64\n\n") == {"dkms", "linux-image-6.1.0-55-amd64"}
    with pytest.raises(ReferenceFormatError):
        parse_showhold("E: Could not open lock file\n")
    assert parse_sb_state("SecureBoot enabled\n", "") == "enabled"
    assert parse_sb_state("SecureBoot disabled\n", "") == "disabled"
    assert parse_sb_state("", "EFI variables are not supported on this system\n") == "unsupported"
    with pytest.raises(ReferenceFormatError):
        parse_sb_state("", "Failed to read SecureBoot\n")
    assert parse_enrolled_sha1("[key 1]\nSHA1 Fingerprint: 61:CB:73:5f\nCertificate:\n") == {"61cb735f"}


def test_metrics_mapping_reads_labels_and_notices_missing_families() -> None:
    text = ("# HELP dkms_module_state x\n# TYPE dkms_module_state gauge\n"
            'dkms_module_state{module="acpi-call",version="1.2.2",kernel="",arch="",state="added"} 1\n'
            "# HELP dkms_package_unconfigured x\n# TYPE dkms_package_unconfigured gauge\n"
            'dkms_package_unconfigured{package="p",state="half_configured"} 1\n'
            "# HELP dkms_package_held x\n# TYPE dkms_package_held gauge\n")
    facts = facts_from_metrics(text)
    assert facts.module_states == {("acpi-call", "1.2.2", "", "", "added")}
    assert facts.unconfigured == {("p", "half-configured")}
    assert facts.held == frozenset()          # declared, no samples: nothing held
    assert facts.signatures is None           # never declared: not exposed


K = "6.1.0-54-amd64"


def test_show_depends_names_the_modules_own_file_or_not_found() -> None:
    out = (f"insmod /lib/modules/{K}/kernel/drivers/media/mc/mc.ko \n"
           f"insmod /lib/modules/{K}/kernel/drivers/media/v4l2-core/videodev.ko \n"
           f"insmod /lib/modules/{K}/updates/dkms/v4l2loopback.ko \n")
    assert parse_show_depends(out, "", "0") == f"/lib/modules/{K}/updates/dkms/v4l2loopback.ko"
    missing = f"modprobe: FATAL: Module v4l2loopback not found in directory /lib/modules/{K}\n"
    assert parse_show_depends("", missing, "1\n") is None
    with pytest.raises(ReferenceFormatError):
        parse_show_depends("", "modprobe: ERROR: could not open moddep file\n", "1")
    with pytest.raises(ReferenceFormatError):
        parse_show_depends("install /bin/true\n", "", "0")


def test_depmod_symbol_warnings() -> None:
    path = f"/lib/modules/{K}/updates/dkms/v4l2loopback.ko"
    text = (f"depmod: WARNING: {path} disagrees about version of symbol module_layout\n"
            f"depmod: WARNING: {path} needs unknown symbol video_ioctl2\n")
    assert parse_depmod_symbols(text, "0") == [(path, "symbol_version_mismatch", "module_layout"),
                                               (path, "unknown_symbol", "video_ioctl2")]
    assert parse_depmod_symbols("", "0") == []
    with pytest.raises(ReferenceFormatError):
        parse_depmod_symbols("depmod: ERROR: could not open directory\n", "0")
    with pytest.raises(ReferenceFormatError):
        parse_depmod_symbols("", "1")


def test_sources_modversions_and_initramfs_copies_rows() -> None:
    (src,) = parse_dkms_sources("/usr/src/acpi-call-1.2.2/dkms.conf\tacpi-call\t1.2.2\tacpi-call-dkms\tii\n")
    assert (src.module, src.version, src.package, src.package_status) == ("acpi-call", "1.2.2", "acpi-call-dkms", "ii")
    with pytest.raises(ReferenceFormatError):
        parse_dkms_sources("/opt/x/dkms.conf\tx\t1\t\t\n")
    path = f"/usr/lib/modules/{K}/updates/dkms/acpi_call.ko"
    assert parse_modversions_tsv(f"{path}\tmodule_layout\t0x9060323f\n") == {path: {"module_layout": 0x9060323F}}
    with pytest.raises(ReferenceFormatError):
        parse_modversions_tsv(f"{path}\tmodule_layout\n")
    (copy,) = parse_initramfs_copies(f"{K}\t{path}\t{'a' * 64}\t{'b' * 64}\t100.5\t200.25\n")
    assert (copy.name, copy.differs, copy.image_mtime, copy.disk_mtime) == ("acpi_call", True, 100.5, 200.25)
    (gone,) = parse_initramfs_copies(f"{K}\t{path}\t{'a' * 64}\t-\t100.5\t-\n")
    assert (gone.disk_sha256, gone.disk_mtime, gone.differs) == ("", None, True)
    with pytest.raises(ReferenceFormatError):
        parse_initramfs_copies(f"{K}\t{path}\tnot-a-digest\t-\t1\t-\n")


def test_metrics_mapping_reads_problem_reasons_per_kind() -> None:
    text = ("# HELP dkms_module_problem x\n# TYPE dkms_module_problem gauge\n"
            'dkms_module_problem{kernel="K",module="v4l2loopback",dkms="v4l2loopback/0.12.7",'
            'reason="symbol_version_mismatch"} 1\n'
            'dkms_module_problem{kernel="K",module="acpi_call",dkms="acpi-call/1.2.2",reason="not_in_depmod"} 1\n'
            "# HELP dkms_module_unregistered x\n# TYPE dkms_module_unregistered gauge\n"
            'dkms_module_unregistered{module="acpi-call",version="1.2.2"} 1\n')
    facts = facts_from_metrics(text)
    assert facts.symbol_problems == {("v4l2loopback", "K", "symbol_version_mismatch")}
    assert facts.not_in_depmod == {("acpi_call", "K")}
    assert facts.initramfs_stale == frozenset() and facts.missing_from_initramfs == frozenset()
    assert facts.unregistered == {("acpi-call", "1.2.2")}
    assert facts.early_boot is None
