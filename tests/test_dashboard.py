"""The Grafana dashboard: committed JSON equals the generator's, stable identity, variables,
every query scoped by the job (and host) variables, layout sane, metric names documented.
Every query is also run against a live Prometheus in tests/test_live_alerting.py."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from test_alerts import allowed_metric_names, metric_names  # noqa: E402

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
