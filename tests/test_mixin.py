"""The monitoring mixin (alerts/dkms-exporter-mixin/) under the real jsonnet (Debian's package):
the committed files are exactly what it renders, its own YAML/JSON writers say what jsonnet's
values say, and a kube-prometheus-style override (`_config+::`) imported through a
jsonnet-bundler vendor/ directory renders rules the real promtool accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit import require_tool  # noqa: E402

from alerts import generate  # noqa: E402

MIXIN = REPO / generate.MIXIN


def jsonnet(*args: str, code: str | None = None, cwd: Path = REPO) -> str:
    cmd = [require_tool("jsonnet"), *args] + (["-e", code] if code is not None else [])
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_committed_files_are_what_jsonnet_renders_byte_for_byte() -> None:
    rendered = generate.render_mixin()
    assert set(rendered) == set(generate.MIXIN_FILES)
    for rel, content in rendered.items():
        assert (REPO / rel).read_text() == content, f"{rel} drifted: run python alerts/generate.py"


def test_the_writers_say_what_the_mixin_values_are() -> None:
    """lib/yaml.libsonnet and lib/json.libsonnet are the project's own (jsonnet 0.18's std ones
    are too slow): PyYAML and json read each committed file back as the value jsonnet had."""
    values = json.loads(jsonnet("-J", str(MIXIN), code="""
        local m = import 'mixin.libsonnet';
        { alerts: m.prometheusAlerts, rules: m.prometheusRules, dashboards: m.grafanaDashboards }"""))
    assert yaml.safe_load((REPO / generate.ALERTS_FILE).read_text()) == values["alerts"]
    assert yaml.safe_load((REPO / generate.RULES_FILE).read_text()) == values["rules"]
    operator = yaml.safe_load((REPO / generate.PROMETHEUS_RULE).read_text())
    assert operator["spec"]["groups"] == values["alerts"]["groups"] + values["rules"]["groups"]
    board = values["dashboards"]["dkms-exporter.json"]
    assert json.loads((REPO / generate.DASHBOARD).read_text()) == board
    configmap = yaml.safe_load((REPO / generate.DASHBOARDS_CONFIGMAP).read_text())
    assert configmap["data"]["dkms-exporter.json"] == (REPO / generate.DASHBOARD).read_text()


def test_the_yaml_writer_quotes_what_yaml_would_misread() -> None:
    tricky = {"bools": ["on", "No", "TRUE", "null", "~"], "numbers": ["30m", "1e3", "0x1f", "012", "1_000", ".5"],
              "text": ["a: b", "#x", "- y", "{{ $labels.instance }}", "it's", 'say "hi"', "", " lead", "tab\tx"],
              "blocks": ["a\n  b\nc", "x\n", "trail \nz", " indented\nfirst", "two\n\n"], "on": 1, "2": None}
    text = jsonnet("-S", "-J", str(MIXIN), code=f"(import 'lib/yaml.libsonnet').manifest({json.dumps(tricky)})")
    assert yaml.safe_load(text) == tricky


def test_a_kube_prometheus_override_renders_rules_promtool_accepts(tmp_path: Path) -> None:
    """What docs/monitoring-mixin.md tells jsonnet users: import through jb's vendor/ directory,
    override _config, take prometheusAlerts/prometheusRules/grafanaDashboards."""
    promtool = require_tool("promtool")
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "dkms-exporter-mixin").symlink_to(MIXIN)  # what `jb install` leaves (legacy name)
    (tmp_path / "dkms.jsonnet").write_text("""
local dkms = (import 'dkms-exporter-mixin/mixin.libsonnet') + {
  _config+:: {
    dkmsSelector: 'job="node"',
    runbookUrlBase: 'https://runbooks.internal/dkms-exporter',
    severities+: { critical: 'page' },
    readinessFor: '45m',
  },
};
{
  'dkms-rules.json': { groups: dkms.prometheusAlerts.groups + dkms.prometheusRules.groups },
  'dkms-dashboard.json': dkms.grafanaDashboards['dkms-exporter.json'],
}
""")
    out = tmp_path / "out"
    out.mkdir()
    jsonnet("-J", "vendor", "-m", str(out), "dkms.jsonnet", cwd=tmp_path)
    rules_file = out / "dkms-rules.json"  # JSON is YAML: promtool reads it as rules
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    groups = json.loads(rules_file.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    exprs = " ".join(r["expr"] for r in rules)
    assert 'job="node"' in exprs and 'job="dkms-exporter"' not in exprs
    alerts = [r for r in rules if "alert" in r]
    assert all(r["annotations"]["runbook_url"] == f"https://runbooks.internal/dkms-exporter#{r['alert'].lower()}"
               for r in alerts)
    severities = {r["labels"]["severity"] for r in alerts}
    assert "page" in severities and "critical" not in severities
    assert 'severity="page"' in exprs, "the lower variant yields to the renamed severity"
    gate = [r for r in alerts if r["alert"] == "DkmsNextBootKernelNotReady"]
    assert {r["for"] for r in gate} == {"45m"}
    board = json.loads((out / "dkms-dashboard.json").read_text())
    jobs = next(v for v in board["templating"]["list"] if v["name"] == "job")
    assert 'job="node"' in jobs["query"]["query"]
    assert board["links"][0]["url"] == "https://runbooks.internal/dkms-exporter"


def test_jsonnetfile_needs_nothing_fetched() -> None:
    """jb installs the mixin alone: it vendors no library (no grafonnet: docs/monitoring-mixin.md)."""
    spec = json.loads((MIXIN / "jsonnetfile.json").read_text())
    assert spec["version"] == 1 and spec["dependencies"] == []
