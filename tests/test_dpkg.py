"""Holds and `dpkg --audit` findings equal what Debian's real dpkg and apt-mark say."""

import subprocess

import pytest

from testkit import require_tool, scrape
from exporter.facts.packages import package_kind
from exporter.formats.dpkg import DpkgStatusError, parse_status
from exporter.facts.packages import PackageFacts

HEADINGS = {
    "in a mess due to serious problems": "reinstreq",
    "unpacked but not yet configured": "unpacked",
    "only half configured": "half-configured",
    "only half installed": "half-installed",
    "awaiting processing of triggers": "triggers-awaited",
    "have been triggered, but the trigger": "triggers-pending",
    "missing the list control file": "missing-list",
    "missing the md5sums control file": "missing-md5sums",
    "do not have an architecture": "no-arch",
    "unknown foreign architecture": "unknown-arch",
}


def real_audit(root) -> set[tuple[str, str]]:
    out = subprocess.run([require_tool("dpkg"), f"--admindir={root}/var/lib/dpkg", "--audit"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    findings, current = set(), None
    for line in out.stdout.splitlines():
        if line.startswith(" ") and current:
            findings.add((line.split()[0], current))
        elif line.strip():
            current = next((code for text, code in HEADINGS.items() if text in line), current)
    return findings


def real_holds(root) -> set[str]:
    out = subprocess.run([require_tool("apt-mark"), "-o", f"Dir::State::status={root}/var/lib/dpkg/status",
                          "-o", "Dir::State::extended_states=/dev/null", "showhold"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {l.split(":")[0] for l in out.stdout.split()}


def test_audit_and_holds_match_real_tools(host):
    host.kernel("6.1.0-27-amd64", running=True)
    host.package("linux-image-6.1.0-28-amd64", "6.1.106-3", want="hold")
    host.package("linux-headers-amd64", "6.1.106-3", want="hold")
    host.package("half-conf", "1.0", state="half-configured")
    host.package("unpacked-only", "1.0", state="unpacked")
    host.package("half-inst", "1.0", state="half-installed")
    host.package("trig-await", "1.0", state="triggers-awaited")
    host.package("trig-pend", "1.0", state="triggers-pending")
    host.package("mess", "1.0", flag="reinstreq", state="half-installed")
    host.package("no-list", "1.0", info_files=False)
    host.package("foreign", "1.0", arch="s390x")
    host.package("held-removed", "1.0", want="hold", state="config-files", info_files=False)
    host.finish()
    s = scrape(host.root)
    ours_audit = {(f.package, f.problem) for f in s.facts.get(PackageFacts).findings}
    assert ours_audit == real_audit(host.root)
    assert {"half-conf", "unpacked-only", "mess", "no-list"} <= {p for p, _ in ours_audit}
    assert {p.name for p in s.facts.get(PackageFacts).held} == real_holds(host.root)
    assert s.facts.runs["packages"].success


def test_kinds():
    assert package_kind("linux-image-6.1.0-28-amd64") == "kernel-image"
    assert package_kind("linux-headers-6.1.0-28-amd64") == "kernel-headers"
    assert package_kind("linux-headers-amd64") == "kernel-headers"
    assert package_kind("linux-image-amd64") == "kernel-image"
    assert package_kind("linux-generic") == "kernel-meta"
    assert package_kind("v4l2loopback-dkms") == "dkms"
    assert package_kind("grub-efi-amd64-signed") == "boot"
    assert package_kind("bash") == "other"


def test_continuation_lines_and_stanza_order():
    data = (b"Package: a\nStatus: install ok installed\nDescription: x\n multi\n .\n line\nVersion: 1\n\n"
            b"Package: b\nStatus: hold ok half-configured\nVersion: 2\n")
    pkgs = parse_status(data)
    assert [(p.name, p.want, p.state, p.version) for p in pkgs] == [
        ("a", "install", "installed", "1"), ("b", "hold", "half-configured", "2")]


@pytest.mark.parametrize("bad", [b"Package: a\nStatus: install ok\n", b"Package: a\nStatus: wat ok installed\n",
                                 b"Status: install ok installed\n"])
def test_bad_status_is_a_parse_error(bad):
    with pytest.raises(DpkgStatusError):
        parse_status(bad)


def test_unparseable_status_fails_the_collector_not_the_scrape(host):
    host.kernel("6.1.0-27-amd64", running=True)
    host.finish()
    host.write("var/lib/dpkg/status", "Package: x\nStatus: garbage\n")
    s = scrape(host.root)
    assert not s.facts.runs["packages"].success
    assert "bad Status" in s.facts.runs["packages"].errors[0].message
    assert s.facts.runs["kernel"].success
