"""benchmarks/fleet.py at 20 hosts, so the fleet benchmark cannot rot (the figures come from a
full run: docs/performance.md, "Fleet scale").

Real engines: promtool builds the TSDB blocks, Debian's Prometheus evaluates the rendered rule
files on them, Debian's VictoriaMetrics imports the same samples and its vmalert evaluates the
same files. The benchmark itself fails when an engine rejects a rule file or a dashboard query,
or when the two engines' result sets differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from testkit import require_tool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fleet  # noqa: E402


@pytest.mark.slow
def test_fleet_benchmark_runs_at_twenty_hosts(tmp_path, capsys):
    for tool in ("promtool", "prometheus", "victoria-metrics", "vmalert"):
        require_tool(tool)
    out = tmp_path / "fleet.json"
    code = fleet.main(["--hosts", "20", "--window", "900", "--eval-interval", "5", "--evaluations", "2",
                       "--repeat", "1", "--json", str(out), "--work", str(tmp_path / "work")])
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    (result,) = json.loads(out.read_text())
    assert result["hosts"] == 20 and result["differences"] == []
    groups = {g["name"] for f in fleet.RULE_FILES for g in fleet.yaml.safe_load(f.read_text())["groups"]}
    for engine in ("prometheus", "victoria-metrics"):
        assert len(result[engine]["groups"]) == len(groups), (engine, result[engine]["groups"])
        queries, selectors, _ = fleet.dashboard_queries()
        assert len(result[engine]["queries"]) == len(queries) + len(selectors)
    # the comparison is not of empty sets: most expressions find series in this fleet
    assert result["compared_nonempty"] >= result["compared"] // 2, result


def test_engines_compare_answers_not_storage_formats():
    """The pair CI once saw (`time() - timestamp`, VictoriaMetrics' value a few ulps of the Unix
    time off) is the same answer; a difference a dashboard would show is not."""
    key = (("instance", "h:9101"),)
    prometheus, victoria = {key: 385.33292150497437}, {key: 385.3329200744629}
    assert fleet.differing(prometheus, victoria) == ([], [])
    assert fleet.differing(prometheus, {key: 385.3339}) != ([], [])
    assert fleet.differing({key: 1.0}, {key: 1.0 + 1e-8}) == ([], [])
    assert fleet.differing({key: 1e12}, {key: 1e12 + 1e4}) != ([], [])
    assert fleet.differing({key: float("nan")}, {key: float("nan")}) == ([], [])
    assert fleet.differing({key: 1.0}, {}) == ([(key, 1.0)], [])
