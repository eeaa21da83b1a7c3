"""Every file a scrape reads on the RHEL, Fedora and SUSE trees, damaged one at a time
(tests/damage_sweep.py): no damage may crash the exporter or pass a host that is not ready.

Excepted, because GRUB then boots another entry, and that kernel is ready:
- grubenv: GRUB reads an empty or foreign environment block as no saved_entry (load_env fails,
  or the grub.cfg's ``[ -s grubenv ]`` skips it) and boots entry 0, the newest kernel;
- BLS entries: blscfg skips an entry without a ``linux`` key, and a saved_entry it cannot find
  falls back to the first entry;
- grub.cfg (SUSE's, without BLS): cut in half it ends inside the submenu; GRUB reports the
  syntax error, keeps the entries it read and boots entry 0 (an empty or foreign grub.cfg gives
  it no entry at all, and that is an error the sweep requires);
- /proc/sys/kernel/osrelease: see tests/realhost/test_damaged_files.py.

The sweep found, and this guards: a grub.cfg that gives GRUB no menu entry (empty, overwritten)
read as "assume the newest kernel", where GRUB stops at its command line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from damage_sweep import sweep

from .conftest import RhelHost

pytestmark = pytest.mark.rhelhost

EXCEPTED = ("/boot/grub2/grubenv", "/boot/loader/entries/", "/proc/sys/kernel/osrelease")


@pytest.mark.parametrize("scenario, excepted", [
    ("rhel9_kabi_break", EXCEPTED),
    ("rhel9_weak_missing", EXCEPTED),
    ("fedora_akmods", EXCEPTED),
    ("suse_kmp_break", EXCEPTED + ("/boot/grub2/grub.cfg",)),
    ("suse_kmp_unlinked", EXCEPTED),
])
def test_no_damaged_file_crashes_a_collector_or_passes_the_host(rhelhost: RhelHost, tmp_path: Path,
                                                               scenario: str, excepted: tuple[str, ...]) -> None:
    root = tmp_path / "tree"
    subprocess.run(["cp", "-al", str(rhelhost.tree(scenario)), str(root)], check=True)
    base, files, failures = sweep(root, excepted)
    assert base == "not_ready"
    assert "/boot/grub2/grub.cfg" in files and len(files) >= 15, files
    assert not failures, "\n".join(failures)


def test_a_grub_cfg_without_entries_is_an_error_not_the_newest_kernel(rhelhost: RhelHost, tmp_path: Path) -> None:
    """rhel9_kabi_break boots the broken 54 (saved_entry); with grub.cfg emptied, GRUB has no
    menu and stops at its prompt: not "the newest kernel, which is ready"."""
    from exporter.config import Config
    from exporter.host.rootfs import HostFS
    from exporter.scrape import Scraper

    root = tmp_path / "tree"
    subprocess.run(["cp", "-al", str(rhelhost.tree("rhel9_kabi_break")), str(root)], check=True)
    cfg = root / "boot/grub2/grub.cfg"
    cfg.unlink()
    cfg.write_text("# GRUB2 configuration, overwritten\nset timeout=5\n")
    s = Scraper(HostFS(root), Config()).scrape()
    assert s.readiness.verdict == "unknown"
    [error] = s.facts.runs["bootloader"].errors
    assert (error.path, error.message) == ("/boot/grub2/grub.cfg", "no menu entry: GRUB would stop at its command line")
