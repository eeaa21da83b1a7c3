"""The bundled alert and recording rules: generated files current, valid for the real promtool
and amtool, every alert unit-tested firing and silent, conventions, runbook anchors, metric
names documented; and the kured sentinel against the example hosts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit import require_tool  # noqa: E402
from example_hosts import EXAMPLES  # noqa: E402

from alerts import generate  # noqa: E402
from alerts.config import (ANY_EXPORTER_INSTANCE, ANY_EXPORTER_RECORD, INITRAMFS_REASONS, LOADED_MODULE_REASONS,  # noqa: E402
                           NON_BLOCKING_REASONS, PENDING_METRICS, REBOOT_GATE_PREFIX, SECURE_BOOT_REASONS,
                           VERDICT_ONLY_REASONS)
from exporter.verdict.fixes import REASONS  # noqa: E402
from test_docs import kernel_level_reasons  # noqa: E402

UNIT_TESTS = sorted((REPO / "tests" / "alerts").glob("*.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
METRICS_DOC = REPO / "docs" / "metrics.md"
SENTINEL = REPO / "deploy" / "kured" / "sentinel.sh"
SEVERITIES = {"critical", "warning", "info"}
PROMETHEUS_BUILTINS = {"up", "ALERTS"}
# Reasons of dkms_module_problem the module-truth and initramfs work adds (issues 3 and 4).
PLANNED_MODULE_REASONS = {"vermagic_mismatch", "symbol_version_mismatch", "unknown_symbol",
                          *SECURE_BOOT_REASONS, *INITRAMFS_REASONS}
# The reasons of dkms_kernel_problem, as docs/readiness.md lists them in the code's order
# (tests/test_docs.py holds the two together): a new kernel-level reason needs no edit here.
KERNEL_LEVEL_REASONS = set(kernel_level_reasons())
# The recording rules of the reboot-gate group: the boot-target join, computed once per evaluation.
GATE_RECORD_PREFIX = "dkms:"
# The default runbook base (the mixin's _config.runbookUrlBase), and the alerts whose own
# instance serves no runbooks, so their link names any exporter Prometheus scrapes.
RUNBOOK_BASE = "http://{{ $labels.instance }}/runbooks"
ELSEWHERE = {"DkmsExporterDown", "DkmsExporterAbsent", "DkmsMetricsMissing"}


def all_alerts() -> list[dict]:
    """The rendered alerting rules (what Prometheus loads), in file order."""
    return generate.alert_rules()


def gate_alerts() -> list[dict]:
    return [r for r in all_alerts() if r["alert"].startswith(REBOOT_GATE_PREFIX)]


def records() -> set[str]:
    """Every recorded name: the fleet rules' and the reboot-gate group's."""
    return {r["record"] for r in generate.record_rules() + generate.gate_records()}


def gate_records() -> set[str]:
    return {r["record"] for r in generate.gate_records()}


# --- PromQL metric names --------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_WORD = re.compile(r"(?<![\w.$:])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
             "bool", "offset", "atan2", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not keywords, not
    function or aggregation names (followed by '('), not label names (inside {} or grouping
    clauses) and not in strings or range brackets."""
    e = _STRINGS.sub('""', expr)
    e = _MATCHERS.sub(" ", e)
    e = _BRACKETS.sub(" ", e)
    e = _GROUPING.sub(" ", e)
    names = set()
    for m in _WORD.finditer(e):
        word = m.group()
        if word.lower() in _KEYWORDS or e[m.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def documented_metrics() -> set[str]:
    """Every metric name docs/metrics.md lists in a table's first column."""
    return set(re.findall(r"^\|\s*`(dkms_[a-z0-9_]+)`", METRICS_DOC.read_text(), re.MULTILINE))


def allowed_metric_names(recorded: set[str] = frozenset()) -> set[str]:
    """Names a rule or panel may read: documented metrics, pending ones, Prometheus' own, the
    reboot-gate group's boot-target records, and `recorded`."""
    documented = documented_metrics()
    pending = {name for name in PENDING_METRICS if name not in documented}
    return documented | pending | PROMETHEUS_BUILTINS | gate_records() | set(recorded)


def test_metric_name_extraction() -> None:
    expr = ('count by (job, kernel) (dkms_a{job=~"$job", reason!~"x|y"} == 1\n'
            '  and on (job, instance) group_left() dkms_b offset 7d) or vector(0)\n'
            '  - time() + rate(dkms_c_total[$__rate_interval]) * 1e3 > bool job:dkms_d:count')
    assert metric_names(expr) == {"dkms_a", "dkms_b", "dkms_c_total", "job:dkms_d:count"}
    assert metric_names('ALERTS{alertname=~"Dkms.*"}') == {"ALERTS"}
    assert metric_names("sum without (instance) (up)") == {"up"}


# --- generated files ------------------------------------------------------------------------

def test_generated_files_are_current() -> None:
    require_tool("jsonnet")
    # jsonnet takes ~3 s of CPU: at a load of 20 on 2 cores that is over a minute of wall time
    result = subprocess.run([sys.executable, str(REPO / "alerts" / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert generate.drift() == []


def test_drift_check_names_an_edited_file(tmp_path: Path) -> None:
    generate.write(tmp_path)
    assert generate.drift(tmp_path) == []
    edited = tmp_path / generate.ALERTS_FILE
    edited.write_text(edited.read_text().replace('for: "30m"', 'for: "1m"', 1))
    (tmp_path / generate.DASHBOARD).unlink()
    assert sorted(generate.drift(tmp_path)) == sorted([generate.ALERTS_FILE, generate.DASHBOARD])


def test_test_mode_only_shortens_for(tmp_path: Path) -> None:
    normal = yaml.safe_load(generate.render()[generate.ALERTS_FILE])
    fast = yaml.safe_load(generate.render({"forOverride": "2s"})[generate.ALERTS_FILE])
    for group, fast_group in zip(normal["groups"], fast["groups"]):
        for rule, fast_rule in zip(group["rules"], fast_group["rules"]):
            if "record" in rule:
                assert fast_rule == rule
                continue
            assert fast_rule["for"] == "2s"
            assert {k: v for k, v in rule.items() if k != "for"} == \
                   {k: v for k, v in fast_rule.items() if k != "for"}
    with pytest.raises(SystemExit):
        generate.main(["--for", "2s"])  # never into the repository


# --- the real promtool and amtool ---------------------------------------------------------

def test_promtool_check_rules(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    operator_rule = yaml.safe_load((REPO / generate.PROMETHEUS_RULE).read_text())
    spec = tmp_path / "prometheusrule-spec.yaml"
    spec.write_text(yaml.safe_dump(operator_rule["spec"]))
    files = [REPO / generate.ALERTS_FILE, REPO / generate.RULES_FILE, spec]
    result = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 3
    alerts = sum(len(g["rules"]) for g in yaml.safe_load((REPO / generate.ALERTS_FILE).read_text())["groups"])
    assert f"SUCCESS: {alerts} rules found" in result.stdout


@pytest.mark.slow
def test_promtool_unit_tests() -> None:
    promtool = require_tool("promtool")
    assert UNIT_TESTS, "tests/alerts/*.yaml are missing"
    result = subprocess.run([promtool, "test", "rules", *map(str, UNIT_TESTS)], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)


def _unit_test_cases() -> tuple[set[tuple[str, str]], set[str], set[str]]:
    """(alertname, severity) that some case expects to fire; alertnames some case expects
    silent; expressions some promql_expr_test checks."""
    fired, silent, exprs = set(), set(), set()
    for path in UNIT_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                if not case.get("exp_alerts"):
                    silent.add(case["alertname"])
                for alert in case.get("exp_alerts") or []:
                    assert {"summary", "description", "fix", "runbook_url"} <= set(alert["exp_annotations"]), path
                    fired.add((case["alertname"], alert["exp_labels"]["severity"]))
            exprs.update(case["expr"] for case in group.get("promql_expr_test", []))
    return fired, silent, exprs


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    fired, silent, _ = _unit_test_cases()
    rules = {(a["alert"], a["labels"]["severity"]) for a in all_alerts()}
    assert rules - fired == set(), "alerts (name, severity) without a unit test that fires them"
    assert {name for name, _ in rules} - silent == set(), "alerts without a must-not-fire case"
    assert fired - rules == set(), "unit tests expect alerts the rules do not have"


def test_every_recording_rule_is_unit_tested() -> None:
    _, _, exprs = _unit_test_cases()
    assert records() - exprs == set()


# --- conventions --------------------------------------------------------------------------

def test_alert_conventions() -> None:
    by_name: dict[str, set[tuple[str, str]]] = {}
    for rule in all_alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Dkms[A-Z][A-Za-z0-9]+", name), name
        assert rule["labels"]["severity"] in SEVERITIES
        annotations = rule["annotations"]
        assert "{{" not in annotations["summary"], f"{name}: summary must be static"
        assert annotations["summary"].endswith("."), name
        if not rule["expr"].startswith("absent("):
            assert "{{ $labels.instance }}" in annotations["description"], name
        base = RUNBOOK_BASE.replace("{{ $labels.instance }}", ANY_EXPORTER_INSTANCE) if name in ELSEWHERE \
            else RUNBOOK_BASE
        assert annotations["runbook_url"] == f"{base}#{name.lower()}"
        assert rule.get("for"), f"{name}: every alert waits before firing"
        by_name.setdefault(name, set()).add((annotations["summary"], annotations["runbook_url"]))
    assert all(len(v) == 1 for v in by_name.values()), "severity variants must share summary and runbook"


def test_annotations_make_the_page_useful_before_a_link_is_clicked() -> None:
    """Each alert names what is broken (module, kernel, reason, where it has them) and gives a
    one-line fix or where to find it: the host's report page (report_url, the exporter's `/`)
    and the reason's runbook entry (reason_url).  promtool's cases (tests/alerts/) check the
    expanded text of each one."""
    for rule in all_alerts():
        name, annotations = rule["alert"], rule["annotations"]
        assert annotations["fix"] and "\n" not in annotations["fix"], name
        if name in ELSEWHERE:
            assert "report_url" not in annotations, f"{name}: its instance serves no report"
        else:
            assert annotations["report_url"] == "http://{{ $labels.instance }}/", name
        gate_module = name.startswith(REBOOT_GATE_PREFIX) and re.match(r"dkms:module_problem:boot_target", rule["expr"])
        if gate_module or name == "DkmsNextBootInitramfsUnusable":
            assert annotations["reason_url"] == RUNBOOK_BASE + "#reason-{{ $labels.reason }}", name
            for label in ("kernel", "reason") + (("module",) if gate_module else ()):
                assert f"$labels.{label}" in annotations["description"], f"{name}: description lacks {label}"
        else:
            assert "reason_url" not in annotations, name


def test_severity_variants_are_exclusive() -> None:
    """Two rules with one name differ in severity; the higher comes first in its group and the
    lower excludes what the higher one fires, so one problem never pages twice (promtool cases
    in tests/alerts/ check the hand-over when a problem escalates)."""
    order = {"critical": 0, "warning": 1, "info": 2}
    variants: dict[str, list] = {}
    for alert in all_alerts():
        variants.setdefault(alert["alert"], []).append(alert)
    for name, alerts in variants.items():
        severities = [a["labels"]["severity"] for a in alerts]
        assert len(set(severities)) == len(alerts), name
        if len(alerts) == 2:
            (high, low), (_, low_rule) = severities, alerts
            assert order[high] < order[low], f"{name}: the higher severity must come first"
            assert f'ALERTS{{alertname="{name}", alertstate="firing", severity="{high}"}}' in low_rule["expr"]


def test_reboot_gate_is_the_prefix() -> None:
    groups = yaml.safe_load((REPO / generate.ALERTS_FILE).read_text())["groups"]
    gate = {r["alert"] for g in groups if g["name"] == "dkms-exporter.reboot-gate" for r in g["rules"] if "alert" in r}
    assert gate and all(name.startswith(REBOOT_GATE_PREFIX) for name in gate)
    others = {a["alert"] for a in all_alerts()} - gate
    assert not any(name.startswith(REBOOT_GATE_PREFIX) for name in others)
    assert {a["labels"]["severity"] for a in gate_alerts()} <= {"critical", "warning"}
    kured = (REPO / "docs" / "kured.md").read_text()
    assert f"--alert-filter-regexp=^{REBOOT_GATE_PREFIX}" in kured


def test_each_module_problem_reason_belongs_to_exactly_one_gate_alert() -> None:
    """Every reason a module can fail for (today's and the planned ones) is matched by the
    reason matcher of exactly one module-level reboot-gate alert; a warning reason by none."""
    reasons = (set(REASONS) | PLANNED_MODULE_REASONS) - KERNEL_LEVEL_REASONS
    found: dict[str, set[tuple[str, str]]] = {}
    for alert in gate_alerts():
        m = re.match(r'dkms:module_problem:boot_target(?:_urgent)?\{[^}]*reason(=~|!~)"([^"]*)"', alert["expr"])
        if m:
            found.setdefault(alert["alert"], set()).add((m.group(1), m.group(2)))
    assert all(len(v) == 1 for v in found.values()), f"severity variants disagree on their reasons: {found}"
    matchers = {name: next(iter(v)) for name, v in found.items()}
    assert len(matchers) == 3, matchers
    for reason in sorted(reasons):
        owners = [name for name, (op, regex) in matchers.items()
                  if (re.fullmatch(regex, reason) is not None) == (op == "=~")]
        assert len(owners) == (0 if reason in NON_BLOCKING_REASONS else 1), f"{reason}: {owners}"


_KERNEL_REASON_MATCHER = re.compile(r'dkms(?:_|:)kernel_problem(?::boot_target)?\{[^}]*reason(=|=~)"([^"]*)"')


def test_each_kernel_level_reason_belongs_to_exactly_one_alert() -> None:
    """Every reason of dkms_kernel_problem docs/readiness.md lists (not a fixed list: a new one
    must find its owner) is selected by exactly one alert, or is verdict-only: then
    DkmsNextBootVerdictNotReady, which excludes only what another alert explains, pages for it."""
    reasons = KERNEL_LEVEL_REASONS
    assert {"headers_missing", "initramfs_missing", "loaded_module_missing"} <= reasons
    matchers: dict[str, set[str]] = {}
    for alert in all_alerts():
        if alert["alert"] == "DkmsNextBootVerdictNotReady":
            continue
        for op, regex in _KERNEL_REASON_MATCHER.findall(alert["expr"]):
            matchers.setdefault(alert["alert"], set()).add(regex)
    for reason in sorted(reasons):
        owners = {name for name, regexes in matchers.items() if any(re.fullmatch(r, reason) for r in regexes)}
        expected = 0 if reason in VERDICT_ONLY_REASONS else 1
        assert len(owners) == expected, f"{reason}: {sorted(owners)}"
    assert {n for n in matchers if any(re.fullmatch(r, "loaded_module_missing") for r in matchers[n])} == \
        {"DkmsNextBootLoadedModuleMissing"}
    assert set(LOADED_MODULE_REASONS) == {"loaded_module_missing"}


def test_alerts_read_only_the_gate_records_recorded_above_them() -> None:
    """The boot-target records are the first rules of the reboot-gate group, so every gate alert
    reads this evaluation's join (Prometheus runs one group's rules in order, at one timestamp);
    no alert reads the fleet records of dkms-rules.yaml (the alerts file stands alone)."""
    groups = yaml.safe_load((REPO / generate.ALERTS_FILE).read_text())["groups"]
    gate = next(g for g in groups if g["name"] == "dkms-exporter.reboot-gate")
    for g in groups:     # a group's records come first: its alerts read this evaluation's
        kinds = ["record" if "record" in r else "alert" for r in g["rules"]]
        assert kinds == sorted(kinds, key=["record", "alert"].index), f"{g['name']}: the records must come first"
    # besides the gate's, only the exporter group records: the one series its runbook links read
    assert {r["record"] for g in groups if g is not gate for r in g["rules"] if "record" in r} == {ANY_EXPORTER_RECORD}
    assert not any(ANY_EXPORTER_RECORD in metric_names(a["expr"]) for a in all_alerts())
    recorded: set[str] = set()
    for rule in gate["rules"]:
        assert metric_names(rule["expr"]) & gate_records() <= recorded, rule.get("record") or rule["alert"]
        if "record" in rule:
            recorded.add(rule["record"])
    fleet = {r["record"] for r in generate.record_rules()}
    assert not any(metric_names(a["expr"]) & fleet for a in all_alerts()), "alerts must not read the fleet records"
    assert all(name.startswith(GATE_RECORD_PREFIX) and name.count(":") == 2 for name in gate_records())


def test_the_boot_target_join_is_computed_once() -> None:
    """What made 10,000 hosts take minutes (docs/performance.md, "Fleet scale"): the join of
    problems with dkms_kernel_info{boot_target="true"} in every rule.  Only the records do it;
    every other rule and every dashboard query reads them."""
    board = json.loads((REPO / generate.DASHBOARD).read_text())
    panel_exprs = [t["expr"] for p in _panels(board["panels"]) for t in p.get("targets", [])]
    exprs = [r["expr"] for r in all_alerts() + generate.record_rules()] + panel_exprs
    assert not [e for e in exprs if 'boot_target="true"' in e]
    joins = [r["record"] for r in generate.gate_records() if 'boot_target="true"' in r["expr"]]
    assert joins == ["dkms:module_problem:boot_target", "dkms:kernel_problem:boot_target"]
    assert sum("dkms:module_problem:boot_target" in e for e in exprs) >= 8


def _panels(panels: list[dict]) -> list[dict]:
    return [q for p in panels for q in [p, *_panels(p.get("panels", []))]]


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_runbook_anchors_exist() -> None:
    text = RUNBOOKS.read_text()
    headings = re.findall(r"^#{2,4} (.+)$", text, re.MULTILINE)
    anchors = {_slug(h) for h in headings}
    names = {a["alert"] for a in all_alerts()}
    for name in names:
        assert name.lower() in anchors, f"docs/runbooks.md has no section for {name}"
    sections = set(re.findall(r"^## (\S+)$", text, re.MULTILINE))
    assert sections == names, "docs/runbooks.md has sections for alerts that do not exist"
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in anchors, f"docs/runbooks.md links to missing #{link}"
    for reason in (set(REASONS) | PLANNED_MODULE_REASONS):
        assert reason in text, f"docs/runbooks.md does not explain reason {reason}"


def test_rules_use_documented_metrics_only() -> None:
    recorded = records()
    allowed = allowed_metric_names()
    exprs = [a["expr"] for a in all_alerts()] + [r["expr"] for r in generate.record_rules()]
    exprs += [r["expr"] for r in generate.gate_records()]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used - allowed == set(), "metric names neither in docs/metrics.md nor pending"
    assert not (used & recorded - gate_records()), "alerts must not depend on the fleet recording rules"
    assert "dkms_module_problem" in used and "dkms_kernel_info" in used


# --- deploy files mirror alerts/ -----------------------------------------------------------

def test_prometheus_rule_carries_the_same_groups() -> None:
    operator_rule = yaml.safe_load((REPO / generate.PROMETHEUS_RULE).read_text())
    assert operator_rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator_rule["kind"] == "PrometheusRule"
    alerts = yaml.safe_load((REPO / generate.ALERTS_FILE).read_text())["groups"]
    records = yaml.safe_load((REPO / generate.RULES_FILE).read_text())["groups"]
    assert operator_rule["spec"]["groups"] == alerts + records


def test_alertmanager_example(tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    path = REPO / generate.ALERTMANAGER_EXAMPLE
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    names = {a["alert"] for a in all_alerts()}
    gate = {a["alert"] for a in gate_alerts()}
    (rule,) = config["inhibit_rules"]
    source = re.fullmatch(r'alertname=~"(.*)"', rule["source_matchers"][0]).group(1)
    target = re.fullmatch(r'alertname=~"(.*)"', rule["target_matchers"][0]).group(1)
    assert {n for n in names if re.fullmatch(source, n)} == gate
    targets = {n for n in names if re.fullmatch(target, n)}
    assert targets == {"DkmsModuleBuildFailed", "DkmsKernelHeadersMissing"}
    assert "kernel" in rule["equal"]


def test_prometheus_example_config() -> None:
    promtool = require_tool("promtool")
    path = REPO / generate.PROMETHEUS_EXAMPLE
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = [job["job_name"] for job in yaml.safe_load(path.read_text())["scrape_configs"]]
    assert f'job="{jobs[0]}"' in all_alerts()[0]["expr"], "the example's job must be what the rules select"


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    provider = yaml.safe_load((REPO / generate.GRAFANA_DASHBOARDS).read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    datasource = yaml.safe_load((REPO / generate.GRAFANA_DATASOURCE).read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"


# --- the kured sentinel -------------------------------------------------------------------

@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sentinel-hosts")
    built = {}
    for name, build in EXAMPLES.items():
        build(base / name)
        built[name] = base / name
    return built


def _exporter_binary() -> str:
    path = Path(sys.executable).with_name("dkms-exporter")
    if not path.exists():
        pytest.fail(f"{path} is missing: install the project into this venv (pip install -e .)")
    return str(path)


def _sentinel(root: Path, *args: str, exporter: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DKMS_EXPORTER": exporter or _exporter_binary(), "DKMS_EXPORTER_ROOTFS": str(root)}
    return subprocess.run(["/bin/sh", str(SENTINEL), *args], capture_output=True, text=True, env=env, timeout=60)


def _check(root: Path) -> int:
    return subprocess.run([_exporter_binary(), "--path.rootfs", str(root), "check"], capture_output=True,
                          timeout=60).returncode


def _with_reboot_flag(root: Path, dest: Path, flagged: bool) -> Path:
    shutil.copytree(root, dest, symlinks=True)
    flag = dest / "run" / "reboot-required"
    if flagged:
        flag.write_text("*** System restart required ***\n")
    else:
        flag.unlink(missing_ok=True)
    return dest


def test_sentinel_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run([shellcheck, "-s", "sh", str(SENTINEL)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_sentinel_reboots_only_when_required_and_ready(hosts: dict[str, Path], tmp_path: Path) -> None:
    """For every example host, with and without a pending reboot: exit 0 exactly when a
    reboot is required and `dkms-exporter check` exits 0."""
    assert _check(hosts["healthy"]) == 0 and _check(hosts["reboot-trap"]) == 1
    for name, root in hosts.items():
        verdict = _check(root)
        for flagged in (False, True):
            tree = _with_reboot_flag(root, tmp_path / f"{name}-{flagged}", flagged)
            result = _sentinel(tree)
            expected = 1 if not flagged else {0: 0, 1: 2, 2: 3}[verdict]
            assert result.returncode == expected, (name, flagged, result.stdout, result.stderr)


def test_sentinel_explains_a_held_reboot(hosts: dict[str, Path]) -> None:
    result = _sentinel(hosts["reboot-trap"])
    assert result.returncode == 2
    assert "NOT READY" in result.stdout
    assert "acpi_call" in result.stdout and "not_built" in result.stdout
    assert "apt-get install linux-headers-6.1.0-28-amd64" in result.stdout


def test_sentinel_fails_closed(hosts: dict[str, Path], tmp_path: Path) -> None:
    trapped_ready = _with_reboot_flag(hosts["healthy"], tmp_path / "ready", True)
    assert _sentinel(trapped_ready).returncode == 0
    # arguments reach `check`: without the dkms collector readiness is unknown
    unknown = _sentinel(trapped_ready, "--no-collector.dkms")
    assert unknown.returncode == 3 and "unknown" in unknown.stdout
    missing = _sentinel(trapped_ready, exporter=str(tmp_path / "no-such-dkms-exporter"))
    assert missing.returncode == 3 and "not installed" in missing.stderr
    broken = tmp_path / "broken-exporter"
    broken.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nexit 70\n")
    broken.chmod(0o755)
    crashed = _sentinel(trapped_ready, exporter=str(broken))
    assert crashed.returncode == 3 and "exit 70" in crashed.stdout and "boom" in crashed.stdout
