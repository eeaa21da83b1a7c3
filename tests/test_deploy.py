"""deploy/: the systemd units through systemd-analyze, the Kubernetes manifests through their schemas.

systemd here runs no services (a container), so the units are checked the ways that need no
running manager: `systemd-analyze verify` under --root, and `systemd-analyze security
--offline=yes`, whose exposure score must stay <= 2.5.  Every command line in deploy/ is parsed
with the exporter's real argparse parser, so a renamed flag breaks this test, not a host.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml
from testkit import REPO, by_collector, require_tool, samples

from exporter import __version__
from exporter.cli import build_parser
from exporter.web.server import DEFAULT_PORT

SYSTEMD = REPO / "deploy/systemd"
K8S = REPO / "deploy/kubernetes"
SERVE_UNIT, TEXTFILE_UNIT = "dkms-exporter.service", "dkms-exporter-textfile.service"
UNITS = [SERVE_UNIT, TEXTFILE_UNIT, "dkms-exporter-textfile.timer"]
EXPOSURE_TARGET = 2.5
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
HOOK = REPO / "deploy/hooks/kernel-postinst.d/zzz-dkms-exporter"


# --- systemd ---------------------------------------------------------------------------------

def unit_settings(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd units repeat keys, so no configparser."""
    out, section = [], ""
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def setting(name: str, key: str) -> list[str]:
    return [v for _, k, v in unit_settings(name) if k == key]


def defaults() -> dict[str, str]:
    """The shipped /etc/default/dkms-exporter, evaluated by a real shell."""
    script = f'set -a; . "{SYSTEMD / "dkms-exporter.default"}"; env -0'
    out = subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"]}, capture_output=True,
                         check=True).stdout.decode()
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {k: v for k, v in env.items() if k.startswith("DKMS_EXPORTER_")}


def expand_exec(line: str, env: dict[str, str]) -> list[str]:
    """systemd's ExecStart= expansion: ``$VAR`` splits into words, ``${VAR}`` stays one word."""
    words = []
    for word in shlex.split(line):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            words.extend(env.get(m.group(1), "").split())
        else:
            words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda g: env.get(g.group(1), ""), word))
    return words


@pytest.fixture(scope="module")
def systemd_root(tmp_path_factory) -> Path:
    """A root for `systemd-analyze verify --root`: the real unit tree, our units, an exporter."""
    require_tool("systemd-analyze")
    root = tmp_path_factory.mktemp("systemd-root")
    system = Path("/usr/lib/systemd/system")
    if not (system / "multi-user.target").exists():
        pytest.fail("systemd's units are missing (/usr/lib/systemd/system): apt-get install systemd")
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, root / "etc/systemd/system" / unit)
    exe = root / "usr/local/bin/dkms-exporter"   # where docs/deploy.md installs it
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("systemd-analyze"), "verify", f"--root={root}", *units],
                          capture_output=True, text=True, timeout=60)


def test_units_pass_systemd_analyze_verify_without_a_warning(systemd_root):
    r = verify(systemd_root, *UNITS)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_verify_would_catch_a_typo_and_a_missing_binary(systemd_root):
    """Control: the silence above means something."""
    typo = systemd_root / "etc/systemd/system/typo.service"
    typo.write_text((SYSTEMD / SERVE_UNIT).read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    assert "Unknown key 'ProtectHom'" in verify(systemd_root, "typo.service").stderr
    typo.write_text((SYSTEMD / SERVE_UNIT).read_text().replace("/usr/local/bin/", "/nowhere/"))
    assert verify(systemd_root, "typo.service").returncode != 0
    typo.unlink()


def security(unit: str) -> tuple[float, dict[str, dict]]:
    """Overall exposure and the per-setting verdicts of `systemd-analyze security --offline`."""
    tool = require_tool("systemd-analyze")
    path = str(SYSTEMD / unit)
    text = subprocess.run([tool, "security", "--offline=yes", path], capture_output=True, text=True,
                          timeout=60).stdout
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", text)
    assert m, text
    js = subprocess.run([tool, "security", "--offline=yes", "--json=short", path], capture_output=True,
                        text=True, timeout=60).stdout
    return float(m.group(1)), {e["name"]: e for e in json.loads(js)}


@pytest.mark.parametrize("unit", [SERVE_UNIT, TEXTFILE_UNIT])
def test_exposure_score_is_at_most_the_target(unit):
    score, _ = security(unit)
    assert score <= EXPOSURE_TARGET, f"{unit}: exposure {score} > {EXPOSURE_TARGET}"
    # the documented scores are the measured ones
    documented = {SERVE_UNIT: "1.7", TEXTFILE_UNIT: "0.8"}[unit]
    assert f"{score:.1f}" == documented, f"{unit} now scores {score}: update docs/deploy.md and this test"
    assert f"`{unit}` | {documented}" in (REPO / "docs/deploy.md").read_text()


@pytest.mark.parametrize("unit", [SERVE_UNIT, TEXTFILE_UNIT])
def test_hardening_as_systemd_itself_reads_it(unit):
    _, checks = security(unit)
    protected = {name for name, e in checks.items() if e["set"]}
    for name in ("NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=", "PrivateDevices=",
                 "ProtectKernelTunables=", "ProtectControlGroups=", "ProtectKernelLogs=", "RestrictSUIDSGID=",
                 "CapabilityBoundingSet=~CAP_SYS_MODULE", "CapabilityBoundingSet=~CAP_SYS_ADMIN",
                 "CapabilityBoundingSet=~CAP_SYS_PTRACE", "CapabilityBoundingSet=~CAP_(CHOWN|FSETID|SETFCAP)",
                 "SystemCallFilter=~@module", "SystemCallFilter=~@mount", "SystemCallFilter=~@privileged",
                 "RestrictAddressFamilies=~AF_PACKET", "RestrictAddressFamilies=~AF_NETLINK", "User=/DynamicUser="):
        assert name in protected, f"{unit}: {name} {checks.get(name)}"
    # deliberate: /usr/lib/modules must stay visible, and so must /proc/sys; caps must reach host files
    for name in ("ProtectKernelModules=", "ProcSubset=", "PrivateUsers="):
        assert name not in protected, f"{unit}: {name} would hide what the exporter reads"


def test_capabilities_are_exactly_the_documented_ones():
    assert setting(SERVE_UNIT, "CapabilityBoundingSet") == ["CAP_DAC_READ_SEARCH"]
    assert setting(SERVE_UNIT, "AmbientCapabilities") == ["CAP_DAC_READ_SEARCH"]
    assert setting(SERVE_UNIT, "RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"]
    assert setting(TEXTFILE_UNIT, "CapabilityBoundingSet") == ["CAP_DAC_READ_SEARCH CAP_DAC_OVERRIDE"]
    assert setting(TEXTFILE_UNIT, "AmbientCapabilities") == ["CAP_DAC_READ_SEARCH CAP_DAC_OVERRIDE"]
    assert setting(TEXTFILE_UNIT, "PrivateNetwork") == ["yes"]
    for unit in (SERVE_UNIT, TEXTFILE_UNIT):
        assert setting(unit, "DynamicUser") == ["yes"] and setting(unit, "ProtectSystem") == ["strict"]
        assert setting(unit, "SystemCallFilter")[0] == "@system-service"
        hidden = " ".join(setting(unit, "InaccessiblePaths")).split()
        assert "-/var/lib/dkms/mok.key" in hidden and "-/var/lib/shim-signed/mok/MOK.priv" in hidden


def test_exec_lines_parse_with_the_real_cli():
    env = defaults()
    parser = build_parser()
    serve = expand_exec(setting(SERVE_UNIT, "ExecStart")[0], env)
    assert serve[0] == "/usr/local/bin/dkms-exporter"
    args = parser.parse_args(serve[1:])
    assert args.command == "serve" and args.listen == f":{DEFAULT_PORT}"
    unit_env = dict(v.split("=", 1) for v in setting(TEXTFILE_UNIT, "Environment"))
    textfile = expand_exec(setting(TEXTFILE_UNIT, "ExecStart")[0], {**unit_env, **env})
    args = parser.parse_args(textfile[1:])
    assert args.command == "textfile" and args.output == env["DKMS_EXPORTER_TEXTFILE"]
    # the unit, the defaults file and the hook agree on where dkms.prom goes, and the unit may write there
    assert unit_env["DKMS_EXPORTER_TEXTFILE"] == env["DKMS_EXPORTER_TEXTFILE"]
    assert f"out=${{DKMS_EXPORTER_TEXTFILE:-{env['DKMS_EXPORTER_TEXTFILE']}}}" in HOOK.read_text()
    writable = [p.lstrip("-") for p in " ".join(setting(TEXTFILE_UNIT, "ReadWritePaths")).split()]
    assert str(PurePosixPath(env["DKMS_EXPORTER_TEXTFILE"]).parent) in writable
    assert "/var/lib/node_exporter/textfile_collector" in writable      # upstream's conventional path
    # a serve-only flag in the textfile unit would be an argparse error; the defaults keep them apart
    with pytest.raises(SystemExit):
        parser.parse_args(["textfile", "--output=x", "--web.listen-address=:1"])


# --- the units' identity, replayed with setpriv ---------------------------------------------

def unit_identity(unit: str) -> list[str]:
    """setpriv arguments for what the unit grants: an unprivileged uid, exactly its capabilities
    (bounding, inheritable and ambient, as systemd sets them), no_new_privs."""
    caps = setting(unit, "AmbientCapabilities")[0].split()
    assert caps == setting(unit, "CapabilityBoundingSet")[0].split()
    spec = "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in caps)
    return [require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", f"--bounding-set={spec}",
            f"--inh-caps={spec}", f"--ambient-caps={spec}", "--no-new-privs"]


@pytest.fixture(scope="module")
def root_only_host(tmp_path_factory) -> Path:
    """The reboot-trap host with its sensitive files root-only, as on Debian (initrds are 0600)."""
    if os.geteuid() != 0:
        pytest.fail("replaying the units' identity needs root (CI runs as root)")
    from example_hosts import reboot_trap
    root = tmp_path_factory.mktemp("rootonly") / "host"
    reboot_trap(root)
    locked = [root / "boot/grub/grub.cfg", *root.glob("boot/System.map-*"), *root.glob("var/lib/dkms/**/*.ko")]
    assert len(locked) >= 3
    for f in locked:
        f.chmod(0o600)
    (root / "var/lib/dkms").chmod(0o700)
    return root


def test_serve_units_identity_reads_root_only_files(root_only_host):
    """Uid nobody with CAP_DAC_READ_SEARCH alone reads the 0600 files that plain nobody cannot."""
    grub = root_only_host / "boot/grub/grub.cfg"
    denied = subprocess.run([*unit_identity(SERVE_UNIT)[:4], "--bounding-set=-all", "--inh-caps=-all",
                             "cat", str(grub)], capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr       # the fixture is root-only
    exporter = Path(sys.executable).with_name("dkms-exporter")
    r = subprocess.run([*unit_identity(SERVE_UNIT), str(exporter), f"--path.rootfs={root_only_host}", "metrics"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    errors = by_collector(samples(r.stdout), "dkms_scrape_collector_errors")
    assert errors and not any(errors.values()), (errors, r.stderr)
    assert "Permission denied" not in r.stderr and "dkms_next_boot_ready 0.0" in r.stdout


def test_textfile_units_identity_can_write_into_a_root_owned_textfile_directory(root_only_host, tmp_path):
    """CAP_DAC_OVERRIDE is in the textfile unit because node_exporter's directory is root's 0755."""
    textdir = tmp_path / "node-exporter"
    textdir.mkdir(mode=0o755)
    exporter = Path(sys.executable).with_name("dkms-exporter")
    cmd = [str(exporter), f"--path.rootfs={root_only_host}", "textfile", f"--output={textdir / 'dkms.prom'}"]
    without = subprocess.run([*unit_identity(SERVE_UNIT), *cmd], capture_output=True, text=True, timeout=60)
    assert without.returncode == 1 and "Permission denied" in without.stderr
    r = subprocess.run([*unit_identity(TEXTFILE_UNIT), *cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    written = textdir / "dkms.prom"
    assert written.stat().st_uid == 65534 and stat.S_IMODE(written.stat().st_mode) == 0o644
    assert "dkms_next_boot_ready 0.0" in written.read_text()


def test_timer_starts_the_textfile_unit():
    assert setting("dkms-exporter-textfile.timer", "Unit") in ([], [TEXTFILE_UNIT])   # implied by the name
    assert setting("dkms-exporter-textfile.timer", "WantedBy") == ["timers.target"]
    assert setting(TEXTFILE_UNIT, "Type") == ["oneshot"] and setting(TEXTFILE_UNIT, "WantedBy") == []


# --- Kubernetes ------------------------------------------------------------------------------

@functools.cache
def _manifests() -> tuple[dict, ...]:
    docs: list[dict] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d)
    return tuple(docs)


def manifests() -> list[dict]:
    """Every object in deploy/kubernetes/*.yaml (a fresh copy: tests may mutate it)."""
    return copy.deepcopy(list(_manifests()))


def one(kind: str) -> dict:
    found = [d for d in manifests() if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects in deploy/kubernetes"
    return found[0]


def kubernetes_validate():
    try:
        import kubernetes_validate as kv
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: it belongs in pyproject's [test] extras")
    return kv


# 1.30: the first release with volumeMounts[].recursiveReadOnly
@pytest.mark.parametrize("version", ["1.30.0", "latest"])
def test_core_objects_validate_against_the_kubernetes_schema(version):
    kv = kubernetes_validate()
    target = kv.latest_version() if version == "latest" else version
    checked = 0
    for doc in manifests():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue            # CRDs: structure checked below
        kv.validate(doc, target, strict=True)      # strict: an unknown or misspelt field is an error
        checked += 1
    assert checked >= 4


def test_the_schema_check_catches_a_misspelt_field():
    kv = kubernetes_validate()
    ds = one("DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(ds, kv.latest_version(), strict=True)


def _container() -> dict:
    return one("DaemonSet")["spec"]["template"]["spec"]["containers"][0]


def test_daemonset_args_and_paths_match_the_cli():
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    c = _container()
    args = build_parser().parse_args(c.get("command", [])[1:] + c["args"])
    assert args.command == "serve"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    root_mount = next(m for m in mounts.values() if m["mountPath"] == args.rootfs)
    assert volumes[root_mount["name"]]["hostPath"]["path"] == "/"
    assert root_mount["readOnly"] is True and root_mount["recursiveReadOnly"] == "Enabled"
    assert args.procfs is None and args.sysfs is None      # the host's /proc and /sys under /host
    port = int(args.listen.rpartition(":")[2])
    assert [p["containerPort"] for p in c["ports"] if p["name"] == "metrics"] == [port]
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"]["port"] == "metrics"
    sm = one("ServiceMonitor")["spec"]["endpoints"][0]
    assert sm["path"] == args.telemetry_path
    assert c["image"].rpartition(":")[2] == __version__


def test_daemonset_least_privilege_and_every_node():
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    sc = _container()["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert {"operator": "Exists"} in pod["tolerations"]                   # tainted nodes too
    res = _container()["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
    ds = one("DaemonSet")
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_service_and_servicemonitor_select_the_pods_and_yield_the_alerts_job():
    pod_labels = one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    svc = one("Service")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics" and svc["spec"]["clusterIP"] == "None"
    sm = one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
    rule = one("PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    jobs = {m for e in exprs for m in re.findall(r'job="([^"]+)"', e)}
    assert jobs == {job}, f"the alerts select job {jobs}, the ServiceMonitor yields job={job!r}"


def test_dashboard_configmap_is_generated_from_dashboards():
    # rendered by the mixin with every other monitoring file (tests/test_mixin.py checks it is current)
    cm = one("ConfigMap")
    dashboards = sorted((REPO / "dashboards").glob("*.json"))
    assert dashboards and sorted(cm["data"]) == [p.name for p in dashboards]
    for p in dashboards:
        assert json.loads(cm["data"][p.name]) == json.loads(p.read_text())
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    # kubectl's client-side apply copies the object into a 256 KiB annotation
    assert len(json.dumps(cm)) < 256 * 1024


def test_containerfile_matches_the_cli():
    text = (K8S / "Containerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))
    assert entry == ["/usr/bin/dkms-exporter"]   # where the Debian package puts it
    assert build_parser().parse_args(cmd).rootfs == "/host"
    assert re.search(r"^EXPOSE (\d+)$", text, re.M).group(1) == str(DEFAULT_PORT)
    assert f"dkms-exporter:{__version__}" in text
