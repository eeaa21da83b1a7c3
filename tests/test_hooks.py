"""The kernel and apt hooks of textfile mode, run for real against a fixture host.

The hooks are run the way Debian runs them: /etc/kernel/postinst.d through the real run-parts
(as linux-image-*'s postinst does), the apt snippet through the command the real apt-config
reads out of it.  The exporter is the real entry point; a fake one only stands in to fail.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from example_hosts import reboot_trap
from prometheus_client.parser import text_string_to_metric_families
from testkit import REPO, example_root, require_tool

HOOK = REPO / "deploy/hooks/kernel-postinst.d/zzz-dkms-exporter"
POSTRM_HOOK = REPO / "deploy/hooks/kernel-postrm.d/zzz-dkms-exporter"
APT_SNIPPET = REPO / "deploy/apt/99dkms-exporter"
EXPORTER = Path(sys.executable).with_name("dkms-exporter")   # the console script pip installed
KERNEL = ("6.1.0-28-amd64", "/boot/vmlinuz-6.1.0-28-amd64")

# The other hooks in Debian 12's /etc/kernel/postinst.d, from the packages that ship them:
# dkms, initramfs-tools, grub-pc/grub-efi-amd64 (zz-update-grub), systemd-boot (zz-systemd-boot),
# apt (apt-auto-removal), unattended-upgrades.
DEBIAN_HOOKS = ["apt-auto-removal", "dkms", "initramfs-tools", "unattended-upgrades", "zz-systemd-boot",
                "zz-update-grub"]
MUST_RUN_BEFORE_US = {"dkms", "initramfs-tools", "zz-systemd-boot", "zz-update-grub"}


@pytest.fixture(scope="module")
def fixture_host(tmp_path_factory) -> Path:
    return example_root(tmp_path_factory, reboot_trap)


@pytest.fixture
def textfile_dir(tmp_path: Path) -> Path:
    d = tmp_path / "node-exporter"
    d.mkdir()
    return d


def defaults_file(tmp_path: Path, **settings: str) -> Path:
    """An /etc/default/dkms-exporter for the hook, in the shipped file's syntax."""
    path = tmp_path / "default-dkms-exporter"
    path.write_text("".join(f'{k}="{v}"\n' for k, v in settings.items()))
    return path


def hook_env(defaults: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "DKMS_EXPORTER_DEFAULTS": str(defaults), **extra}


def direct_settings(host: Path, out: Path, bin: Path = EXPORTER) -> dict[str, str]:
    return {"DKMS_EXPORTER_BIN": str(bin), "DKMS_EXPORTER_TEXTFILE": str(out),
            "DKMS_EXPORTER_ARGS": f"--path.rootfs={host}", "DKMS_EXPORTER_REFRESH": "direct"}


def run_hook(env: dict[str, str], hook: Path = HOOK, args: tuple[str, ...] = KERNEL,
             timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(hook), *args], env=env, capture_output=True, text=True, timeout=timeout)


def complete_textfile(text: str) -> bool:
    """A whole dkms.prom: parses, and ends with the metric write_textfile() adds last."""
    if not text.endswith("\n"):
        return False
    try:
        names = [f.name for f in text_string_to_metric_families(text)]
    except Exception:  # noqa: BLE001 - any parse failure means a torn file
        return False
    return bool(names) and names[-1] == "dkms_textfile_last_run_timestamp_seconds"


# --- the hooks do their job ---------------------------------------------------------------

def test_kernel_hook_runs_last_under_run_parts_and_writes_the_textfile(tmp_path, fixture_host, textfile_dir):
    """/etc/kernel/postinst.d as linux-image-*'s postinst runs it: run-parts --exit-on-error."""
    run_parts = require_tool("run-parts")
    hooks = tmp_path / "postinst.d"
    hooks.mkdir()
    order = tmp_path / "order"
    for name in DEBIAN_HOOKS:
        (hooks / name).write_text(f'#!/bin/sh\necho {name} "$@" >> {order}\n')
        (hooks / name).chmod(0o755)
    shutil.copy2(HOOK, hooks / HOOK.name)
    out = textfile_dir / "dkms.prom"
    env = hook_env(defaults_file(tmp_path, **direct_settings(fixture_host, out)))
    r = subprocess.run([run_parts, "--report", "--exit-on-error", f"--arg={KERNEL[0]}", f"--arg={KERNEL[1]}",
                        str(hooks)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ran = [line.split()[0] for line in order.read_text().splitlines()]
    assert MUST_RUN_BEFORE_US <= set(ran)
    listed = subprocess.run([run_parts, "--test", str(hooks)], capture_output=True, text=True,
                            check=True).stdout.split()
    assert listed[-1].endswith("/zzz-dkms-exporter")          # run-parts' own order: ours is last
    text = out.read_text()
    assert complete_textfile(text) and "dkms_next_boot_ready 0.0" in text    # the fixture's verdict
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in textfile_dir.iterdir()) == ["dkms.prom"]   # no temporary left


def test_postrm_hook_is_the_same_script_and_both_are_executable_in_git():
    assert POSTRM_HOOK.read_bytes() == HOOK.read_bytes()
    staged = subprocess.run(["git", "ls-files", "-s", str(HOOK), str(POSTRM_HOOK)], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    modes = [line.split()[0] for line in staged if line]
    assert modes == ["100755", "100755"]


def test_hook_passes_shellcheck_as_posix_sh():
    r = subprocess.run([require_tool("shellcheck"), "--shell=sh", "--severity=style", str(HOOK)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_apt_post_invoke_runs_the_hook(tmp_path, fixture_host, textfile_dir):
    """The command apt runs is the one apt-config reads out of the snippet."""
    dump = subprocess.run([require_tool("apt-config"), "-c", str(APT_SNIPPET), "dump"], capture_output=True,
                          text=True, check=True).stdout
    commands = [line.split(" ", 1)[1].rstrip(";").strip().strip('"') for line in dump.splitlines()
                if line.startswith("DPkg::Post-Invoke::") and "dkms-exporter" in line]
    assert len(commands) == 1
    installed = "/etc/kernel/postinst.d/zzz-dkms-exporter"
    assert installed in commands[0]
    out = textfile_dir / "dkms.prom"
    env = hook_env(defaults_file(tmp_path, **direct_settings(fixture_host, out)))
    r = subprocess.run(["sh", "-c", commands[0].replace(installed, str(HOOK))], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and complete_textfile(out.read_text())
    # not installed (the snippet left behind after the hook was removed): still exit 0, no noise
    r = subprocess.run(["sh", "-c", commands[0].replace(installed, str(tmp_path / "gone"))], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == ""


def test_auto_mode_without_systemd_runs_the_exporter_directly(tmp_path, fixture_host, textfile_dir):
    if Path("/run/systemd/system").is_dir():
        pytest.fail("this test expects a machine without systemd as init (a container, like CI)")
    out = textfile_dir / "dkms.prom"
    settings = direct_settings(fixture_host, out)
    del settings["DKMS_EXPORTER_REFRESH"]
    r = run_hook(hook_env(defaults_file(tmp_path, **settings)))
    assert r.returncode == 0 and complete_textfile(out.read_text())


def test_systemd_mode_queues_the_sandboxed_unit_without_waiting(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake / "systemctl").chmod(0o755)
    env = hook_env(defaults_file(tmp_path, DKMS_EXPORTER_REFRESH="systemd"))
    env["PATH"] = f"{fake}:{env['PATH']}"
    r = run_hook(env)
    assert r.returncode == 0 and calls.read_text() == "restart --no-block dkms-exporter-textfile.service\n"
    (fake / "systemctl").write_text("#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n")
    r = run_hook(env)
    assert r.returncode == 0 and "dkms.prom will be refreshed by its timer" in r.stderr


# --- never failing the package operation ----------------------------------------------------

def _fake_exporter(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-dkms-exporter"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("case", ["missing binary", "no textfile directory", "unwritable directory",
                                  "exporter fails", "exporter is a directory", "broken defaults file",
                                  "defaults file exits"])
def test_hook_exits_0_when_the_refresh_fails(tmp_path, fixture_host, textfile_dir, case):
    out = textfile_dir / "dkms.prom"
    settings = direct_settings(fixture_host, out)
    expect = {
        "missing binary": "is not installed",
        "no textfile directory": "does not exist",
        "unwritable directory": "failed (exit 1)",
        "exporter fails": "failed (exit 3)",
        "exporter is a directory": "failed (exit 126)",
        "broken defaults file": "cannot read",
        "defaults file exits": "cannot read",
    }[case]
    if case == "missing binary":
        settings["DKMS_EXPORTER_BIN"] = str(tmp_path / "nowhere" / "dkms-exporter")
    elif case == "no textfile directory":
        settings["DKMS_EXPORTER_TEXTFILE"] = str(tmp_path / "no-such-dir" / "dkms.prom")
    elif case == "unwritable directory":
        settings["DKMS_EXPORTER_TEXTFILE"] = "/proc/dkms.prom"      # not writable, even for root
    elif case == "exporter fails":
        settings["DKMS_EXPORTER_BIN"] = str(_fake_exporter(tmp_path, "echo 'Traceback: boom' >&2\nexit 3\n"))
    elif case == "exporter is a directory":
        (tmp_path / "bindir").mkdir()
        settings["DKMS_EXPORTER_BIN"] = str(tmp_path / "bindir")
    defaults = defaults_file(tmp_path, **settings)
    if case == "broken defaults file":
        defaults.write_text(defaults.read_text() + 'if then "unterminated\n')
    elif case == "defaults file exits":
        defaults.write_text("exit 1\n")
    r = run_hook(hook_env(defaults))
    assert r.returncode == 0
    assert expect in r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_hung_exporter_is_killed_within_the_timeout(tmp_path, textfile_dir):
    """An exporter that ignores SIGTERM is killed 5 s after the timeout; the hook still exits 0."""
    stubborn = _fake_exporter(tmp_path, "trap '' TERM\nsleep 120 & wait\nsleep 120\n")
    defaults = defaults_file(tmp_path, DKMS_EXPORTER_BIN=str(stubborn), DKMS_EXPORTER_REFRESH="direct",
                             DKMS_EXPORTER_TEXTFILE=str(textfile_dir / "dkms.prom"),
                             DKMS_EXPORTER_HOOK_TIMEOUT="1")
    t0 = time.monotonic()
    r = run_hook(hook_env(defaults), timeout=60)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0 and "took longer than 1s" in r.stderr
    assert elapsed < 15, elapsed


# --- atomicity ------------------------------------------------------------------------------

def test_detector_sees_a_torn_file(fixture_host):
    """The completeness check used below would notice a half-written file."""
    whole = subprocess.run([str(EXPORTER), f"--path.rootfs={fixture_host}", "metrics"], capture_output=True,
                           text=True, check=True).stdout
    assert not complete_textfile(whole[: len(whole) // 2])
    assert not complete_textfile(whole[:-1])


def _read_while_hooks_run(env: dict[str, str], textfile_dir: Path, runs: int) -> tuple[int, list, set, set]:
    """Run the hook ``runs`` times while another thread reads dkms.prom as fast as it can."""
    out = textfile_dir / "dkms.prom"
    stop = threading.Event()
    reads, torn, stamps, names = [0], [], set(), set()

    def reader() -> None:
        last = None
        while not stop.wait(0.0005):     # ~1000 reads/s, leaving CPU for the writer
            names.update(os.listdir(textfile_dir))
            try:
                text = out.read_text()
            except FileNotFoundError:
                continue
            reads[0] += 1
            if text == last:
                continue                 # already judged whole; parsing again only burns CPU
            last = text
            if not complete_textfile(text):
                torn.append(text)
            else:
                stamps.add(text.rsplit("\n", 2)[-2])
    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(runs):
            assert run_hook(env).returncode == 0
    finally:
        stop.set()
        t.join()
    return reads[0], torn, stamps, names


@pytest.mark.slow
def test_concurrent_reader_never_sees_a_partial_file(tmp_path, fixture_host, textfile_dir):
    """node_exporter reads *.prom whenever Prometheus scrapes; it must only ever see whole files."""
    env = hook_env(defaults_file(tmp_path, **direct_settings(fixture_host, textfile_dir / "dkms.prom")))
    reads, torn, stamps, names = _read_while_hooks_run(env, textfile_dir, 8)
    assert torn == [] and reads > 50
    assert len(stamps) >= 2                                   # the reader did see the file replaced
    prom = {n for n in names if n.endswith(".prom")}
    assert prom == {"dkms.prom"}, names                       # temporaries are never *.prom


def test_the_reader_loop_catches_a_writer_that_is_not_atomic(tmp_path, fixture_host, textfile_dir):
    """Control for the test above: a plain `>` redirect in two steps is caught tearing."""
    whole = tmp_path / "whole.prom"
    subprocess.run([str(EXPORTER), f"--path.rootfs={fixture_host}", "textfile", f"--output={whole}"],
                   capture_output=True, check=True)
    naive = _fake_exporter(tmp_path, 'for a; do case $a in --output=*) out=${a#--output=};; esac; done\n'
                                     f'head -c 2000 {whole} > "$out"; sleep 0.05; tail -c +2001 {whole} >> "$out"\n')
    settings = direct_settings(fixture_host, textfile_dir / "dkms.prom", bin=naive)
    _, torn, _, _ = _read_while_hooks_run(hook_env(defaults_file(tmp_path, **settings)), textfile_dir, 4)
    assert torn


@pytest.mark.slow
def test_dnf_action_is_read_by_the_real_plugin_and_runs_the_same_hook():
    """deploy/dnf/dkms-exporter.action as dnf-plugins-core's post-transaction-actions plugin parses
    it (its own _parse_actions, run by the system python3): one action, every package, any state,
    the same hook command as apt's."""
    from rpmtools import dnf_plugins, rpm_python
    pluginpath, pythonpath = dnf_plugins()
    parsed = rpm_python("""
        import json, logging, sys, importlib.util
        args = json.load(sys.stdin)
        sys.path.insert(0, args["site"])
        spec = importlib.util.spec_from_file_location("pta", args["plugins"] + "/post-transaction-actions.py")
        pta = importlib.util.module_from_spec(spec); spec.loader.exec_module(pta)
        class Fake: pass
        fake = Fake(); fake.actiondir = args["dir"] + "/"; fake.logger = logging.getLogger("x")
        print(json.dumps(pta.PostTransactionActions._parse_actions(fake)))
        """, {"dir": str(REPO / "deploy/dnf"), "plugins": pluginpath, "site": pythonpath})
    assert len(parsed) == 1
    key, state, command = parsed[0]
    assert (key, state) == ("*", "any")
    assert "/etc/kernel/postinst.d/zzz-dkms-exporter" in command and "timeout -k 5 90" in command
    assert command.rstrip().endswith("fi")
