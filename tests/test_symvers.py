"""exporter.symvers against real Debian kernels' Module.symvers and kmod's depmod -e -E."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import modbuild as mb
from exporter.collectors.module import read_module
from exporter.formats.module import parse_module
from exporter.formats.symvers import Export, SymversError, parse_module_symvers, parse_symvers_file
from exporter.verdict.loader import check_versions, vermagic_matches

VERMAGIC_56_FMT = "6.1.0-{abi}-amd64 SMP preempt mod_unload modversions "


@pytest.fixture(scope="session")
def kernels():
    return mb.real_kernels()


@pytest.fixture(scope="session")
def new(kernels):
    return kernels[0]


@pytest.fixture(scope="session")
def exports(new) -> dict[str, Export]:
    return parse_module_symvers(new.symvers.read_text())


@pytest.fixture(scope="session")
def old_exports(kernels) -> dict[str, Export]:
    return parse_module_symvers(kernels[1].symvers.read_text())


def vmlinux_only(exports: dict[str, Export]) -> dict[str, Export]:
    return {s: e for s, e in exports.items() if e.module == "vmlinux"}


# ---------------------------------------------------------------------------------------------
# Module.symvers parsing


@pytest.mark.slow
def test_real_module_symvers_parses_completely(new, exports):
    lines = new.symvers.read_text().splitlines()
    assert len(exports) == len({line.split("\t")[1] for line in lines}) > 20000
    assert exports["module_layout"].module == "vmlinux"
    assert exports["ceph_con_keepalive"].module == "net/ceph/libceph"
    assert all(line.count("\t") == 4 for line in lines)  # 5 columns, as formats.md 3.3 says
    first = lines[0].split("\t")
    e = exports[first[1]]
    assert (f"0x{e.crc:08x}", e.module, e.export_type, e.namespace) == (first[0], first[2], first[3], first[4])
    namespaced = [e for e in exports.values() if e.namespace]
    assert namespaced and all(not e.namespace.startswith("EXPORT") for e in namespaced)


def test_column_forms():
    text = (
        "0x12345678\tfive_col\tvmlinux\tEXPORT_SYMBOL_GPL\tCXL\n"
        "0x0000abcd\tfive_empty_ns\tdrivers/media/mc/mc\tEXPORT_SYMBOL\t\n"
        "0xdeadbeef\tfour_col\tvmlinux\tEXPORT_SYMBOL\n"
        "\n"
        "0x00000001\tns_third\tUSB_STORAGE\tdrivers/usb/storage/usb-storage\tEXPORT_SYMBOL_GPL\n"
    )
    ex = parse_module_symvers(text)
    assert ex["five_col"] == Export(0x12345678, "vmlinux", "EXPORT_SYMBOL_GPL", "CXL")
    assert ex["five_empty_ns"] == Export(0xABCD, "drivers/media/mc/mc", "EXPORT_SYMBOL", "")
    assert ex["four_col"] == Export(0xDEADBEEF, "vmlinux", "EXPORT_SYMBOL", "")
    assert ex["ns_third"] == Export(1, "drivers/usb/storage/usb-storage", "EXPORT_SYMBOL_GPL", "USB_STORAGE")
    assert ex["five_col"].gpl_only and not ex["four_col"].gpl_only


def test_a_line_ends_at_lf_only_as_modpost_reads_it():
    """modpost's reader splits its dump at LF alone: a CR, form feed or Unicode line separator
    is part of its column, on the decoded-text path and the file path alike."""
    data = ("0x1\tcr_ns\tvmlinux\tEXPORT_SYMBOL\tNS\r\n"
            "0x2\tform\x0cfeed\tvmlinux\tEXPORT_SYMBOL\t\n"
            "0x3\tsep\u2028arated\tvmlinux\tEXPORT_SYMBOL_GPL\t\n")
    for ex in (parse_module_symvers(data), parse_symvers_file(data.encode())):
        assert sorted(ex) == ["cr_ns", "form\x0cfeed", "sep\u2028arated"] and ex.total == 3
        assert ex["cr_ns"].namespace == "NS\r"


@pytest.mark.parametrize(
    "line, lineno",
    [
        ("0x1234\tsym\tvmlinux", 2),
        ("0xZZ\tsym\tvmlinux\tEXPORT_SYMBOL\t", 2),
        ("0x1234\tsym\tvmlinux\tNOT_AN_EXPORT\t", 2),
        ("0x1\t\tvmlinux\tEXPORT_SYMBOL\t", 2),
        ("garbage without tabs", 2),
    ],
)
def test_malformed_lines(line, lineno):
    with pytest.raises(SymversError) as e:
        parse_module_symvers("0x1\tok\tvmlinux\tEXPORT_SYMBOL\t\n" + line + "\n")
    assert e.value.line_no == lineno and "line 2" in str(e.value)


# ---------------------------------------------------------------------------------------------
# vermagic: the kernel's same_magic()


@pytest.mark.parametrize(
    "mod, kernel, has_versions, ok",
    [
        ("6.1.0-56-amd64 SMP preempt mod_unload modversions ", "6.1.0-50-amd64 SMP preempt mod_unload modversions ", True, True),
        ("6.1.0-56-amd64 SMP preempt mod_unload modversions ", "6.1.0-50-amd64 SMP preempt mod_unload modversions ", False, False),
        ("6.1.0-56-amd64 SMP preempt mod_unload modversions ", "6.1.0-56-amd64 SMP preempt mod_unload modversions ", False, True),
        ("5.10.0-30-amd64 SMP mod_unload modversions ", "6.1.0-56-amd64 SMP preempt mod_unload modversions ", True, False),
        ("6.1.0-56-amd64 SMP preempt mod_unload modversions", "6.1.0-56-amd64 SMP preempt mod_unload modversions ", True, False),
        ("norelease", "other", True, True),  # strcspn: both compare from their end
        ("norelease", "other rest", True, False),
        (None, "6.1.0-56-amd64 SMP preempt mod_unload modversions ", True, False),
    ],
)
def test_vermagic_matches(mod, kernel, has_versions, ok):
    assert vermagic_matches(mod, kernel, has_versions) is ok


@pytest.mark.slow
def test_real_module_vermagic_across_abis(new, kernels):
    mod = read_module(new.module("fs/ceph/ceph.ko"))
    older = VERMAGIC_56_FMT.format(abi=kernels[1].release.split("-")[1])
    assert vermagic_matches(mod.vermagic, VERMAGIC_56_FMT.format(abi=new.release.split("-")[1]), mod.has_versions)
    assert vermagic_matches(mod.vermagic, older, mod.has_versions)  # release ignored with __versions
    assert not vermagic_matches(mod.vermagic, older, False)


@pytest.mark.slow
def test_foreign_vermagic_module_flagged(tmp_path, new):
    path = mb.build_module(mb.ModSpec(vermagic="5.10.0-30-amd64 SMP mod_unload modversions "), tmp_path / "old.ko")
    mod = read_module(path)
    assert not vermagic_matches(mod.vermagic, VERMAGIC_56_FMT.format(abi=new.release.split("-")[1]), mod.has_versions)


# ---------------------------------------------------------------------------------------------
# CRCs of real modules against real Module.symvers, compared with depmod -e -E


def depmod_report(module_paths: list[Path], symvers: Path, tmp_path: Path) -> tuple[set[str], set[str]]:
    """(disagreeing symbols, unknown symbols) as kmod's depmod -e -E reports them."""
    release = "6.1.0-99-test"
    tree = tmp_path / "root" / "lib" / "modules" / release / "kernel"
    tree.mkdir(parents=True)
    for p in module_paths:
        shutil.copy(p, tree / p.name)
    res = subprocess.run(
        [mb.need_tool("depmod"), "-b", str(tmp_path / "root"), "-e", "-E", str(symvers), release],
        capture_output=True, text=True,
    )
    disagree = set(re.findall(r"disagrees about version of symbol (\S+)", res.stderr))
    unknown = set(re.findall(r"needs unknown symbol (\S+)", res.stderr))
    return disagree, unknown


@pytest.mark.slow
@pytest.mark.parametrize("rel", mb.REAL_MODULES)
def test_real_module_crcs_agree_with_its_kernel(new, exports, rel, tmp_path):
    mod = read_module(new.module(rel))
    assert mod.versions and all(exports[sym].crc == crc for sym, crc in mod.versions)
    result = check_versions(mod, exports)
    assert result.ok and not result.mismatches and not result.unknown and not result.undetermined
    assert depmod_report([new.module(rel)], new.symvers, tmp_path)[0] == set()


@pytest.mark.slow
@pytest.mark.parametrize("rel", ["fs/ceph/ceph.ko", "drivers/media/v4l2-core/videodev.ko"])
def test_real_module_against_an_older_kernel(new, old_exports, kernels, rel, tmp_path):
    """A module of kernel A checked against kernel B's Module.symvers: flagged, and the symbols
    named are exactly those kmod's depmod -E names (depmod compares vmlinux CRCs only)."""
    path = new.module(rel)
    mod = read_module(path)
    result = check_versions(mod, old_exports)
    assert not result.ok and ("module_layout" in {m[0] for m in result.mismatches})
    disagree, unknown = depmod_report([path], kernels[1].symvers, tmp_path)
    vm = check_versions(mod, vmlinux_only(old_exports))
    assert {m[0] for m in vm.mismatches} == disagree and disagree
    assert set(vm.unknown) | set(vm.undetermined) == unknown


@pytest.mark.slow
def test_tampered_crc_is_a_mismatch_naming_the_symbol(new, exports, tmp_path):
    src = new.module("fs/ceph/ceph.ko")
    data = bytearray(src.read_bytes())
    with open(src, "rb") as f:
        sec = ELFFile(f).get_section_by_name("__versions")
        off = sec["sh_offset"] + 5 * 64  # the sixth entry's CRC
    victim = parse_module(bytes(data)).versions[5][0]
    data[off] ^= 0x5A
    copy = tmp_path / "ceph.ko"
    copy.write_bytes(bytes(data))
    mod = read_module(copy)
    result = check_versions(mod, exports)
    assert [m[0] for m in result.mismatches] == [victim]
    sym, mine, kernel = result.mismatches[0]
    assert mine == exports[victim].crc ^ 0x5A and kernel == exports[victim].crc and not result.ok
    assert depmod_report([copy], new.symvers, tmp_path)[0] == ({victim} if exports[victim].module == "vmlinux" else set())


# ---------------------------------------------------------------------------------------------
# Unknown symbols, honestly


def gcc_module(tmp_path: Path, exports: dict[str, Export], **kw) -> Path:
    undefined = kw.pop("undefined", ("_printk",))
    versions = tuple((s, exports[s].crc) for s in ("module_layout", *undefined) if s in exports)
    return mb.build_module(mb.ModSpec(undefined=undefined, versions=versions, **kw), tmp_path / "m.ko")


@pytest.mark.slow
def test_unknown_symbol_when_everything_is_described(tmp_path, exports):
    path = gcc_module(tmp_path, exports, undefined=("_printk", "no_such_symbol_xyz"), depends="")
    result = check_versions(read_module(path), exports)
    assert result.unknown == ("no_such_symbol_xyz",) and not result.undetermined and not result.ok
    assert depmod_report([path], mb.real_kernels()[0].symvers, tmp_path)[1] == {"no_such_symbol_xyz"}


@pytest.mark.slow
def test_in_tree_dependency_is_described(tmp_path, exports):
    path = gcc_module(tmp_path, exports, undefined=("__video_register_device", "nope_xyz"), depends="videodev")
    result = check_versions(read_module(path), exports)
    assert result.unknown == ("nope_xyz",) and not result.undetermined


@pytest.mark.slow
def test_out_of_tree_dependency_makes_it_undetermined(tmp_path, exports):
    """Another DKMS module may export it: not claimed as unknown."""
    path = gcc_module(tmp_path, exports, undefined=("_printk", "vendor_helper_fn"), depends="vendor-core")
    result = check_versions(read_module(path), exports)
    assert result.unknown == () and result.undetermined == ("vendor_helper_fn",) and result.ok


@pytest.mark.slow
def test_gpl_only_symbol_in_proprietary_module(tmp_path, exports):
    gpl_sym = next(s for s, e in exports.items() if e.module == "vmlinux" and e.gpl_only and not e.namespace)
    prop = check_versions(read_module(gcc_module(tmp_path, exports, undefined=(gpl_sym,), license="NVIDIA")), exports)
    assert prop.gpl_only == (gpl_sym,) and not prop.ok
    dual = check_versions(read_module(gcc_module(tmp_path, exports, undefined=(gpl_sym,), license="Dual MIT/GPL")), exports)
    assert dual.gpl_only == () and dual.ok


@pytest.mark.slow
def test_namespace_must_be_imported(tmp_path, exports):
    sym, e = next((s, e) for s, e in exports.items() if e.namespace and e.module == "vmlinux")
    missing = check_versions(read_module(gcc_module(tmp_path, exports, undefined=(sym,))), exports)
    assert missing.missing_namespaces == ((sym, e.namespace),) and not missing.ok
    imported = gcc_module(tmp_path, exports, undefined=(sym,), extra_modinfo=(("import_ns", e.namespace),))
    assert check_versions(read_module(imported), exports).missing_namespaces == ()


@pytest.mark.slow
def test_module_without_versions(tmp_path, exports):
    path = gcc_module(tmp_path, exports)
    bare = mb.build_module(mb.ModSpec(versions=None), tmp_path / "bare.ko")
    assert not check_versions(read_module(path), exports).no_versions
    assert check_versions(read_module(bare), exports).no_versions
    no_crcs = {s: Export(0, e.module, e.export_type, e.namespace) for s, e in exports.items()}
    assert not check_versions(read_module(bare), no_crcs).no_versions


@pytest.mark.slow
def test_weak_undefined_is_never_unknown(tmp_path, exports):
    path = mb.build_module(
        mb.ModSpec(undefined=("_printk",), weak=("optional_hook_xyz",),
                   versions=(("module_layout", exports["module_layout"].crc), ("_printk", exports["_printk"].crc))),
        tmp_path / "weak.ko",
    )
    result = check_versions(read_module(path), exports)
    assert result.ok and result.unknown == () and not result.mismatches


@pytest.mark.slow
def test_a_weak_reference_the_kernel_finds_is_checked_like_a_strong_one(tmp_path, exports):
    """The kernel's resolve_symbol checks what it finds, weak reference or not: a weak one to a
    namespaced export without MODULE_IMPORT_NS fails the load.  A GPL-only export is invisible
    to a proprietary module, and a weak reference may stay unresolved: no problem there."""
    sym, ns = next((s, e.namespace) for s, e in sorted(exports.items()) if e.namespace)
    gpl_sym = next(s for s, e in sorted(exports.items()) if e.gpl_only and not e.namespace)
    versions = (("module_layout", exports["module_layout"].crc), ("_printk", exports["_printk"].crc))

    def check(name: str, **spec):
        return check_versions(read_module(mb.build_module(mb.ModSpec(versions=versions, **spec), tmp_path / name)),
                              exports)

    assert check("ns.ko", weak=(sym,)).missing_namespaces == ((sym, ns),)
    assert check("ns-imported.ko", weak=(sym,), extra_modinfo=(("import_ns", ns),)).ok
    proprietary = check("gpl.ko", weak=(gpl_sym,), license="Proprietary")
    assert proprietary.ok and not proprietary.gpl_only
    assert check("gpl-strong.ko", undefined=("_printk", gpl_sym), license="Proprietary").gpl_only == (gpl_sym,)
