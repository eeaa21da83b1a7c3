"""The exporter's DKMS states equal what Debian's real dkms 3.0.10 prints for the same tree."""

import os
import subprocess

import pytest

from testkit import K1, K2, require_tool, scrape
from exporter.facts.dkms import DkmsFacts
from hostbuilder import Host



def real_dkms_status(root) -> list[str]:
    dkms = require_tool("dkms")
    out = subprocess.run([dkms, "status", "--dkmstree", f"{root}/var/lib/dkms", "--sourcetree",
                          f"{root}/usr/src", "--installtree", f"{root}/usr/lib/modules"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return sorted(l for l in out.stdout.splitlines() if l.strip())


def exporter_status(root) -> list[str]:
    return sorted(l.render() for l in scrape(root).facts.get(DkmsFacts).status_lines())


def base(tmp_path) -> Host:
    # dkms resolves `source` outside any root, so the tree given to it uses relative links
    h = Host(tmp_path / "h", absolute_source_links=False)
    h.kernel(K1, running=True)
    h.kernel(K2)
    return h


def states(tmp_path):
    """name -> a host with one DKMS situation in it."""
    def installed(h):
        h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
        h.dkms_build("acpi-call", "1.2.2", K1, dest=["acpi_call"])

    def built_only(h):
        h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
        h.dkms_build("acpi-call", "1.2.2", K2, dest=["acpi_call"], installed=False)

    def added_only(h):
        h.dkms("v4l2loopback", "0.12.7")

    def dangling_source(h):
        h.dkms("gone", "2.0", source="dangling")

    def failed_build(h):
        h.dkms("nv", "1.0")
        h.dkms_failed_build("nv", "1.0", K2, "error: implicit declaration of function 'x'\n")

    def two_versions(h):
        h.dkms("zz", "1.0")
        h.dkms("zz", "2.0")
        h.dkms_build("zz", "1.0", K1, installed=False)
        h.dkms_build("zz", "2.0", K1)
        h.dkms_build("zz", "2.0", K2)

    def missing_one_of_two_modules(h):
        h.dkms("multi", "3.0", dest=["one", "two"])
        h.dkms_build("multi", "3.0", K1, dest=["one"])  # 'two' never produced: not built in 3.0.x

    def installed_copy_differs(h):
        h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
        h.dkms_build("acpi-call", "1.2.2", K1, dest=["acpi_call"])
        h.write(f"usr/lib/modules/{K1}/updates/dkms/acpi_call.ko", b"someone replaced me")

    def installed_copy_missing(h):
        h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
        h.dkms_build("acpi-call", "1.2.2", K1, dest=["acpi_call"])
        os.unlink(h.path(f"usr/lib/modules/{K1}/updates/dkms/acpi_call.ko"))

    def original_module(h):
        h.dkms("e1000e", "3.8.4", dest=["e1000e"])
        h.dkms_build("e1000e", "3.8.4", K1, dest=["e1000e"])
        h.write(f"var/lib/dkms/e1000e/original_module/{K1}/x86_64/e1000e.ko", b"in-tree original")

    def link_to_other_version(h):
        h.dkms("lk", "1.0")
        h.dkms("lk", "2.0")
        h.dkms_build("lk", "1.0", K1, installed=False)
        h.dkms_build("lk", "2.0", K1)

    def conditional_module_not_built(h):   # lttng's idiom: i=$((i+1)), a module under a config test
        from test_module_truth import LTTNG_LIKE
        h.dkms("lt", "2.13.9", conf=LTTNG_LIKE)
        h.dkms_build("lt", "2.13.9", K1, dest=["lt_core", "lt_tail"])

    def unconditional_module_not_built(h):
        from test_module_truth import LTTNG_LIKE
        h.dkms("lt", "2.13.9", conf=LTTNG_LIKE)
        h.dkms_build("lt", "2.13.9", K1, dest=["lt_core", "lt_kprobes"])

    return {f.__name__: f for f in (installed, built_only, added_only, dangling_source, failed_build,
                                    two_versions, missing_one_of_two_modules, installed_copy_differs,
                                    installed_copy_missing, original_module, link_to_other_version,
                                    conditional_module_not_built, unconditional_module_not_built)}


@pytest.mark.parametrize("case", sorted(states(None)))
def test_states_equal_real_dkms_status(tmp_path, case):
    h = base(tmp_path)
    states(tmp_path)[case](h)
    h.finish()
    real = real_dkms_status(h.root)
    ours = exporter_status(h.root)
    assert ours == real, f"exporter:\n  " + "\n  ".join(ours) + "\nreal dkms status:\n  " + "\n  ".join(real)


def test_absolute_source_links_resolve_inside_the_root(tmp_path):
    h = Host(tmp_path / "abs")  # absolute links, as `dkms add` makes them
    h.kernel(K1, running=True)
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    h.dkms_build("acpi-call", "1.2.2", K1, dest=["acpi_call"])
    h.finish()
    s = scrape(h.root)
    assert [l.render() for l in s.facts.get(DkmsFacts).status_lines()] == [f"acpi-call/1.2.2, {K1}, x86_64: installed"]
    assert s.facts.runs["dkms"].success
    assert s.readiness.verdict == "ready"


def test_compressed_suffix_follows_modules_dep(tmp_path):
    """dkms's set_module_suffix: a .ko.zst build counts when the kernel's modules.dep has .zst."""
    h = Host(tmp_path / "zst")
    h.kernel(K1, running=True, in_tree=[])
    h.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    h.write(f"var/lib/dkms/acpi-call/1.2.2/{K1}/x86_64/module/acpi_call.ko.zst", b"\x28\xb5\x2f\xfd")
    h.symlink(f"var/lib/dkms/acpi-call/kernel-{K1}-x86_64", f"1.2.2/{K1}/x86_64")
    h.write(f"usr/lib/modules/{K1}/updates/dkms/acpi_call.ko.zst", b"\x28\xb5\x2f\xfd")
    h.finish()
    lines = [l.render() for l in scrape(h.root).facts.get(DkmsFacts).status_lines()]
    assert lines == [f"acpi-call/1.2.2, {K1}, x86_64: installed"]
    # without a compressed module in modules.dep, dkms 3.0.10 would not count the .ko.zst
    h.write(f"usr/lib/modules/{K1}/modules.dep", "")
    lines = [l.render() for l in scrape(h.root).facts.get(DkmsFacts).status_lines()]
    assert lines == ["acpi-call/1.2.2: added"]


def test_the_suffix_is_dkms_grep_of_modules_dep():
    """set_module_suffix greps modules.dep for '\\.gz:', '\\.xz:', '\\.zst:' in turn and keeps the
    last match; it reads no line structure, so a line depmod would never write changes nothing."""
    from exporter.formats.depmod import modules_dep_suffix

    assert modules_dep_suffix(b"kernel/a.ko.xz:\nkernel/b.ko.zst: kernel/a.ko.xz\n") == ".zst"
    assert modules_dep_suffix(b"kernel/a.ko.gz:\nkernel/b.ko.xz:\n") == ".xz"
    assert modules_dep_suffix(b"kernel/a.ko.zst\nno colon here\n") == ""
    assert modules_dep_suffix(b"garbage\nkernel/a.ko.gz: x\n") == ".gz"
    assert modules_dep_suffix(b"") == ""


def test_names_with_spaces_where_dkms_itself_is_wrong(tmp_path):
    """dkms 3.0.10's _is_module_installed runs `readlink -f $k` unquoted, so a module whose name
    has a space never shows as installed. The link is there and the module is installed: we say
    so, and this test pins the one known, deliberate disagreement."""
    h = base(tmp_path)
    h.dkms("my mod", "1 0", dest=["my_mod"])
    h.dkms_build("my mod", "1 0", K1, dest=["my_mod"])
    h.finish()
    assert real_dkms_status(h.root) == [f"my mod/1 0, {K1}, x86_64: built"]
    assert exporter_status(h.root) == [f"my mod/1 0, {K1}, x86_64: installed"]
