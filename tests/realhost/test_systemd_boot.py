"""systemd-boot for real, on Debian 13: the exporter's next-boot kernel and its order of the
entries against the tree's own `bootctl list --json=short` (systemd 257), on an ESP that
`bootctl install` made and `kernel-install add` filled (tests/realhost/sdboot.sh).  One variant
per rule of the default-entry chain: none set (the first entry), loader.conf `default` (a glob),
LoaderEntryDefault over loader.conf, LoaderEntryOneShot over LoaderEntryDefault, and a OneShot
that matches nothing (fall through to loader.conf)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import scrape, slow_artifact

from exporter.facts.bootloader import BootFacts

from .conftest import trixie_variant_build, variant_env

pytestmark = pytest.mark.realhost

VARIANTS = ("plain", "conf_default", "var_default", "oneshot", "oneshot_nomatch")
# What each variant's configuration means for the next boot (bootctl must say the same).
WANT = {"plain": "NEW", "conf_default": "OLD", "var_default": "NEW", "oneshot": "OLD", "oneshot_nomatch": "OLD"}


@dataclass(frozen=True)
class Variant:
    tree: Path
    listing: list[dict]          # bootctl list --json=short
    entries: dict[str, str]      # NEW_ENTRY, OLD_ENTRY


@pytest.fixture(scope="module")
def sdboot() -> dict[str, Variant]:
    slow_artifact("the Debian 13 systemd-boot trees (tests/realhost/sdboot.sh)")
    root = trixie_variant_build("sdboot.sh", "SDBOOT_DIR", timeout=1800)
    variants = {}
    for name in VARIANTS:
        ref = root / "variants" / name / "ref"
        variants[name] = Variant(root / "variants" / name / "tree",
                                 json.loads((ref / "bootctl-list.json").read_text()), variant_env(ref))
    return variants


@pytest.mark.parametrize("name", VARIANTS)
def test_next_boot_is_bootctls_default(sdboot: dict[str, Variant], name: str) -> None:
    v = sdboot[name]
    [default] = [e for e in v.listing if e.get("isDefault")]
    # The variant is what it claims: bootctl's default is the entry its configuration names.
    assert default["id"] == v.entries[f"{WANT[name]}_ENTRY"], v.listing
    boot = scrape(v.tree).facts.get(BootFacts)
    assert (boot.loader, boot.next_boot) == ("systemd-boot", default["version"]), boot


@pytest.mark.parametrize("name", VARIANTS)
def test_entries_in_bootctls_order(sdboot: dict[str, Variant], name: str) -> None:
    """systemd-boot's menu (ids with their `.conf`, sort-key, version; the order of bootspec.c's
    boot_entry_compare) as bootctl lists it, and the default entry bootctl marks."""
    v = sdboot[name]
    boot = scrape(v.tree).facts.get(BootFacts)
    ours = [(e.id, e.type, e.source, e.sort_key, e.machine_id, e.version) for e in boot.entries]
    theirs = [(e["id"], e["type"], e["source"], e["sortKey"], e["machineId"], e["version"]) for e in v.listing]
    assert ours == theirs
    assert boot.default_id == next(e["id"] for e in v.listing if e.get("isDefault"))
