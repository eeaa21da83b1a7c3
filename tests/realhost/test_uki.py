"""Unified kernel images for real, on Debian 13 (tests/realhost/ukiboot.sh): UKIs that Debian's own
`kernel-install add` (layout=uki, ukify) made from the tree's real kernels and initramfs images.

- the exporter's systemd-boot menu (ids, types, titles, sort keys, versions, order) and its
  default entry equal the tree's `bootctl list --json=short`, on every variant: UKIs only, a UKI
  beside a type #1 entry of the same kernel, 40 generated type #1 entries of random
  sort-key/machine-id/version/boot counter beside the UKIs, and three damaged UKIs;
- each UKI's kernel (the exporter's `.uname`) and sections equal `ukify inspect`'s;
- the entries of the UKI's `.initrd` section, as the exporter lists them, equal `lsinitramfs` of
  that section dumped by binutils' `objcopy --dump-section`, and the modules the initramfs
  collector reports for the kernel are the ones in that listing;
- a damaged UKI (section table cut, `.initrd` past the end of the file, a huge VirtualSize) gives a
  clear error in the metrics and the log, and `serve` goes on answering."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import Served, errors_of, metrics_of, samples, scrape, slow_artifact

from exporter.collectors.initramfs import _list_uki
from exporter.facts.bootloader import BootFacts
from exporter.facts.initramfs import InitramfsFacts
from exporter.formats.initramfs import list_image, module_names
from exporter.formats.pe import SectionFile, parse_pe

from .conftest import trixie_variant_build, variant_env

pytestmark = pytest.mark.realhost

VARIANTS = ("uki", "both", "order", "bad_table", "bad_offset", "bad_vsize")


@dataclass(frozen=True)
class Variant:
    name: str
    tree: Path
    ref: Path
    listing: list[dict]
    env: dict[str, str]

    @property
    def new_uki(self) -> str:
        return f"/boot/efi/EFI/Linux/{self.env['MACHINE_ID']}-{self.env['NEW_KERNEL']}.efi"


@pytest.fixture(scope="module")
def ukiboot() -> dict[str, Variant]:
    slow_artifact("the Debian 13 UKI trees (tests/realhost/ukiboot.sh)")
    root = trixie_variant_build("ukiboot.sh", "UKIBOOT_DIR", timeout=2400)
    variants = {}
    for name in VARIANTS:
        ref = root / "variants" / name / "ref"
        variants[name] = Variant(name, root / "variants" / name / "tree", ref,
                                 json.loads((ref / "bootctl-list.json").read_text()), variant_env(ref))
    return variants


def _ours(boot: BootFacts) -> list[tuple]:
    return [(e.id, e.type, e.source, e.title, e.sort_key, e.version) for e in boot.entries]


def _theirs(listing: list[dict]) -> list[tuple]:
    return [(e["id"], e["type"], e["source"], e.get("title"), e.get("sortKey"), e.get("version")) for e in listing]


@pytest.mark.parametrize("name", VARIANTS)
def test_menu_and_default_are_bootctls(ukiboot: dict[str, Variant], name: str) -> None:
    v = ukiboot[name]
    boot = scrape(v.tree).facts.get(BootFacts)
    assert _ours(boot) == _theirs(v.listing)
    [default] = [e["id"] for e in v.listing if e.get("isDefault")]
    assert (boot.loader, boot.default_id) == ("systemd-boot", default)


def test_the_variants_are_what_they_claim(ukiboot: dict[str, Variant]) -> None:
    """bootctl's own view: two UKIs; the UKI before the type #1 entry of the same kernel; the
    generated entries listed; a UKI whose section table is cut is no entry, one whose .initrd is
    damaged still is (bootctl does not read .initrd)."""
    types = {n: [e["type"] for e in v.listing] for n, v in ukiboot.items()}
    assert types["uki"] == ["type2", "type2"]
    assert types["both"] == ["type2", "type2", "type1"]
    # 40 generated + 2 UKIs, less the 5 whose names hold '~' or '^' (bootctl: "Invalid loader
    # entry name", efi_loader_entry_name_valid), which the exporter leaves out too
    invalid = (ukiboot["order"].ref / "bootctl-list.stderr").read_text().count("Invalid loader entry name")
    assert invalid == 5 and len(types["order"]) == 42 - invalid
    assert types["bad_table"] == ["type2"] and types["bad_offset"] == types["bad_vsize"] == ["type2", "type2"]


@pytest.mark.parametrize("name", ["uki", "both"])
def test_next_boot_is_the_default_ukis_uname(ukiboot: dict[str, Variant], name: str) -> None:
    v = ukiboot[name]
    boot = scrape(v.tree).facts.get(BootFacts)
    [default] = [e for e in v.listing if e.get("isDefault")]
    inspect = json.loads((v.ref / (Path(default["path"]).name + ".inspect.json")).read_text())
    assert boot.next_boot == inspect[".uname"]["text"].strip() == v.env["NEW_KERNEL"]


@pytest.mark.parametrize("name", ["uki", "both"])
def test_sections_are_ukify_inspects(ukiboot: dict[str, Variant], name: str) -> None:
    v = ukiboot[name]
    for ref in sorted(v.ref.glob("*.inspect.json")):
        theirs = json.loads(ref.read_text())
        with open(v.tree / "boot/efi/EFI/Linux" / ref.name.removesuffix(".inspect.json"), "rb") as fh:
            image = parse_pe(fh)
        # ukify's size is pefile's MIN(VirtualSize, SizeOfRawData): what a loader reads
        ours = {s.name: s.file_size for s in image.sections}
        assert {n: d["size"] for n, d in theirs.items()} == ours, ref.name
        assert {".linux", ".initrd", ".osrel", ".uname", ".cmdline"} <= set(ours)


@pytest.mark.parametrize("name", ["uki", "both"])
def test_initrd_listing_is_lsinitramfs_of_the_section(ukiboot: dict[str, Variant], name: str) -> None:
    v = ukiboot[name]
    images = scrape(v.tree).facts.get(InitramfsFacts).images
    for ref in sorted(v.ref.glob("*.lsinitramfs")):
        uki = ref.name.removesuffix(".lsinitramfs")
        kernel = uki.split("-", 1)[1].removesuffix(".efi")
        theirs = [line for line in ref.read_text().splitlines() if line]
        with open(v.tree / "boot/efi/EFI/Linux" / uki, "rb") as fh:
            image = parse_pe(fh)
            listing = list_image(SectionFile(fh, image, image.find(".initrd")))
        assert [n for n in listing.names if n != "."] == [n for n in theirs if n != "."], uki
        modules = module_names(listing, kernel)
        assert len(modules) > 20, modules    # the real initramfs: MODULES=most
        # the collector gives that kernel this UKI's initramfs (UKIs sort before type #1 entries)
        assert images[kernel].path == f"/boot/efi/EFI/Linux/{uki}"
        assert images[kernel].listing.modules == modules


def test_a_cut_section_table_is_a_reported_error(ukiboot: dict[str, Variant], capsys) -> None:
    v = ukiboot["bad_table"]
    m = metrics_of(v.tree, capsys)
    assert errors_of(m, "bootloader") >= 1
    facts = scrape(v.tree).facts
    assert facts.get(BootFacts).next_boot == v.env["OLD_KERNEL"]   # bootctl's default: the one UKI left
    run = facts.runs["bootloader"]
    assert any("truncated" in e.message and e.path == v.new_uki for e in run.errors), run.errors
    with Served(v.tree) as server:
        for _ in range(2):
            reply = server.request("/metrics")
            assert reply.status == 200
            assert errors_of(samples(reply.text), "bootloader") >= 1
            # readiness built on a collector that could not read a file is unknown, never a guess
            assert samples(reply.text)["dkms_next_boot_readiness_unknown"] == [({}, 1.0)]
        assert v.new_uki in server.log_text and "truncated" in server.log_text, server.log_text[-3000:]


@pytest.mark.parametrize("name, code", [("bad_offset", "truncated"), ("bad_vsize", "corrupt")])
def test_a_damaged_initrd_is_an_unreadable_initramfs_and_serving_goes_on(ukiboot: dict[str, Variant], name: str,
                                                                        code: str) -> None:
    v = ukiboot[name]
    image = scrape(v.tree).facts.get(InitramfsFacts).images[v.env["NEW_KERNEL"]]
    assert image.path == v.new_uki and image.error is not None and image.error.code == code, image
    with open(v.tree / v.new_uki.lstrip("/"), "rb") as fh:
        size = fh.seek(0, 2)
    listing, error = _list_uki(v.tree / v.new_uki.lstrip("/"), v.env["NEW_KERNEL"], v.new_uki)
    assert listing is None and error.code == code and ".initrd" in str(error) and size
    with Served(v.tree) as server:
        for _ in range(2):      # twice: the error is cached and served again, never a crash
            reply = server.request("/metrics")
            assert reply.status == 200
            m = samples(reply.text)
            problems = {(d["kernel"], d["reason"]) for d, value in m["dkms_kernel_problem"] if value == 1}
            assert (v.env["NEW_KERNEL"], "initramfs_unreadable") in problems
            assert ({"kernel": v.env["NEW_KERNEL"]}, 0.0) in m["dkms_kernel_ready"]
