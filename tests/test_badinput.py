"""Bad input gets a clear answer: errors in metrics and logs, a served scrape, never a crash,
and never "ready" built on something that could not be read."""

import os
import random
import threading
import shutil

import pytest

from hostbuilder import Host
from testkit import K1, K2, failed_collectors, metrics_of, run_as_nobody, samples, scrape, two_kernels

from exporter.cli import main
from exporter.formats.dkmsconf import DkmsConfError, parse_dkms_conf
from exporter.host.rootfs import HostFS
from exporter.facts.dkms import DkmsFacts
from exporter.facts.kernel import KernelFacts


def test_unterminated_quote_in_dkms_conf(host, capsys):
    two_kernels(host)
    host.write("usr/src/acpi-call-1.2.2/dkms.conf", 'PACKAGE_NAME="acpi-call\nBUILT_MODULE_NAME[0]=acpi_call\n')
    m = metrics_of(host.root, capsys)
    assert ({"collector": "dkms"}, 0.0) in m["dkms_scrape_collector_success"]
    assert "dkms_next_boot_ready" not in m
    assert m["dkms_next_boot_readiness_unknown"] == [({}, 1.0)]


@pytest.mark.parametrize("text, says", [
    ("", "no PACKAGE_NAME or PACKAGE_VERSION directive"),
    ("\x7fELF\x02\x01\x01" + "\x00" * 64, "no PACKAGE_NAME or PACKAGE_VERSION directive"),
    ('PACKAGE_NAME="acpi-call"\nBUILT_MODULE_NAME[0]=acpi_call\n', "no PACKAGE_VERSION directive"),
    ('PACKAGE_NAME="acpi-call"\nPACKAGE_VERSION="1.2.2"\nif [ -f x ]; then\n  BUILD_EXCLUSIVE_KERNEL=x\n',
     "ends inside an if/case/function block"),
])
def test_a_dkms_conf_dkms_would_refuse_makes_readiness_unknown(host, text, says):
    """dkms's read_conf: "Error! Bad conf file." for a conf without PACKAGE_NAME or
    PACKAGE_VERSION (its own test suite's empty dkms.conf); cut short, bash stops sourcing it.
    Read as a conf that builds nothing, either passed the host: the module was no longer needed."""
    two_kernels(host)
    host.write("usr/src/acpi-call-1.2.2/dkms.conf", text)
    s = scrape(host.root)
    assert s.readiness.verdict == "unknown"
    [error] = s.facts.runs["dkms"].errors
    assert error.path.endswith("/source/dkms.conf") and says in error.message, error


@pytest.mark.parametrize("osrelease", ["", "\x9c\x1b\x1a\xfeZ", "6.1.0 amd64", "../../etc", "x" * 65])
def test_an_osrelease_no_kernel_prints_is_an_error_not_a_running_kernel(host, osrelease):
    two_kernels(host)
    host.write("proc/sys/kernel/osrelease", osrelease.encode("latin-1") + b"\n")
    s = scrape(host.root)
    assert s.facts.get(KernelFacts).running is None and s.readiness.verdict == "unknown"
    [error] = s.facts.runs["kernel"].errors
    assert error.path.endswith("proc/sys/kernel/osrelease") and "not a kernel release" in error.message


@pytest.mark.parametrize("directory, collector", [
    ("var/lib/dkms", "dkms"), ("usr/src", "dkms"), ("boot", "kernel"), ("usr/lib/modules", "kernel"),
    (f"usr/lib/modules/{K1}/updates", "kernel"), ("sys/firmware/efi/efivars", "secureboot"),
])
def test_a_file_where_the_layout_has_a_directory_is_an_error_not_an_empty_one(host, directory, collector):
    """Read as "nothing there", it hid the DKMS modules, the kernels or the running kernel's
    out-of-tree modules behind it (the sweep replaced every directory a scrape lists by a file)."""
    two_kernels(host)
    shutil.rmtree(host.path(directory))
    host.write(directory, "not a directory\n")
    s = scrape(host.root)
    assert s.readiness.verdict == "unknown"
    assert any("not a directory" in e.message for e in s.facts.runs[collector].errors), s.facts.runs[collector]


def test_dkms_conf_parser_rejects_unbalanced_quotes():
    try:
        parse_dkms_conf('A="x\n', {})
    except DkmsConfError as exc:
        assert "unterminated" in str(exc)
    else:
        raise AssertionError("no error")


def test_missing_dkms_conf_is_an_error_not_silence(host, capsys):
    two_kernels(host)
    os.unlink(host.path("usr/src/acpi-call-1.2.2/dkms.conf"))
    s = scrape(host.root)
    assert not s.facts.runs["dkms"].success
    assert s.readiness.verdict == "unknown"


def test_dangling_source_is_listed_as_added(host):
    two_kernels(host)
    host.dkms("gone", "0.1", source="dangling")
    s = scrape(host.root)
    assert "gone/0.1: added" in [l.render() for l in s.facts.get(DkmsFacts).status_lines()]


def test_unreadable_files_as_a_real_unprivileged_user(public_tmp):
    """chmod 000 only bites non-root: run the exporter as nobody with setpriv."""
    host = two_kernels(Host(public_tmp / "host"))
    os.chmod(host.path(f"usr/lib/modules/{K2}/modules.dep"), 0)
    os.chmod(host.path("var/lib/dpkg/status"), 0)
    os.chmod(host.path("var/lib/dkms/acpi-call"), 0)
    out = run_as_nobody(public_tmp, "metrics", "--path.rootfs", str(host.root), timeout=60)
    assert out.returncode == 0, out.stderr
    assert 'dkms_scrape_collector_success{collector="packages"} 0.0' in out.stdout
    assert 'dkms_scrape_collector_success{collector="dkms"} 0.0' in out.stdout
    assert 'dkms_scrape_collector_success{collector="kernel"} 0.0' in out.stdout
    assert failed_collectors(samples(out.stdout)) == {"packages", "dkms", "kernel"}   # the tree was reachable
    assert "dkms_next_boot_readiness_unknown 1.0" in out.stdout
    assert "\ndkms_next_boot_ready " not in out.stdout
    assert "Permission denied" in out.stderr and "/var/lib/dpkg/status" in out.stderr


def test_names_that_are_not_utf8_or_have_spaces(host, capsys):
    two_kernels(host)
    host.dkms("sp ace", "1.0", dest=["sp_ace"])
    host.dkms_build("sp ace", "1.0", K1, dest=["sp_ace"])
    raw = os.fsencode(host.path("var/lib/dkms")) + b"/bad\xffname/1.0"
    os.makedirs(raw)
    os.symlink(b"/usr/src/bad\xffname-1.0", raw + b"/source")
    m = metrics_of(host.root, capsys)
    modules = {labels["module"] for labels, _ in m["dkms_module_state"]}
    assert "sp ace" in modules and "bad\ufffdname" in modules


def test_symlink_loop_and_dangling_build_link(host):
    two_kernels(host)
    host.symlink(f"usr/lib/modules/{K2}/build", "loop1")
    host.symlink(f"usr/lib/modules/{K2}/loop1", "build")
    s = scrape(host.root)
    assert s.facts.get(KernelFacts).get(K2).headers is False
    errors = s.facts.runs["kernel"].errors
    assert errors and "symbolic links" in errors[0].message and K2 in errors[0].path
    assert s.readiness.kernel(K2).verdict == "unknown"  # an unreadable fact never yields "ready"


def test_empty_root_is_unknown_not_ready(tmp_path, capsys):
    m = metrics_of(tmp_path, capsys)
    assert "dkms_next_boot_ready" not in m
    assert main(["check", "--path.rootfs", str(tmp_path)]) == 2


def test_tree_changing_during_scrapes(host):
    """A writer adds and removes kernels and DKMS builds while scrapes run: every scrape is served."""
    two_kernels(host)
    stop = threading.Event()
    rng = random.Random(7)

    def churn():
        i = 0
        while not stop.is_set():
            i += 1
            k = f"6.1.0-{30 + i % 5}-amd64"
            try:
                host.kernel(k)
                host.dkms_build("acpi-call", "1.2.2", k, dest=["acpi_call"], installed=rng.random() < .5)
                if rng.random() < .5:
                    shutil.rmtree(host.path(f"var/lib/dkms/acpi-call/1.2.2/{k}"), ignore_errors=True)
                    shutil.rmtree(host.path(f"usr/lib/modules/{k}"), ignore_errors=True)
                    for f in host.path("boot").glob(f"*{k}"):
                        f.unlink(missing_ok=True)
            except OSError:
                pass

    t = threading.Thread(target=churn)
    t.start()
    try:
        from exporter.config import Config
        from exporter.output.metrics import families
        from exporter.scrape.scraper import Scraper
        scraper = Scraper(HostFS(host.root), Config())
        for _ in range(40):
            s = scraper.scrape()
            assert not any(r.crashed for r in s.facts.runs.values()), [r.crashed for r in s.facts.runs.values()]
            assert list(families(s))
    finally:
        stop.set()
        t.join()


def test_numbers_too_long_for_int_are_answers_not_crashes():
    """Python refuses int() of a string of more than 4,300 digits (ValueError): an epoch or a
    date that long in a version, a status file, a pacman desc or a dnf lock is refused or capped
    where it is parsed, never an exception from deep inside a comparison."""
    from exporter.formats import dnfconf, dpkg, pacman, versions
    huge = "9" * 5000
    assert versions.compare(f"{huge}:1.0", "1:1.0") > 0 and versions.compare(f"{huge}:1", f"{huge}:1") == 0
    assert versions.compare("0001:1.0", "1:1.0") == 0
    assert versions.compare("\u00b2:1.0", "1.0") != 0                    # a Unicode digit is no epoch
    status = f"Package: a\nStatus: install ok installed\nVersion: {huge}:1\n".encode()
    try:
        dpkg.parse_status(status)
        raise AssertionError("dpkg refuses an epoch above INT_MAX")
    except dpkg.DpkgStatusError as exc:
        assert "too big" in str(exc)
    assert pacman._int(huge) is None and pacman._int("\u00b2") is None and pacman._int("1700000000") == 1700000000
    nevra = dnfconf.parse_nevra(f"kernel-{huge}:5.14.0-1.el9.x86_64", "NEVRA")
    assert nevra is not None and nevra.epoch == versions.EPOCH_CAP
