"""Next-boot kernel from GRUB (Debian's grub.cfg shape), BLS and systemd-boot."""

import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testkit import require_tool, scrape
from hostbuilder import ROOT_UUID
from exporter.collectors.bootloader import grub_next_boot
from exporter.formats.grub import parse_grubenv
from exporter.facts.bootloader import BootFacts
from exporter.facts.kernel import KernelFacts

K = ["6.1.0-25-amd64", "6.1.0-27-amd64", "6.1.0-100-amd64"]  # newest is -100 (dpkg order)


def grub_host(host, **kw):
    for k in K:
        host.kernel(k, running=k == K[1])
    host.grub(**kw)
    host.finish()
    return scrape(host.root)


def test_default_zero_is_newest_by_dpkg_order(host):
    s = grub_host(host)
    assert s.facts.get(BootFacts).next_boot == "6.1.0-100-amd64"
    assert s.readiness.next_boot == s.facts.get(KernelFacts).newest == "6.1.0-100-amd64"


def test_numeric_submenu_path(host):
    # 1>2: "Advanced options", third entry = second kernel's normal entry (entries: 100, 100 rec, 27, ...)
    assert grub_host(host, default="1>2").facts.get(BootFacts).next_boot == "6.1.0-27-amd64"


def test_saved_entry_with_id_path(host):
    s = grub_host(host, default="saved",
                  saved_entry=f"gnulinux-advanced-{ROOT_UUID}>gnulinux-6.1.0-25-amd64-advanced-{ROOT_UUID}")
    assert s.facts.get(BootFacts).next_boot == "6.1.0-25-amd64"
    assert "saved_entry" in s.facts.get(BootFacts).entry


def test_saved_entry_title_path(host):
    s = grub_host(host, default="saved", saved_entry="Advanced options for Debian GNU/Linux>"
                                                     "Debian GNU/Linux, with Linux 6.1.0-27-amd64")
    assert s.facts.get(BootFacts).next_boot == "6.1.0-27-amd64"


def test_next_entry_wins_once(host):
    s = grub_host(host, default="0", next_entry="1>4")
    assert s.facts.get(BootFacts).next_boot == "6.1.0-25-amd64"
    assert s.facts.get(BootFacts).entry.startswith("next_entry=")


def test_saved_but_empty_grubenv_is_entry_zero(host):
    assert grub_host(host, default="saved").facts.get(BootFacts).next_boot == "6.1.0-100-amd64"


def test_stale_saved_entry_falls_back_to_first_entry(host):
    s = grub_host(host, default="saved", saved_entry="gnulinux-5.10.0-9-amd64-advanced-x")
    assert s.facts.get(BootFacts).next_boot == "6.1.0-100-amd64"
    assert "not found" in s.facts.get(BootFacts).entry


def test_pinned_older_kernel_is_a_target_beside_the_newest(host):
    s = grub_host(host, default="1>2")
    assert set(s.readiness.targets) == {"6.1.0-27-amd64", "6.1.0-100-amd64"}


def test_no_bootloader_is_unknown_and_newest_assumed(host):
    for k in K:
        host.kernel(k)
    host.finish()
    s = scrape(host.root)
    assert s.facts.get(BootFacts).next_boot is None
    assert s.readiness.targets == ("6.1.0-100-amd64",)
    assert any("unknown" in n for n in s.readiness.notes)


@pytest.mark.parametrize("text", ["", "# overwritten\nset timeout=5\n", "\x00" * 512,
                                  "set default=0\nif [ x ]; then\n  insmod part_gpt\nfi\n"])
def test_a_grub_cfg_that_gives_grub_no_menu_entry_is_an_error(host, text):
    """GRUB shows its menu only when it has entries (grub-core/normal/main.c); without one it
    stops at its command line, and the reboot comes up in no kernel: never "the newest"."""
    grub_host(host)
    host.write("boot/grub/grub.cfg", text)
    s = scrape(host.root)
    assert s.facts.get(BootFacts).next_boot is None
    assert s.readiness.verdict == "unknown"
    assert [(e.path, e.message) for e in s.facts.runs["bootloader"].errors] == [
        ("/boot/grub/grub.cfg", "no menu entry: GRUB would stop at its command line")]


@pytest.mark.parametrize("line", ["configfile /boot/grub/real.cfg", "source ${prefix}/custom.cfg"])
def test_a_grub_cfg_that_loads_another_is_not_judged_empty(host, line):
    """A stub that hands over to another file (the EFI partition's grub.cfg on Debian and RHEL 9)
    has no entries of its own; which kernel it boots is unknown, not an error."""
    grub_host(host)
    host.write("boot/grub/grub.cfg", f"search --no-floppy --fs-uuid --set=dev {ROOT_UUID}\n{line}\n")
    s = scrape(host.root)
    assert s.facts.get(BootFacts).next_boot is None and not s.facts.runs["bootloader"].errors
    assert s.readiness.verdict == "ready"


def test_grubenv_escapes_and_padding():
    env = parse_grubenv(b"# GRUB Environment Block\nsaved_entry=a\\\\b\nnext_entry=\n" + b"#" * 900)
    assert env == {"saved_entry": "a\\b", "next_entry": ""}


def test_separate_boot_partition_paths():
    cfg = ("set default=\"0\"\nmenuentry 'Ubuntu' $menuentry_id_option 'gnulinux-simple-x' {\n"
           "\tlinux\t/vmlinuz-6.8.0-100-generic root=/dev/sda2 ro\n}\n")
    assert grub_next_boot(cfg, {}).next_boot == "6.8.0-100-generic"


def test_bls_saved_entry(host):
    for k in ("5.14.0-70.el9.x86_64", "5.14.0-427.13.1.el9_4.x86_64"):
        host.kernel(k)
        host.write(f"boot/loader/entries/abc-{k}.conf", f"title Red Hat ({k})\nversion {k}\n"
                                                        f"linux /vmlinuz-{k}\ninitrd /initramfs-{k}.img\n")
    host.write("boot/grub2/grub.cfg", "set default=\"${saved_entry}\"\nblscfg\n")
    host.write("boot/grub2/grubenv", "# GRUB Environment Block\nsaved_entry=abc-5.14.0-70.el9.x86_64\n")
    host.finish()
    s = scrape(host.root)
    assert (s.facts.get(BootFacts).loader, s.facts.get(BootFacts).next_boot) == ("grub-bls", "5.14.0-70.el9.x86_64")
    host.write("boot/grub2/grubenv", "# GRUB Environment Block\n")
    assert scrape(host.root).facts.get(BootFacts).next_boot == "5.14.0-427.13.1.el9_4.x86_64"  # newest first


def test_systemd_boot_oneshot_efivar(host):
    for k in ("6.8.0-45-generic", "6.8.0-50-generic"):
        host.kernel(k)
        host.write(f"boot/efi/loader/entries/mid-{k}.conf", f"title Linux {k}\nversion {k}\n"
                                                            f"linux /mid/{k}/linux\n")
    host.write("boot/efi/loader/loader.conf", "default mid-*\ntimeout 3\n")
    host.finish()
    assert scrape(host.root).facts.get(BootFacts).next_boot == "6.8.0-50-generic"
    name = "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
    data = struct.pack("<I", 7) + "mid-6.8.0-45-generic.conf\0".encode("utf-16-le")
    host.write(f"sys/firmware/efi/efivars/{name}", data)
    s = scrape(host.root)
    assert (s.facts.get(BootFacts).loader, s.facts.get(BootFacts).next_boot) == ("systemd-boot", "6.8.0-45-generic")


@pytest.mark.parametrize("loader", ["systemd-boot", "grub"])
def test_arch_entry_names_the_pkgbase_image_of_an_installed_kernel(host, loader):
    """Arch boots /vmlinuz-linux (named after the package): it is the release whose pkgbase is
    'linux', not a kernel that is not installed."""
    k = "6.9.7-arch1-1"
    host.kernel(k, image=False, running=True)
    host.write(f"usr/lib/modules/{k}/vmlinuz", b"MZ arch kernel")
    host.write(f"usr/lib/modules/{k}/pkgbase", "linux\n")
    host.write("boot/vmlinuz-linux", b"MZ arch kernel")
    if loader == "systemd-boot":
        host.write("boot/loader/loader.conf", "default arch.conf\n")
        host.write("boot/loader/entries/arch.conf", "title Arch Linux\nlinux /vmlinuz-linux\n"
                                                    "initrd /initramfs-linux.img\n")
    else:
        host.write("boot/grub/grub.cfg", "set default=\"0\"\nmenuentry 'Arch Linux' {\n"
                                         "  linux /vmlinuz-linux root=/dev/vda1\n  initrd /initramfs-linux.img\n}\n")
    host.finish()
    s = scrape(host.root)
    boot = s.facts.get(BootFacts)
    assert (boot.loader, boot.next_boot) == (loader, k)
    assert "pkgbase" in boot.detail
    assert s.readiness.next_boot == k and k in s.readiness.targets
    assert not any("not installed" in n for n in s.readiness.notes)
    assert s.readiness.verdict == "ready"


def test_a_pkgbase_name_no_kernel_claims_stays_not_installed(host):
    host.kernel("6.9.7-arch1-1", running=True)
    host.write("boot/loader/loader.conf", "default arch.conf\n")
    host.write("boot/loader/entries/arch.conf", "title Arch\nlinux /vmlinuz-linux-lts\n")
    host.finish()
    s = scrape(host.root)
    assert s.facts.get(BootFacts).next_boot == "linux-lts"
    assert s.readiness.verdict == "not_ready"
    assert any("not installed" in n for n in s.readiness.notes)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
                       st.text(st.sampled_from(list("ab\\n=# \t\n\\\\é")), max_size=12), min_size=1, max_size=4))
def test_grubenv_reads_what_the_real_grub_editenv_writes(tmp_path_factory, values):
    """grub-editenv escapes backslashes and newlines in what it writes; what we read back is what
    was set, and what `grub-editenv list` prints."""
    tool = require_tool("grub-editenv")
    env = tmp_path_factory.mktemp("env") / "grubenv"
    subprocess.run([tool, str(env), "create"], check=True)
    subprocess.run([tool, str(env), "set", *(f"{k}={v}" for k, v in values.items())], check=True)
    listed = subprocess.run([tool, str(env), "list"], check=True, capture_output=True).stdout.decode()
    parsed = parse_grubenv(env.read_bytes())
    assert parsed == values
    assert "".join(f"{k}={v}\n" for k, v in parsed.items()) == listed


def test_grubenv_backslash_takes_the_next_byte_as_it_is():
    assert parse_grubenv(b"# GRUB Environment Block\na=1\\nz\nb=x\\\ny\n###") == {"a": "1nz", "b": "x\ny"}


LOADER = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"


def loader_var(host, name: str, value: str) -> None:
    host.write(f"sys/firmware/efi/efivars/{name}-{LOADER}",
               struct.pack("<I", 7) + f"{value}\0".encode("utf-16-le"))


@pytest.fixture()
def sdboot(host):
    """Three systemd-boot entries (newest first in its menu: c, b, a) on an ESP at /boot/efi."""
    for k, name in (("6.12.1-1-amd64", "a"), ("6.12.2-1-amd64", "b"), ("6.12.3-1-amd64", "c")):
        host.kernel(k)
        host.write(f"boot/efi/loader/entries/{name}.conf", f"title {name}\nversion {k}\nlinux /{name}/linux\n")
    return host


def next_boot(host) -> tuple[str | None, str]:
    host.finish()
    boot = scrape(host.root).facts.get(BootFacts)
    return boot.next_boot, boot.entry


def test_loader_conf_keeps_the_last_value_of_a_repeated_key(sdboot):
    sdboot.write("boot/efi/loader/loader.conf", "default a.conf\ntimeout 3\ndefault b.conf\n")
    assert next_boot(sdboot)[0] == "6.12.2-1-amd64"


@pytest.mark.parametrize("var", ["LoaderEntryOneShot", "LoaderEntryDefault"])
def test_a_variable_that_matches_no_entry_falls_through(sdboot, var):
    """boot.c config_select_default_entry: a pattern that finds nothing is passed over."""
    sdboot.write("boot/efi/loader/loader.conf", "default a.conf\n")
    loader_var(sdboot, var, "gone.conf")
    kernel, how = next_boot(sdboot)
    assert kernel == "6.12.1-1-amd64"
    assert f"{var}=gone.conf (matches no entry)" in how and "loader.conf default=a.conf" in how


def test_oneshot_wins_over_default(sdboot):
    sdboot.write("boot/efi/loader/loader.conf", "default a.conf\n")
    loader_var(sdboot, "LoaderEntryDefault", "b.conf")
    loader_var(sdboot, "LoaderEntryOneShot", "C.CONF")   # ids and patterns are case-folded
    assert next_boot(sdboot)[0] == "6.12.3-1-amd64"


@pytest.mark.parametrize("where", ["loader.conf", "LoaderEntryDefault"])
def test_saved_is_the_entry_booted_last(sdboot, where):
    sdboot.write("boot/efi/loader/loader.conf", "default @saved\n" if where == "loader.conf" else "timeout 3\n")
    if where == "LoaderEntryDefault":
        loader_var(sdboot, "LoaderEntryDefault", "@saved")
    loader_var(sdboot, "LoaderEntryLastBooted", "a.conf")
    kernel, how = next_boot(sdboot)
    assert kernel == "6.12.1-1-amd64" and "LoaderEntryLastBooted=a.conf" in how


def test_saved_with_nothing_booted_yet_is_the_first_entry(sdboot):
    sdboot.write("boot/efi/loader/loader.conf", "default @saved\n")
    assert next_boot(sdboot) == ("6.12.3-1-amd64", "first entry")
