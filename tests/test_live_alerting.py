"""LIVE, on loopback: the exporter serving the example hosts, Debian's real Prometheus scraping
them with the bundled rules (`for:` shortened), Debian's real Alertmanager routing with the
bundled example config to a webhook receiver in this test.

Asserted: the reboot-gate alert reaches the receiver for the trapped hosts only, one per
problem the exporter's own `check --json` reports, with the right labels and annotations; the
healthy host never alerts; inhibition holds back duplicates; every dashboard query returns the
series its panel shows; every metric name a rule or panel uses is served.

Everything listens on 127.0.0.1 on ports chosen here; every wait is bounded; all processes
are stopped in teardown.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from example_hosts import EXAMPLES  # noqa: E402
from test_alerts import documented_metrics, metric_names  # noqa: E402
from test_dashboard import panels  # noqa: E402
from test_runbooks import ids_of  # noqa: E402
from testkit import WAIT, free_port, run_exporter, slow_artifact, wait_for  # noqa: E402

from alerts import generate  # noqa: E402
from alerts.config import (ANY_EXPORTER_INSTANCE, INITRAMFS_REASONS, KERNEL_BREAKING_REASONS,  # noqa: E402
                           NON_BLOCKING_REASONS, PENDING_METRICS, REBOOT_GATE_PREFIX, SECURE_BOOT_REASONS)

pytestmark = pytest.mark.live

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
FOR = "2s"                      # every `for:` in test mode
SCRAPE_INTERVAL = "1s"          # Prometheus' scrape and evaluation interval in this stack
EVALUATION_INTERVAL = "1s"
GROUP_WAIT = "3s"               # Alertmanager's, above the evaluation interval as in production
GROUP_INTERVAL = "1s"
# How much slower than its idle-machine budget the stack may deliver, per unit of CPU
# oversubscription (1-minute load average / cores, at least 1): 2 covers timer jitter and a cold
# first scrape on an idle machine; under load every process of the stack waits for a core in
# proportion (a load of 15 on 2 cores: 7.5 runnable tasks per core, deadline 15x the budget).
DELIVERY_MARGIN = 2.0
JOB = "dkms-exporter"
TEXTFILE_ONLY = {"dkms_textfile_last_run_timestamp_seconds"}
BOARD = json.loads((REPO / generate.DASHBOARD).read_text())
GATE_REASON_ALERT = {**{r: "DkmsNextBootModuleRejectedBySecureBoot" for r in SECURE_BOOT_REASONS},
                     **{r: "DkmsNextBootInitramfsIncomplete" for r in INITRAMFS_REASONS}}


# --- plumbing -------------------------------------------------------------------------------

def get_json(url: str, params: dict | None = None) -> Any:
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


class Receiver(ThreadingHTTPServer):
    """Alertmanager's webhook target: records (path, payload) of every notification."""
    daemon_threads = True

    def __init__(self) -> None:
        self.notifications: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Hook)

    def alerts(self, path: str | None = None) -> list[dict]:
        with self.lock:
            return [a for p, n in self.notifications if path in (None, p) for a in n["alerts"]]


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.notifications.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Stack:
    tmp: Path
    prometheus: str = ""
    alertmanager: str = ""
    receiver: Receiver | None = None
    exporters: dict[str, str] = field(default_factory=dict)      # fixture name -> instance
    checks: dict[str, dict] = field(default_factory=dict)        # fixture name -> check --json
    dead: str = ""                                               # a target nobody listens on
    procs: list[subprocess.Popen] = field(default_factory=list)
    started: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            proc.log.close()  # type: ignore[attr-defined]
        if self.receiver is not None:
            self.receiver.shutdown()
            self.receiver.server_close()

    def query(self, expr: str) -> list[dict]:
        doc = get_json(f"{self.prometheus}/api/v1/query", {"query": expr})
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def prometheus_alerts(self) -> list[dict]:
        return get_json(f"{self.prometheus}/api/v1/alerts")["data"]["alerts"]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))


def _exporter_argv(root: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "exporter", "serve", "--web.listen-address", f"127.0.0.1:{port}",
            "--path.rootfs", str(root), *extra]


def _prometheus_config(stack: Stack, rules: list[Path], am_port: int) -> dict:
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": EVALUATION_INTERVAL},
        "rule_files": [str(p) for p in rules],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{
            "job_name": JOB,
            "static_configs": [{"targets": [instance], "labels": {"fixture": name}}
                               for name, instance in [*stack.exporters.items(), ("dead", stack.dead)]],
        }],
    }


def _alertmanager_config(receiver: str) -> dict:
    """The bundled example, with its receivers pointed at this test and its timers shortened.
    group_wait stays above the rule evaluation interval, as in production (30s vs 1m): an alert
    and the one that inhibits it come from different rule groups, up to one interval apart."""
    config = copy.deepcopy(yaml.safe_load((REPO / generate.ALERTMANAGER_EXAMPLE).read_text()))
    config["route"].update(group_wait=GROUP_WAIT, group_interval=GROUP_INTERVAL, repeat_interval="1h")
    for r in config["receivers"]:
        r["webhook_configs"] = [{"url": f"{receiver}/{r['name']}", "send_resolved": False}]
    return config


def _seconds(duration: str) -> float:
    """A Prometheus duration of one unit ("2s", "1m") in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert m, duration
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def delivery_budget() -> float:
    """Seconds from Prometheus ready to the last reboot-gate alert at the webhook on an idle
    machine, worst case, from the configured intervals: the first scrape (one scrape interval),
    the evaluation that sees it (the boot-target records and the alerts below them run in one
    group at one timestamp: one evaluation interval), `for:`, the evaluation that fires
    (another interval), Alertmanager's group_wait, and one group_interval for an alert that
    joins its group after the first notification."""
    return (_seconds(SCRAPE_INTERVAL) + 2 * _seconds(EVALUATION_INTERVAL) + _seconds(FOR)
            + _seconds(GROUP_WAIT) + _seconds(GROUP_INTERVAL))


def oversubscription() -> float:
    """Runnable tasks per core now (1-minute load average / cores), at least 1."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def delivery_deadline(load: float) -> float:
    return delivery_budget() * DELIVERY_MARGIN * load


def test_delivery_deadline_follows_the_configuration() -> None:
    """The bound is the configured pipeline, not a constant: 1 + 2 + 2 + 3 + 1 = 9 s of
    intervals, twice that on an idle machine, scaled by the load."""
    assert delivery_budget() == 9.0
    assert delivery_deadline(1.0) == 18.0 and delivery_deadline(7.5) == 135.0
    assert oversubscription() >= 1.0


# --- the stack ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    slow_artifact("Debian's real Prometheus and Alertmanager")
    for binary in (PROMETHEUS, ALERTMANAGER):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is missing: scripts/test installs prometheus and "
                        f"prometheus-alertmanager from .ci/apt-packages")
    tmp = tmp_path_factory.mktemp("live")
    # jsonnet renders the test-mode rules (cached) before the clock starts: the timings bound
    # the stack, not the generator (about 3 s of CPU, tests/test_mixin.py)
    generate.render_mixin({"forOverride": FOR})
    s = Stack(tmp, started=time.monotonic())
    try:
        _start(s)
        yield s
    finally:
        s.stop()


def _start(s: Stack) -> None:
    hosts = tmp_path = s.tmp / "hosts"
    tmp_path.mkdir()
    roots = {}
    for name, build in EXAMPLES.items():
        build(hosts / name)
        roots[name] = hosts / name
    fixtures = {name: (roots[name], ()) for name in roots}
    fixtures["undecidable"] = (roots["healthy"], ("--no-collector.dkms",))
    for name, (root, extra) in fixtures.items():
        port = free_port()
        s.start(f"exporter-{name}", _exporter_argv(root, port, *extra))
        s.exporters[name] = f"127.0.0.1:{port}"
        s.checks[name] = json.loads(run_exporter("--path.rootfs", str(root), *extra, "check", "--json").stdout)
    s.dead = f"127.0.0.1:{free_port()}"

    s.receiver = Receiver()
    threading.Thread(target=s.receiver.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    receiver = f"http://127.0.0.1:{s.receiver.server_address[1]}"

    rendered = generate.render({"forOverride": FOR})
    rules = []
    for rel in (generate.ALERTS_FILE, generate.RULES_FILE):
        path = s.tmp / Path(rel).name
        path.write_text(rendered[rel])
        rules.append(path)

    am_port, prom_port = free_port(), free_port()
    (s.tmp / "alertmanager.yml").write_text(yaml.safe_dump(_alertmanager_config(receiver)))
    (s.tmp / "am-data").mkdir()
    s.start("alertmanager", [ALERTMANAGER, f"--config.file={s.tmp / 'alertmanager.yml'}",
                             f"--storage.path={s.tmp / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                             "--cluster.listen-address=", "--log.level=warn"])
    (s.tmp / "prometheus.yml").write_text(yaml.safe_dump(_prometheus_config(s, rules, am_port)))
    (s.tmp / "prom-data").mkdir()
    s.start("prometheus", [PROMETHEUS, f"--config.file={s.tmp / 'prometheus.yml'}",
                           f"--storage.tsdb.path={s.tmp / 'prom-data'}",
                           f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
    s.prometheus = f"http://127.0.0.1:{prom_port}"
    s.alertmanager = f"http://127.0.0.1:{am_port}"

    def ready(url: str) -> bool:
        for p in s.procs:
            if p.poll() is not None:
                pytest.fail(f"{p.args[0]} exited with {p.returncode}\n{s.logs()}")
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return r.status == 200

    wait_for("Alertmanager to be ready", lambda: ready(s.alertmanager))
    wait_for("Prometheus to be ready", lambda: ready(s.prometheus))
    s.timings["ready"] = time.monotonic() - s.started
    up = wait_for("every exporter scraped", lambda: len(s.query(f'up{{job="{JOB}"}} == 1')) == len(s.exporters))
    assert up
    wait_for("the fleet recording rules", lambda: s.query("job:dkms_hosts:count"))
    s.timings["scraped"] = time.monotonic() - s.started


def expected_gate_alerts(s: Stack) -> set[tuple[str, str, str, str, str]]:
    """(alertname, fixture, kernel, module, reason) for every problem `check --json` reports on a
    boot target (module "" for a kernel-level one): what the reboot-gate alerts must say, no
    more, no less."""
    out = set()
    for fixture, doc in s.checks.items():
        for k in doc["kernels"]:
            assert "target" in k["roles"]
            for p in k["problems"]:
                if p["reason"] in KERNEL_BREAKING_REASONS:
                    out.add(("DkmsNextBootInitramfsUnusable", fixture, k["kernel"], "", p["reason"]))
            for m in k["modules"]:
                for p in m["problems"]:
                    if p["reason"] in NON_BLOCKING_REASONS:
                        continue
                    name = GATE_REASON_ALERT.get(p["reason"], "DkmsNextBootKernelNotReady")
                    out.add((name, fixture, k["kernel"], m["module"], p["reason"]))
    return out


def _fixture(s: Stack, instance: str) -> str:
    return next(name for name, inst in s.exporters.items() if inst == instance)


def _delivered_gate(s: Stack) -> set[tuple[str, str, str, str, str]]:
    return {(a["labels"]["alertname"], _fixture(s, a["labels"]["instance"]), a["labels"]["kernel"],
             a["labels"].get("module", ""), a["labels"]["reason"])
            for a in s.receiver.alerts("/dkms-oncall")
            if a["labels"]["alertname"].startswith(REBOOT_GATE_PREFIX) and "reason" in a["labels"]}


@pytest.fixture(scope="module")
def delivered(stack: Stack) -> set[tuple[str, str, str, str, str]]:
    expected = expected_gate_alerts(stack)
    assert any(f == "reboot-trap" for _, f, *_ in expected), "the reboot-trap host is not trapped?"
    stack.timings["load_per_core"] = oversubscription()
    elapsed = time.monotonic() - stack.started - stack.timings["ready"]
    wait_for("the reboot-gate alerts at the webhook", lambda: expected <= _delivered_gate(stack),
             timeout=max(WAIT, delivery_deadline(stack.timings["load_per_core"]) - elapsed))
    stack.timings["delivered"] = time.monotonic() - stack.started
    time.sleep(2.5)  # two more evaluation + notification rounds: nothing unexpected may follow
    return _delivered_gate(stack)


# --- the alerts -----------------------------------------------------------------------------

def test_gate_alert_reaches_the_receiver_for_trapped_hosts_only(stack: Stack, delivered: set) -> None:
    expected = expected_gate_alerts(stack)
    print("delivered reboot-gate alerts:", *sorted(delivered), sep="\n  ")
    assert delivered == expected
    trapped = {f for _, f, *_ in expected}
    assert "healthy" not in trapped and {"reboot-trap", "many-problems"} <= trapped
    # the README's trap, spelled out
    assert ("DkmsNextBootKernelNotReady", "reboot-trap", "6.1.0-28-amd64", "acpi_call", "not_built") in delivered
    assert ("DkmsNextBootKernelNotReady", "reboot-trap", "6.1.0-28-amd64", "v4l2loopback", "not_built") in delivered
    for alert in stack.receiver.alerts("/dkms-oncall"):
        labels, annotations = alert["labels"], alert["annotations"]
        if labels["alertname"] != "DkmsNextBootKernelNotReady" or labels["fixture"] != "reboot-trap":
            continue
        assert alert["status"] == "firing"
        assert labels["job"] == JOB and labels["severity"] == "critical"  # a reboot is pending there
        assert labels["dkms"] in ("acpi-call/1.2.2", "v4l2loopback/0.12.7")
        assert annotations["runbook_url"].endswith("#dkmsnextbootkernelnotready")
        assert f"will not work on kernel 6.1.0-28-amd64" in annotations["description"]
        assert labels["instance"] in annotations["description"]


def test_every_delivered_runbook_url_opens(stack: Stack, delivered: set) -> None:
    """The runbook_url Prometheus expanded and Alertmanager delivered, followed as on-call would:
    the alert's own exporter serves /runbooks and the page has the alert's anchor."""
    urls = {a["annotations"]["runbook_url"] for a in stack.receiver.alerts()}
    assert urls
    for url in sorted(urls):
        page, _, fragment = url.partition("#")
        with urllib.request.urlopen(page, timeout=5) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html"), url
            assert fragment in ids_of(r.read().decode()).ids, url


def test_healthy_host_never_alerts(stack: Stack, delivered: set) -> None:
    healthy = stack.exporters["healthy"]
    assert [a["labels"] for a in stack.receiver.alerts() if a["labels"].get("instance") == healthy] == []
    assert [a["labels"] for a in stack.prometheus_alerts() if a["labels"].get("instance") == healthy] == []


def test_undecidable_and_unreachable_hosts_alert(stack: Stack, delivered: set) -> None:
    def names_for(instance: str) -> set[str]:
        return {a["labels"]["alertname"] for a in stack.receiver.alerts("/dkms-oncall")
                if a["labels"].get("instance") == instance}

    wait_for("DkmsNextBootReadinessUnknown and DkmsExporterDown at the webhook",
             lambda: "DkmsNextBootReadinessUnknown" in names_for(stack.exporters["undecidable"])
             and "DkmsExporterDown" in names_for(stack.dead))
    assert names_for(stack.exporters["undecidable"]) == {"DkmsNextBootReadinessUnknown"}


def test_inhibition_pages_each_incident_once(stack: Stack, delivered: set) -> None:
    """Build failures and missing headers on a kernel whose reboot-gate alert fires are held back
    by the bundled inhibit rule: Alertmanager marks them suppressed, the receiver never sees them."""
    firing = [a["labels"] for a in stack.prometheus_alerts() if a["state"] == "firing"]
    gated = {(l["instance"], l["kernel"]) for l in firing if l["alertname"].startswith(REBOOT_GATE_PREFIX)
             and "kernel" in l}
    targets = [l for l in firing if l["alertname"] in ("DkmsModuleBuildFailed", "DkmsKernelHeadersMissing")
               and (l["instance"], l["kernel"]) in gated]
    assert any(l["alertname"] == "DkmsKernelHeadersMissing" and _fixture(stack, l["instance"]) == "reboot-trap"
               for l in targets), "the reboot trap's missing headers should be inhibited"

    def suppressed() -> set:
        alerts = get_json(f"{stack.alertmanager}/api/v2/alerts", {"inhibited": "true"})
        return {(a["labels"]["alertname"], a["labels"]["instance"], a["labels"]["kernel"])
                for a in alerts if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]}

    want = {(l["alertname"], l["instance"], l["kernel"]) for l in targets}
    wait_for("Alertmanager to inhibit build failures and missing headers", lambda: want <= suppressed())
    received = {(a["labels"]["alertname"], a["labels"]["instance"], a["labels"]["kernel"])
                for a in stack.receiver.alerts() if "kernel" in a["labels"]}
    assert not (want & received), "an inhibited alert reached the receiver"


def test_routes_and_severities(stack: Stack, delivered: set) -> None:
    """The example route: critical and warning DKMS alerts page (dkms-oncall), info goes to the
    default receiver; every delivered alert carries the rule's severity and runbook."""
    rules = generate.alert_rules()
    severities = {(a["alert"], a["labels"]["severity"]) for a in rules}
    # alerts whose instance serves no runbooks link to another exporter (the mixin's template)
    elsewhere = {a["alert"] for a in rules if ANY_EXPORTER_INSTANCE in a["annotations"]["runbook_url"]}
    for path, notification in list(stack.receiver.notifications):
        for alert in notification["alerts"]:
            labels = alert["labels"]
            assert (labels["alertname"], labels["severity"]) in severities
            own = labels["alertname"] not in elsewhere
            host = labels["instance"] if own else urllib.parse.urlsplit(alert["annotations"]["runbook_url"]).netloc
            assert own or host in stack.exporters.values(), "an exporter that is up serves its runbooks"
            assert alert["annotations"]["runbook_url"] == f"http://{host}/runbooks#{labels['alertname'].lower()}"
            assert path == ("/default" if labels["severity"] == "info" else "/dkms-oncall"), labels
    summary: dict[str, int] = {}
    for path, notification in list(stack.receiver.notifications):
        for alert in notification["alerts"]:
            labels = alert["labels"]
            key = f"{path} {labels['alertname']} {labels['severity']} {labels.get('fixture', '-')}"
            summary[key] = summary.get(key, 0) + 1
    print("webhook received (path alertname severity fixture: alerts):",
          *(f"{k}: {v}" for k, v in sorted(summary.items())), sep="\n  ")
    info = {a["labels"]["alertname"] for a in stack.receiver.alerts("/default")}
    assert "DkmsKernelPackageHeld" in info  # reboot-trap holds linux-headers-amd64


# --- the dashboard --------------------------------------------------------------------------

def _substitute(expr: str, instance: str) -> str:
    """What Grafana sends: the variables' values, regex-escaped inside a PromQL string."""
    return expr.replace("$job", JOB).replace("$instance", re.escape(instance).replace("\\", "\\\\"))


def _dashboard_targets() -> list[Any]:
    params = []
    for panel in panels(BOARD):
        for t in panel["targets"]:
            params.append(pytest.param(panel, t, id=f"{panel['title']}/{t['refId']}"))
    return params


def _undocumented_pending(expr: str) -> set[str]:
    return (metric_names(expr) & set(PENDING_METRICS)) - documented_metrics()


def _shown_labels(panel: dict, target: dict) -> set[str]:
    """The labels the panel displays from this target: organize columns, matrix row/column, legend."""
    labels = set(re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")))
    for t in panel.get("transformations", []):
        options = t["options"]
        if t["id"] == "organize":
            labels |= {c for c in options["indexByName"] if not c.startswith("Value") and c != "Value"}
        if t["id"] == "groupingToMatrix":
            labels |= {options["rowField"], options["columnField"]}
    return labels


@pytest.mark.parametrize(("panel", "target"), _dashboard_targets())
def test_dashboard_query_returns_series(stack: Stack, delivered: set, panel: dict, target: dict) -> None:
    """Every panel query, run as the panel runs it (the job and the many-problems host selected),
    returns series, with the labels the panel shows."""
    pending = _undocumented_pending(target["expr"])
    expr = _substitute(target["expr"], stack.exporters["many-problems"])
    result = stack.query(expr)
    if not result and pending:
        pytest.xfail(f"{sorted(pending)} not served yet ({', '.join(sorted({PENDING_METRICS[n] for n in pending}))})")
    assert result, f"{panel['title']}: no data for {expr}"
    core = re.sub(r"\s+or vector\(0\)$", "", expr)
    if core != expr:  # `X or vector(0)`: X itself must have data on this fleet
        assert stack.query(core), f"{panel['title']}: only the vector(0) fallback answers"
    shown = _shown_labels(panel, target)
    if panel["type"] == "table" and len(panel["targets"]) > 1:
        shown &= set().union(*(set(r["metric"]) for r in result))  # merged tables: each query adds some
    for label in shown:
        assert any(label in r["metric"] for r in result), f"{panel['title']}: no series has label {label}"


def test_dashboard_annotations_run_and_mark_new_kernels(stack: Stack, delivered: set) -> None:
    """Every annotation query runs on the live Prometheus for the host; on a fleet minutes old
    each kernel is "installed" within the window, so that one has events with the tag labels."""
    host = stack.exporters["many-problems"]
    for a in BOARD["annotations"]["list"]:
        result = stack.query(_substitute(a["expr"], host))
        for r in result:
            assert "instance" in r["metric"], a["name"]
        if a["name"] == "Kernel installs":
            assert result, "no kernel-install event on a fleet that just started"


def test_template_variables_resolve(stack: Stack, delivered: set) -> None:
    for variable in BOARD["templating"]["list"]:
        if variable["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.*), *(\w+)\)", variable["query"]["query"])
        values = {r["metric"][m.group(2)] for r in stack.query(_substitute(m.group(1), ""))}
        expected = {JOB} if variable["name"] == "job" else set(stack.exporters.values())
        assert values == expected, variable["name"]


def test_every_metric_a_rule_or_panel_uses_is_served(stack: Stack, delivered: set) -> None:
    served = set(get_json(f"{stack.prometheus}/api/v1/label/__name__/values")["data"])
    records = generate.record_rules() + generate.gate_records()
    recorded = {r["record"] for r in records}
    exprs = [a["expr"] for a in generate.alert_rules() + records] + [t["expr"] for p in panels(BOARD) for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in exprs)) - {"ALERTS"}
    pending = {n for n in PENDING_METRICS if n not in documented_metrics()}
    missing = used - served - TEXTFILE_ONLY - pending
    assert missing == set(), "rules or panels use names the exporter does not serve (or rules never record)"
    assert recorded - served == set(), "recording rules that record nothing on this fleet"


def test_timings(stack: Stack, delivered: set) -> None:
    """The alerting pipeline stays within its configured intervals: from Prometheus ready to
    the last gate alert at the webhook within delivery_deadline() (the intervals' sum, times
    DELIVERY_MARGIN, times the load per core when the wait began).  Setting up the stack
    (building the example hosts, `check --json` on each, starting the exporters) is recorded,
    not bounded: it is CPU work that a loaded machine stretches without limit."""
    t = stack.timings
    print(f"live stack timings (s since start): {json.dumps({k: round(v, 1) for k, v in t.items()})}")
    pipeline = t["delivered"] - t["ready"]
    deadline = delivery_deadline(t["load_per_core"])
    assert pipeline < deadline, (f"{pipeline:.1f} s from Prometheus ready to delivery; budget "
                                 f"{delivery_budget():.0f} s x {DELIVERY_MARGIN} x load {t['load_per_core']:.1f}")
