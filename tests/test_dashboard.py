"""The Grafana dashboard: committed JSON equals the generator's, stable identity, variables,
every query scoped by the job (and host) variables, layout sane, metric names documented.
Every query is also run against a live Prometheus in tests/test_live_alerting.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from test_alerts import allowed_metric_names, metric_names  # noqa: E402
from testkit import require_tool  # noqa: E402

from alerts import generate  # noqa: E402

COMMITTED = REPO / generate.DASHBOARD
UID = "dkms-exporter"
SELECTOR = 'job="dkms-exporter"'  # the mixin's default _config.dkmsSelector
JOB = 'job=~"$job"'
INSTANCE = 'instance=~"$instance"'


def panels(board: dict) -> list[dict]:
    """Every panel that queries (rows excluded)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def sections(board: dict) -> dict[str, list[dict]]:
    """Row title -> the panels under it."""
    out: dict[str, list[dict]] = {}
    current = ""
    for p in board["panels"]:
        if p["type"] == "row":
            current = p["title"]
            out[current] = []
        else:
            out.setdefault(current, []).append(p)
    return out


def targets(board: dict) -> list[tuple[dict, dict]]:
    return [(p, t) for p in panels(board) for t in p["targets"]]


def selectors(expr: str, name: str) -> list[str]:
    """The label matchers of each occurrence of metric `name` ('' when it has none)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: m.group().replace("{", "(").replace("}", ")"), expr)
    found = []
    for m in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])\s*(\{{[^}}]*\}})?", bare):
        found.append(expr[m.start(1):m.end(1)] if m.group(1) else "")
    return found


def recorded() -> set[str]:
    return {r["record"] for r in generate.record_rules()}


def test_committed_json_is_what_the_mixin_renders() -> None:
    """Byte for byte, as the real jsonnet writes it (tests/test_mixin.py checks every file)."""
    assert COMMITTED.read_text() == generate.render_mixin()[generate.DASHBOARD]


def test_identity_and_variables() -> None:
    board = json.loads(COMMITTED.read_text())
    assert board["uid"] == UID == "dkms-exporter"
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert SELECTOR in variables["job"]["query"]["query"], "the job list follows _config.dkmsSelector"
    assert JOB in variables["instance"]["query"]["query"]
    assert board["links"][0]["url"] == "http://${instance}/runbooks"


def test_every_panel_uses_the_datasource_variable() -> None:
    board = json.loads(COMMITTED.read_text())
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what the panel shows"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == panel["datasource"]


def test_every_query_is_scoped_by_job_and_host_panels_by_instance() -> None:
    board = json.loads(COMMITTED.read_text())
    host_row = next(title for title in sections(board) if "$instance" in title)
    host_panels = {id(p) for p in sections(board)[host_row]}
    for panel, t in targets(board):
        expr = t["expr"]
        per_host = id(panel) in host_panels or "$instance" in panel["title"]
        names = metric_names(expr)
        assert names, f"{panel['title']}: no metric in {expr!r}"
        for name in names:
            for matchers in selectors(expr, name):
                assert JOB in matchers, f"{panel['title']}: {name} without {JOB}"
                if per_host:
                    assert INSTANCE in matchers, f"{panel['title']}: {name} without {INSTANCE}"


def test_metric_names_are_documented_or_recorded() -> None:
    board = json.loads(COMMITTED.read_text())
    allowed = allowed_metric_names(recorded())
    used = set().union(*(metric_names(t["expr"]) for _, t in targets(board)))
    variables = [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    for query in variables:
        used |= metric_names(re.fullmatch(r"label_values\((.*), *\w+\)", query).group(1))
    assert used - allowed == set()
    assert recorded() - used == set(), "a recording rule no panel reads"


def test_fleet_panels_read_recording_rules_and_tables_show_their_columns() -> None:
    board = json.loads(COMMITTED.read_text())
    fleet_row = next(title for title in sections(board) if title.startswith("Fleet"))
    for panel in sections(board)[fleet_row]:
        if panel["type"] in ("stat", "bargauge") and "up{" not in panel["targets"][0]["expr"]:
            assert metric_names(panel["targets"][0]["expr"]) <= recorded(), panel["title"]
    for panel in panels(board):
        if panel["type"] != "table":
            continue
        assert all(t["format"] == "table" and t["instant"] for t in panel["targets"]), panel["title"]
        kinds = [x["id"] for x in panel["transformations"]]
        if len(panel["targets"]) > 1:
            assert kinds[0] == "merge", panel["title"]
        assert kinds[-1] in ("organize", "groupingToMatrix"), panel["title"]


def test_layout_fits_the_grid_without_overlap() -> None:
    board = json.loads(COMMITTED.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not (mine & cells), f"{p['title']} overlaps another panel"
        cells |= mine


def test_selector_helper() -> None:
    expr = 'sum(a{job=~"$job"}) or a or b{x="{y}"} + ab{job=~"$job"}'
    assert selectors(expr, "a") == ['{job=~"$job"}', ""]
    assert selectors(expr, "b") == ['{x="{y}"}']


# --- what an operator reads at a glance -----------------------------------------------------

def annotations(board: dict) -> list[dict]:
    return board["annotations"]["list"]


def grafana_to_promql(expr: str) -> str:
    """A panel query as Prometheus receives it: Grafana's variables filled in."""
    return (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            .replace("$job", ".+").replace("$instance", ".+"))


def test_every_panel_and_annotation_query_parses_in_promtool(tmp_path: Path) -> None:
    """The real promtool parses every query (as a recording rule); tests/test_live_alerting.py
    also runs them against a live Prometheus."""
    promtool = require_tool("promtool")
    board = json.loads(COMMITTED.read_text())
    exprs = [t["expr"] for _, t in targets(board)] + [a["expr"] for a in annotations(board)]
    rules = [{"record": f"dashboard:query_{i}", "expr": grafana_to_promql(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def _links(panel: dict) -> dict[str, list[dict]]:
    """Column -> its data links (from the field overrides)."""
    out: dict[str, list[dict]] = {}
    for o in panel["fieldConfig"]["overrides"]:
        for prop in o["properties"]:
            if prop["id"] == "links":
                out[o["matcher"]["options"]] = prop["value"]
    return out


def test_fleet_view_says_how_many_hosts_would_break_which_and_why() -> None:
    board = json.loads(COMMITTED.read_text())
    fleet = sections(board)[next(title for title in sections(board) if title.startswith("Fleet"))]
    (count,) = [p for p in fleet if p["title"] == "Would break if rebooted now"]
    assert count["type"] == "stat"
    assert "job:dkms_hosts_not_ready:count" in count["targets"][0]["expr"]
    (table,) = [p for p in fleet if p["title"].startswith("Would break if rebooted now:")]
    organize = table["transformations"][-1]["options"]
    assert {"instance", "kernel", "module", "reason"} <= set(organize["includeByName"])
    links = _links(table)
    assert [link["url"] for link in links["instance"]] == ["http://${__value.raw}/"], "host row -> its report"
    assert [link["url"] for link in links["reason"]] == \
        ["http://${__data.fields.instance}/runbooks#reason-${__value.raw}"]
    (alerts,) = [p for p in fleet if p["title"] == "Firing DKMS alerts"]
    assert [link["url"] for link in _links(alerts)["instance"]] == ["http://${__value.raw}/"]


def test_reboot_and_kernel_install_events_are_annotations_of_the_host() -> None:
    """From served metrics only (docs/metrics.md has no boot time): a changed running kernel or a
    cleared pending reboot; a new kernel; a changed initramfs mtime."""
    board = json.loads(COMMITTED.read_text())
    by_name = {a["name"]: a for a in annotations(board)}
    assert set(by_name) == {"Reboots", "Kernel installs", "Initramfs rebuilds"}
    assert "dkms_running_kernel_info" in by_name["Reboots"]["expr"]
    assert "dkms_reboot_required" in by_name["Reboots"]["expr"]
    assert "dkms_kernel_info" in by_name["Kernel installs"]["expr"]
    assert "dkms_kernel_initramfs_modified_timestamp_seconds" in by_name["Initramfs rebuilds"]["expr"]
    allowed = allowed_metric_names()
    for a in by_name.values():
        assert a["enable"] and a["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert metric_names(a["expr"]) <= allowed, a["name"]
        for name in metric_names(a["expr"]):
            for matchers in selectors(a["expr"], name):
                assert JOB in matchers and INSTANCE in matchers, f"{a['name']}: {name} not scoped to the host"
        assert set(a["tagKeys"].split(",")) <= {"instance", "kernel"}
