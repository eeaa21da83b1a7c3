#!/usr/bin/env python3
"""The rules and the dashboard at fleet scale, in a real Prometheus and a real VictoriaMetrics.

    .venv/bin/python benchmarks/fleet.py                       # 1,000 and 10,000 hosts
    .venv/bin/python benchmarks/fleet.py --hosts 20 --window 900 --engines prometheus,victoria-metrics

For each fleet size:

1. The exporter's real output on every example host (examples/hosts/*) is the template of a
   host state; simulated hosts draw a state from a fixed mix (mostly healthy, some reboot traps,
   RPM hosts, a few with every problem, ~1% down with only ``up 0``), each its own ``instance``.
2. Samples every ``--interval`` seconds from ``--window`` seconds ago to ``--ahead`` seconds in
   the future (so "now" stays inside the data while blocks are built and engines start), are
   written as OpenMetrics with timestamps and turned into TSDB blocks by
   ``promtool tsdb create-blocks-from openmetrics``; Debian's Prometheus starts on those blocks
   with the project's rendered rule files (alerts/*.yaml).
3. The same samples, as Prometheus text with millisecond timestamps, go to Debian's
   victoria-metrics through /api/v1/import/prometheus; Debian's vmalert runs the same rule files
   against it, unchanged.  Prometheus is stopped (SIGSTOP) meanwhile, so that its rule
   evaluations do not take CPU from VictoriaMetrics' figures, and continued for the comparison.
4. Measured: every rule group's evaluation time (Prometheus: /api/v1/rules ``evaluationTime``;
   vmalert: its ``vmalert_iteration_duration_seconds`` summary), and every dashboard query's
   latency (dashboards/*.json; ``$job`` and ``$instance`` substituted as Grafana's first value;
   instant targets as instant queries, time-series targets as range queries over the
   dashboard's default range with the step Grafana picks for it; the template variables'
   ``label_values`` as series/label look-ups).  Every rule expression and every instant
   dashboard query is also run on both engines at the same timestamp and the result sets
   (label sets and values) compared.

Nothing here is a unit test: tests/test_fleet_bench.py runs it at 20 hosts so it cannot rot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "hosts"
RULE_FILES = sorted((REPO / "alerts").glob("*.yaml"))
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
JOB = "dkms-exporter"

# The fleet's mix of host states (example host name -> weight); "down" is a target whose scrape
# fails: Prometheus then stores only up 0 for it.
MIX = {"healthy": 50, "rhel9-healthy": 12, "fedora-healthy": 8, "reboot-trap": 12, "rhel9-trap": 6,
       "fedora-trap": 5, "many-problems": 6, "down": 1}

Series = tuple[str, str, float]          # name, rendered extra labels ('a="b",c="d"' or ''), value


# ------------------------------------------------------------------------------------------------
# the fleet's data


def host_templates() -> dict[str, list[Series]]:
    """The exporter's own output on each committed example host, parsed into series."""
    out: dict[str, list[Series]] = {}
    for root in sorted(EXAMPLES.iterdir()):
        text = subprocess.run([sys.executable, "-m", "exporter", "metrics", "--path.rootfs", str(root)],
                              cwd=REPO, capture_output=True, text=True, check=True, timeout=120).stdout
        series: list[Series] = [("up", "", 1.0)]
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
                series.append((s.name, labels, s.value))
        out[root.name] = series
    out["down"] = [("up", "", 0.0)]
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def assign_states(hosts: int, seed: int = 17) -> list[str]:
    """Host i's state, drawn from MIX; host 0 is healthy (it is the dashboard's $instance)."""
    rng = random.Random(seed)
    names, weights = zip(*MIX.items())
    states = rng.choices(names, weights, k=hosts)
    states[0] = "healthy"
    return states


def instance(i: int) -> str:
    return f"host-{i:05d}:9101"


def write_samples(path: Path, templates: dict[str, list[Series]], states: list[str], stamps: list[str],
                  openmetrics: bool) -> int:
    """Every series of every host with one sample per stamp, grouped by metric family (as
    OpenMetrics requires), each series' samples in time order. Returns the sample count."""
    by_name: dict[str, list[tuple[int, str, float]]] = {}
    for i, state in enumerate(states):
        for name, labels, value in templates[state]:
            by_name.setdefault(name, []).append((i, labels, value))
    total = 0
    with path.open("w", buffering=1 << 22) as out:
        for name, rows in by_name.items():
            for i, labels, value in rows:
                extra = f'{labels},' if labels else ""
                prefix = f'{name}{{{extra}instance="{instance(i)}",job="{JOB}"}} {_number(value)} '
                out.write(prefix + ("\n" + prefix).join(stamps) + "\n")
                total += len(stamps)
        if openmetrics:
            out.write("# EOF\n")
    return total


def _number(v: float) -> str:
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


# ------------------------------------------------------------------------------------------------
# engines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 300, attempts: int = 3) -> dict:
    """The JSON an engine answers; a timeout or a refused connection (an engine busy evaluating
    on a loaded machine) is asked again, ``attempts`` times in all, each time waiting longer."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout * attempt) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:     # both engines answer a bad query with a JSON error
            body = e.read().decode(errors="replace")
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}: {body[:500]}"}
        except (OSError, ValueError) as e:      # URLError, socket timeout, a truncated body
            if attempt == attempts:
                raise RuntimeError(f"{url}: no answer after {attempts} attempts: {e}") from e
            time.sleep(5 * attempt)
    raise AssertionError("unreachable")


def get_text(url: str, timeout: float = 120, attempts: int = 5) -> str | None:
    """A text page (vmalert's /metrics), asked again on a timeout with a longer one; None when it
    never answered (the caller then keeps what it had)."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout * attempt) as r:
                return r.read().decode()
        except OSError as e:
            print(f"  {url}: attempt {attempt}/{attempts}: {e}", file=sys.stderr, flush=True)
            time.sleep(5 * attempt)
    return None


def wait_http(url: str, what: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Until url answers; fails at once when the process has exited (its log says why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: see its log in the work directory")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{what} did not come up at {url} within {timeout:.0f} s")


@dataclass
class Engine:
    """One running engine: where to query it, and the processes to stop."""

    name: str
    query_url: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)   # query parameters on every request
    vmalert_url: str = ""

    def query(self, path: str, **params: str) -> tuple[float, dict]:
        """(seconds, JSON body) of one GET on the engine's HTTP API."""
        url = f"{self.query_url}{path}?{urllib.parse.urlencode({**params, **self.extra})}"
        start = time.perf_counter()
        body = get_json(url)
        return time.perf_counter() - start, body

    def pause(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def start_prometheus(work: Path, openmetrics: Path, interval: int) -> tuple[Engine, float]:
    """promtool's blocks from the OpenMetrics file, then Prometheus on them with the rule files.
    Returns the engine and how long promtool took."""
    data = work / "prometheus-data"
    start = time.monotonic()
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)],
                   check=True, capture_output=True, text=True)
    blocks_s = time.monotonic() - start
    config = work / "prometheus.yml"
    work.mkdir(parents=True, exist_ok=True)
    # The blocks reach past now, so the head starts with its lowest valid time at their end: the
    # rules' own results (recorded series, ALERTS) at "now" would be refused as out of bounds
    # (and logged, one line per series, inflating the evaluation time) without an out-of-order
    # window that takes them.
    config.write_text(yaml.safe_dump({"global": {"evaluation_interval": f"{interval}s"},
                                      "storage": {"tsdb": {"out_of_order_time_window": "1d"}},
                                      "rule_files": [str(f) for f in RULE_FILES]}))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                             "--storage.tsdb.retention.time=30d", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    engine = Engine("prometheus", f"http://127.0.0.1:{port}", [proc])
    try:
        wait_http(f"{engine.query_url}/-/ready", "prometheus", proc)
    except BaseException:
        engine.stop()
        raise
    return engine, blocks_s


def start_victoria_metrics(work: Path, text: Path, interval: int) -> tuple[Engine, float]:
    """victoria-metrics with the Prometheus-text samples imported, and vmalert on the rule files.
    Returns the engine and how long the import (to searchable data) took."""
    work.mkdir(parents=True, exist_ok=True)
    vm_port = free_port()
    log = (work / "victoria-metrics.log").open("w")
    vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={work / 'vm-data'}", "-retentionPeriod=1y",
                           f"-httpListenAddr=127.0.0.1:{vm_port}", "-search.latencyOffset=0s"],
                          stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{vm_port}"
    engine = Engine("victoria-metrics", url, [vm], {"nocache": "1"})
    try:
        wait_http(f"{url}/health", "victoria-metrics", vm)
        import_s = _import(url, text)
        engine.procs.append(_vmalert(work, url, interval, engine))
    except BaseException:
        engine.stop()
        raise
    return engine, import_s


def _import(url: str, text: Path) -> float:
    """POSTs the text in pieces and flushes it to searchable parts; returns the seconds taken."""
    start = time.monotonic()
    for chunk in _chunks(text):
        req = urllib.request.Request(f"{url}/api/v1/import/prometheus", data=chunk, method="POST")
        urllib.request.urlopen(req, timeout=600).read()
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=600).read()
    return time.monotonic() - start


def _vmalert(work: Path, url: str, interval: int, engine: Engine) -> subprocess.Popen:
    """vmalert on the project's rule files, reading and writing the VictoriaMetrics at url."""
    alert_port = free_port()
    alert_log = (work / "vmalert.log").open("w")
    vmalert = subprocess.Popen(["vmalert", *(f"-rule={f}" for f in RULE_FILES), f"-datasource.url={url}",
                                f"-remoteWrite.url={url}", f"-evaluationInterval={interval}s",
                                # no Alertmanager here: the alerts only go pending within the run
                                f"-notifier.url=http://127.0.0.1:{free_port()}",
                                f"-httpListenAddr=127.0.0.1:{alert_port}"],
                               stdout=alert_log, stderr=subprocess.STDOUT)
    engine.vmalert_url = f"http://127.0.0.1:{alert_port}"
    try:
        wait_http(f"{engine.vmalert_url}/health", "vmalert", vmalert, timeout=60)
    except BaseException:
        vmalert.kill()
        raise
    return vmalert


def _chunks(path: Path, size: int = 32 << 20) -> Iterator[bytes]:
    """The file in pieces of about ``size`` bytes, cut at line ends."""
    with path.open("rb") as fh:
        rest = b""
        while block := fh.read(size):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            yield block[:cut]
        if rest:
            yield rest


# ------------------------------------------------------------------------------------------------
# what is measured


@dataclass
class Rule:
    group: str
    name: str
    expr: str


def rules() -> list[Rule]:
    out = []
    for f in RULE_FILES:
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                out.append(Rule(g["name"], r.get("record") or r.get("alert"), r["expr"]))
    return out


@dataclass
class Query:
    panel: str
    expr: str
    instant: bool


def dashboard_queries() -> tuple[list[Query], list[str], int]:
    """Every target of every panel (template variables substituted), the variables' label_values
    selectors, and the dashboard's default range in seconds."""
    queries: list[Query] = []
    selectors: list[str] = []
    seconds = 0
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        seconds = max(seconds, _grafana_range(board["time"]["from"]))
        for var in board.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if isinstance(q, str) and (m := re.match(r"label_values\((.*),\s*(\w+)\)$", q)):
                selectors.append(_substitute(m.group(1)) + "|" + m.group(2))

        def walk(panels: list[dict]) -> None:
            for p in panels:
                for t in p.get("targets", []):
                    if t.get("expr"):
                        queries.append(Query(_substitute(p.get("title", "?")), _substitute(t["expr"]),
                                             bool(t.get("instant")) or p.get("type") in ("stat", "table", "bargauge")))
                walk(p.get("panels", []))
        walk(board["panels"])
    return queries, selectors, seconds


def _grafana_range(expr: str) -> int:
    m = re.fullmatch(r"now-(\d+)([smhdw])", expr)
    if not m:
        raise ValueError(f"dashboard range {expr!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def _substitute(expr: str) -> str:
    """Grafana's substitution with the variables' first values: this job, the first host."""
    # both values hold no regex metacharacters, so Grafana's escaping leaves them as they are
    return expr.replace("$job", JOB).replace("$instance", instance(0))


def grafana_step(range_s: int, points: int = 1000) -> int:
    """The step Grafana asks for: range / max data points, rounded up to a round interval."""
    raw = range_s / points
    for step in (15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 21600, 43200, 86400):
        if step >= raw:
            return step
    return 86400


def prometheus_group_times(engine: Engine, evaluations: int, deadline_s: float,
                           per_rule: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Each rule group's evaluationTime over up to ``evaluations`` distinct evaluations, asked
    for until ``deadline_s`` has passed; a group absent from the result finished none.  With
    ``per_rule``, each rule's own evaluationTime ("group/rule name") is gathered into it too, so
    a group's time can be told apart into its expressions and the overhead around them."""
    seen: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        _, body = engine.query("/api/v1/rules")
        for g in body["data"]["groups"]:
            if g.get("lastEvaluation", "").startswith("0001"):
                continue
            if per_rule is not None and g["lastEvaluation"] not in seen.get(g["name"], {}):
                for i, r in enumerate(g["rules"]):     # an alert name may repeat within a group
                    if not r.get("lastEvaluation", "").startswith("0001"):
                        per_rule.setdefault(f"{g['name']}/{i:02d} {r['name']}", []).append(r["evaluationTime"])
            seen.setdefault(g["name"], {})[g["lastEvaluation"]] = g["evaluationTime"]
        if seen and len(seen) == len(body["data"]["groups"]) and all(len(v) >= evaluations for v in seen.values()):
            break
        time.sleep(5)
    return {g: list(v.values()) for g, v in seen.items()}


def vmalert_group_times(engine: Engine, evaluations: int, deadline_s: float) -> dict[str, list[float]]:
    """Each group's mean iteration duration from vmalert's own summary (sum / count), once every
    group has ``evaluations`` iterations or ``deadline_s`` has passed (then what the groups that
    finished any have; vmalert's /metrics is asked again with longer timeouts when it is slow:
    at 10,000 hosts on a loaded machine it took over 30 s to answer)."""
    url = engine.vmalert_url + "/metrics"
    deadline = time.monotonic() + deadline_s
    times: dict[str, list[float]] = {}
    while time.monotonic() < deadline:
        text = get_text(url)
        if text is not None:
            sums = dict(re.findall(r'^vmalert_iteration_duration_seconds_sum\{group="([^"]+)"[^}]*\} (\S+)', text, re.M))
            counts = dict(re.findall(r'^vmalert_iteration_duration_seconds_count\{group="([^"]+)"[^}]*\} (\S+)',
                                     text, re.M))
            times = {g: [float(sums[g]) / float(c)] for g, c in counts.items() if float(c) > 0}
            if counts and all(float(c) >= evaluations for c in counts.values()):
                break
        time.sleep(5)
    return times


def timed(engine: Engine, path: str, repeat: int, **params: str) -> tuple[float, dict]:
    """Median latency of ``repeat`` runs of one query, and its last body."""
    runs = []
    body: dict = {}
    for _ in range(repeat):
        seconds, body = engine.query(path, **params)
        runs.append(seconds)
    return statistics.median(runs), body


def result_set(body: dict) -> dict[tuple, float]:
    """An instant query's result as {labels without __name__: value}."""
    data = body.get("data", {})
    if data.get("resultType") == "scalar":
        return {(): float(data["result"][1])}
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
            for r in data.get("result", [])}


TIME_ULPS = 64 * math.ulp(2.0 ** 31)   # 64 ulps of any Unix time until 2106: 3.1e-5 s


def differing(a: dict[tuple, float], b: dict[tuple, float]) -> tuple[list, list]:
    """What only one side has: label sets, or values that differ by more than a relative 1e-9
    or, absolutely, by more than 64 units in the last place of a current Unix time.
    VictoriaMetrics stores a float as a decimal and back, so a Unix time with fractions comes
    back a few ulps off; `time() - timestamp` keeps that absolute error (CI once saw 1.4e-6 on
    385 s, six ulps of the timestamp): exact or purely relative equality would compare
    storage formats, not answers."""
    def same(x: float, y: float) -> bool:
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=TIME_ULPS) or (math.isnan(x) and math.isnan(y))
    only_a = sorted((k, v) for k, v in a.items() if k not in b or not same(v, b[k]))
    only_b = sorted((k, v) for k, v in b.items() if k not in a or not same(v, a[k]))
    return only_a, only_b


# ------------------------------------------------------------------------------------------------
# one fleet size


def run_size(hosts: int, args: argparse.Namespace, templates: dict[str, list[Series]], work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    states = assign_states(hosts)
    start = int(time.time()) - args.window
    end = int(time.time()) + args.ahead
    times = list(range(start - start % args.interval, end, args.interval))
    result: dict = {"hosts": hosts, "series": sum(len(templates[s]) for s in states), "samples_per_series": len(times)}
    t0 = time.monotonic()
    engines: list[Engine] = []
    try:
        if "prometheus" in args.engines:
            om = work / f"fleet-{hosts}.om"
            result["samples"] = write_samples(om, templates, states, [str(t) for t in times], openmetrics=True)
            result["write_s"] = time.monotonic() - t0
            engine, result["prometheus_load_s"] = start_prometheus(work / f"p{hosts}", om, args.eval_interval)
            om.unlink()
            engines.append(engine)
            result[engine.name] = measure(engine, args)
            engine.pause()        # its rule evaluations would take CPU from the other engine's figures
        if "victoria-metrics" in args.engines:
            prom = work / f"fleet-{hosts}.prom"
            result["samples"] = write_samples(prom, templates, states, [f"{t}000" for t in times], openmetrics=False)
            engine, result["victoria-metrics_load_s"] = start_victoria_metrics(work / f"v{hosts}", prom,
                                                                               args.eval_interval)
            prom.unlink()
            engines.append(engine)
            result[engine.name] = measure(engine, args)
        for engine in engines:
            engine.resume()
        if len(engines) == 2:
            # Both must have recorded the rules again since the pause, chains included: the fleet
            # group reads records the reboot-gate group writes, so it needs one of its own
            # evaluations after one of reboot-gate's *finished* (at 10,000 hosts on 2 cores that
            # took 14.5 s of a 15 s interval; two intervals were not enough, and the fleet panels
            # compared empty on Prometheus against full on VictoriaMetrics).
            slowest = max((t for e in engines for t in result[e.name]["groups"].values()), default=0.0)
            time.sleep(3 * args.eval_interval + 2 * slowest + 5)
        result["differences"], result["compared"], result["compared_nonempty"] = (
            compare(engines) if len(engines) == 2 else (None, 0, 0))
    finally:
        for engine in engines:
            engine.stop()
    return result


def measure(engine: Engine, args: argparse.Namespace) -> dict:
    now = str(int(time.time()))
    deadline = args.deadline or args.eval_interval * (args.evaluations + 3) + 120
    per_rule: dict[str, list[float]] = {}
    if engine.name == "prometheus":
        groups = prometheus_group_times(engine, args.evaluations, deadline, per_rule)
    else:
        groups = vmalert_group_times(engine, args.evaluations, deadline)
    queries, selectors, range_s = dashboard_queries()
    step = grafana_step(range_s)
    latencies = []
    for q in queries:
        if q.instant:
            s, body = timed(engine, "/api/v1/query", args.repeat, query=q.expr, time=now)
        else:
            s, body = timed(engine, "/api/v1/query_range", args.repeat, query=q.expr, start=str(int(now) - range_s),
                            end=now, step=str(step))
        if body.get("status") != "success":
            raise RuntimeError(f"{engine.name}: {q.expr!r}: {body}")
        latencies.append((q.panel, "instant" if q.instant else f"range {range_s // 86400}d/{step}s", s,
                          len(body["data"]["result"])))
    for sel in selectors:
        match, label = sel.split("|")
        s, body = timed(engine, f"/api/v1/label/{label}/values", args.repeat, **{"match[]": match,
                        "start": str(int(now) - range_s), "end": now})
        latencies.append((f"variable {label}", "label values", s, len(body["data"])))
    return {"groups": {g: statistics.median(v) for g, v in groups.items()}, "queries": latencies,
            "rules": {r: statistics.median(v) for r, v in per_rule.items()}}


def compare(engines: list[Engine]) -> tuple[list[str], int, int]:
    """Every rule expression and every instant dashboard query on both engines at one
    timestamp: the differing ones, how many were compared, and how many of them had results."""
    at = str(int(time.time()) - 5)
    exprs = [(f"rule {r.name}", r.expr) for r in rules()]
    exprs += [(f"panel {q.panel}", q.expr) for q in dashboard_queries()[0] if q.instant and "ALERTS" not in q.expr]
    diffs = []
    nonempty = 0
    for what, expr in exprs:
        sets = [result_set(e.query("/api/v1/query", query=expr, time=at)[1]) for e in engines]
        nonempty += bool(sets[0] or sets[1])
        if "topk(1," in expr:
            # one series of many equal ones, by design (a runbook link to any exporter): the
            # engines break the tie differently, so only the count can agree
            sets = [{(): float(len(x))} for x in sets]
        only = differing(*sets)
        if only[0] or only[1]:
            diffs.append(f"{what}: {len(sets[0])} vs {len(sets[1])} results; prometheus only {only[0][:2]}, "
                         f"victoria-metrics only {only[1][:2]}")
    return diffs, len(exprs), nonempty


# ------------------------------------------------------------------------------------------------
# the table


def report(results: list[dict], engines: list[str]) -> str:
    lines = []
    for r in results:
        loads = ", ".join(f"{e} load {r[e + '_load_s']:.1f} s" for e in engines)
        lines.append(f"\n== {r['hosts']:,} hosts: {r['series']:,} series, {r['samples_per_series']} samples each "
                     f"({r['samples']:,}); {loads}")
    groups = sorted({g for r in results for e in engines for g in r[e]["groups"]})
    head = " | ".join(f"{e} {r['hosts']:,}" for e in engines for r in results)
    lines += ["", f"| rule group (evaluation, ms) | {head} |", "|---" * (1 + len(engines) * len(results)) + "|"]
    for g in groups:
        cells = " | ".join(_ms(r[e]["groups"].get(g)) for e in engines for r in results)
        lines.append(f"| {g} | {cells} |")
    rule_names = sorted({n for r in results for e in engines for n in r[e].get("rules", {})})
    if rule_names:
        with_rules = [(e, r) for e in engines for r in results if r[e].get("rules")]
        lines += ["", "| rule (its own evaluation, ms) | " + " | ".join(f"{e} {r['hosts']:,}" for e, r in with_rules)
                  + " |", "|---" * (1 + len(with_rules)) + "|"]
        for n in rule_names:
            lines.append(f"| {n} | " + " | ".join(_ms(r[e]["rules"].get(n)) for e, r in with_rules) + " |")
        for e, r in with_rules:
            own = {g: sum(v for n, v in r[e]["rules"].items() if n.split("/")[0] == g) for g in r[e]["groups"]}
            lines.append(f"\n{e} {r['hosts']:,}: group time minus its rules' own (overhead), ms: "
                         + ", ".join(f"{g} {1000 * (r[e]['groups'][g] - own[g]):.1f}" for g in sorted(own)))
    lines += ["", f"| dashboard query (median latency, ms) | kind | {head} |",
              "|---" * (2 + len(engines) * len(results)) + "|"]
    for i, (panel, kind, *_rest) in enumerate(results[0][engines[0]]["queries"]):
        cells = " | ".join(_ms(r[e]["queries"][i][2]) for e in engines for r in results)
        lines.append(f"| {panel[:60]} | {kind} | {cells} |")
    for r in results:
        if r.get("differences") is not None:
            diffs = r["differences"]
            lines.append(f"\n{r['hosts']:,} hosts: {r['compared']} expressions (every rule, every instant dashboard "
                         f"query but ALERTS; {r['compared_nonempty']} with results) give "
                         f"{'the same result sets on both engines' if not diffs else f'{len(diffs)} differences:'}")
            lines += [f"  - {d}" for d in diffs]
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="1000,10000", help="comma-separated fleet sizes (default 1000,10000)")
    parser.add_argument("--window", type=int, default=3900, help="seconds of samples before now (default 3900)")
    parser.add_argument("--interval", type=int, default=60, help="seconds between samples (default 60)")
    parser.add_argument("--ahead", type=int, default=1200,
                        help="seconds the data reaches past now, to cover building blocks and measuring (default 1200)")
    parser.add_argument("--eval-interval", type=int, default=15, help="rule evaluation interval, s")
    parser.add_argument("--evaluations", type=int, default=3, help="rule evaluations to take the median of")
    parser.add_argument("--deadline", type=int, default=0,
                        help="seconds to wait for the rule groups' evaluations (default: 120 + interval x (evaluations + 3)); "
                             "a group that finished none by then is shown as -")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query (median)")
    parser.add_argument("--engines", default="prometheus,victoria-metrics")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    args.engines = [e for e in args.engines.split(",") if e]
    for tool in ["promtool", "prometheus"] * ("prometheus" in args.engines) + \
            ["victoria-metrics", "vmalert"] * ("victoria-metrics" in args.engines):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (Debian: apt-get install prometheus victoria-metrics)")
    work = args.work or Path(tempfile.mkdtemp(prefix="dkms-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    templates = host_templates()
    print("series per host state: " + ", ".join(f"{k} {len(v)}" for k, v in templates.items()), flush=True)
    results = []
    try:
        for n in (int(h) for h in args.hosts.split(",")):
            print(f"-- {n:,} hosts ...", flush=True)
            results.append(run_size(n, args, templates, work / str(n)))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
            print(report(results[-1:], args.engines), flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print("\n# all sizes" + report(results, args.engines))
    return 1 if any(r.get("differences") for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
