"""The Grafana dashboard, as plain data: fleet overview, host drill-down, trends.

Fleet panels read the recording rules of alerts/rules.py (cheap at 10,000 hosts); host
panels read raw series of one `$instance`.  Every target carries `job=~"$job"`, and every
host panel also `instance=~"$instance"` (tests/test_dashboard.py checks both), and the job
list itself comes from the selector in alerts/config.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

from alerts.config import KERNEL_BREAKING_REASONS, NON_BLOCKING_REASONS, Config

UID = "dkms-exporter"
DS = {"type": "prometheus", "uid": "${datasource}"}
FLEET = 'job=~"$job"'
HOST = 'job=~"$job", instance=~"$instance"'
HIDDEN = ("Time", "__name__", "job")


def target(expr: str, ref: str = "A", *, legend: str = "", table: bool = False, instant: bool = False) -> dict:
    t = {"refId": ref, "datasource": DS, "expr": expr, "range": not (table or instant),
         "instant": table or instant, "format": "table" if table else "time_series"}
    if legend:
        t["legendFormat"] = legend
    return t


def _mapping(values: dict[str, tuple[str, str]]) -> list[dict]:
    """Value mappings: raw value -> (text, color)."""
    return [{"type": "value", "options": {v: {"text": text, "color": color, "index": i}
                                          for i, (v, (text, color)) in enumerate(values.items())}}]


def _thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


WORKS = _mapping({"1": ("works", "green"), "0": ("BROKEN", "red")})
YES_NO = _mapping({"1": ("yes", "green"), "0": ("no", "red")})
BOOL_LABEL = _mapping({"true": ("yes", "blue"), "false": ("", "transparent")})


@dataclass
class Layout:
    """Places panels left to right in a 24-column grid, a new line when a row is full."""
    ids: count = field(default_factory=lambda: count(1))
    x: int = 0
    y: int = 0
    line_height: int = 0
    panels: list[dict] = field(default_factory=list)

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self.newline()
        panel["id"] = next(self.ids)
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.line_height = max(self.line_height, h)

    def newline(self) -> None:
        self.y += self.line_height
        self.x, self.line_height = 0, 0

    def row(self, title: str) -> None:
        if self.x:
            self.newline()
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.newline()


def _panel(kind: str, title: str, description: str, targets: list[dict], **extra) -> dict:
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "targets": targets, **extra}


def stat(title: str, description: str, targets: list[dict], *, mappings: list | None = None,
         thresholds: dict | None = None, unit: str = "none", no_value: str = "", text_mode: str = "auto",
         color_mode: str = "background") -> dict:
    defaults = {"unit": unit, "mappings": mappings or [],
                "thresholds": thresholds or _thresholds((None, "green")), "color": {"mode": "thresholds"}}
    if no_value:
        defaults["noValue"] = no_value
    return _panel("stat", title, description, targets,
                  fieldConfig={"defaults": defaults, "overrides": []},
                  options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": color_mode, "graphMode": "none", "textMode": text_mode,
                           "justifyMode": "auto", "orientation": "auto"})


def bargauge(title: str, description: str, expr: str, legend: str, no_value: str) -> dict:
    return _panel("bargauge", title, description, [target(expr, legend=legend, instant=True)],
                  fieldConfig={"defaults": {"unit": "none", "min": 0, "noValue": no_value,
                                            "thresholds": _thresholds((None, "red")),
                                            "color": {"mode": "thresholds"}}, "overrides": []},
                  options={"displayMode": "basic", "orientation": "horizontal", "showUnfilled": True,
                           "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})


def table(title: str, description: str, targets: list[dict], columns: list[str], *,
          rename: dict[str, str] | None = None, mappings: list | None = None, no_value: str = "",
          merge: bool = False, overrides: list | None = None) -> dict:
    """An instant table showing `columns` (labels, or `Value #X` renamed) in that order."""
    transformations = [{"id": "merge", "options": {}}] if merge else []
    transformations.append({"id": "organize", "options": {
        "excludeByName": {name: True for name in HIDDEN if name not in columns},
        "indexByName": {name: i for i, name in enumerate(columns)},
        "renameByName": rename or {},
        "includeByName": {name: True for name in columns}}})
    defaults: dict = {"mappings": mappings or [], "custom": {"align": "auto", "cellOptions": {"type": "auto"}}}
    if no_value:
        defaults["noValue"] = no_value
    return _panel("table", title, description, targets, transformations=transformations,
                  fieldConfig={"defaults": defaults, "overrides": overrides or []},
                  options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}})


def matrix(title: str, description: str, expr: str, mappings: list) -> dict:
    """Kernel rows x module columns, one cell per series (empty: not needed on that kernel)."""
    return _panel("table", title, description, [target(expr, table=True)],
                  transformations=[{"id": "groupingToMatrix", "options": {
                      "columnField": "module", "rowField": "kernel", "valueField": "Value",
                      "emptyValue": "empty"}}],
                  fieldConfig={"defaults": {"mappings": mappings, "noValue": "no modules needed",
                                            "custom": {"align": "center",
                                                       "cellOptions": {"type": "color-background"}}},
                               "overrides": []},
                  options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}})


def timeseries(title: str, description: str, targets: list[dict], *, unit: str = "none",
               stack: bool = False) -> dict:
    return _panel("timeseries", title, description, targets,
                  fieldConfig={"defaults": {"unit": unit, "min": 0, "custom": {
                      "drawStyle": "line", "lineWidth": 1, "fillOpacity": 20 if stack else 0,
                      "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                      "spanNulls": False}}, "overrides": []},
                  options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
                           "tooltip": {"mode": "multi", "sort": "desc"}})


def _or_zero(expr: str) -> str:
    return f"{expr} or vector(0)"


def boot_target_problems(selector: str) -> str:
    reasons = "|".join(KERNEL_BREAKING_REASONS)
    targets = f'dkms_kernel_info{{{selector}, boot_target="true"}} == 1'
    blocking = "|".join(NON_BLOCKING_REASONS)
    return (f'(dkms_module_problem{{{selector}, reason!~"{blocking}"}} == 1 '
            f"and on (job, instance, kernel) {targets})\n"
            f'or (dkms_kernel_problem{{{selector}, reason=~"{reasons}"}} == 1 '
            f"and on (job, instance, kernel) {targets})")


# --- the three sections ---------------------------------------------------------------

def fleet(lay: Layout) -> None:
    lay.row("Fleet: will the next boot work?")
    count_stats = [
        ("Hosts reporting", "Hosts whose dkms-exporter metrics reach Prometheus.",
         "job:dkms_hosts:count", _thresholds((None, "blue"))),
        ("Next boot NOT ready", "Hosts where a boot target (next-boot or newest kernel) lacks a working "
         "module: rebooting them now strands them.", "job:dkms_hosts_not_ready:count",
         _thresholds((None, "green"), (1, "red"))),
        ("Readiness unknown", "Hosts where the exporter cannot decide (a collector failed or is disabled).",
         "job:dkms_hosts_readiness_unknown:count", _thresholds((None, "green"), (1, "orange"))),
        ("Reboot pending", "Hosts with /run/reboot-required.", "job:dkms_hosts_reboot_required:count",
         _thresholds((None, "green"), (1, "blue"))),
        ("Secure Boot on", "Hosts booted with UEFI Secure Boot enabled: their kernels refuse unsigned "
         "modules.", "job:dkms_hosts_secure_boot_enabled:count", _thresholds((None, "blue"))),
    ]
    for title, description, record, thresholds in count_stats:
        lay.add(stat(title, description, [target(_or_zero(f"sum({record}{{{FLEET}}})"), instant=True)],
                     thresholds=thresholds), 4, 4)
    lay.add(stat("Targets down", "Scrape targets of the selected jobs that do not answer: nobody is "
                 "warned about those hosts.", [target(_or_zero(f"count(up{{{FLEET}}} == 0)"), instant=True)],
                 thresholds=_thresholds((None, "green"), (1, "red"))), 4, 4)
    for by, what in (("reason", "reason"), ("kernel", "boot-target kernel"), ("module", "module")):
        lay.add(bargauge(f"Hosts not ready, by {what}", f"How many hosts have at least one problem with "
                         f"this {what} on a kernel they will boot.",
                         f"sum by ({by}) (job_{by}:dkms_hosts_not_ready:count{{{FLEET}}})",
                         f"{{{{{by}}}}}", "every host is ready"), 8, 7)
    lay.add(table("Trapped hosts: boot-target modules that will not work",
                  "One row per module (or kernel-level problem) that fails on a kernel the host boots next or "
                  "its newest kernel. `dkms-exporter check` on the host prints the fix.",
                  [target(boot_target_problems(FLEET), table=True)],
                  ["instance", "kernel", "module", "dkms", "reason"], no_value="no host is trapped"), 16, 9)
    lay.add(table("Firing DKMS alerts", "What Alertmanager has been told.",
                  [target(f'ALERTS{{alertname=~"Dkms.*", alertstate="firing", {FLEET}}}', table=True)],
                  ["alertname", "severity", "instance", "kernel", "module", "reason"],
                  no_value="no DKMS alert is firing"), 8, 9)


def host(lay: Layout) -> None:
    lay.row("Host: $instance")
    lay.add(stat("Next boot", "READY: every module every boot target needs works. UNKNOWN: a collector "
                 "failed or is disabled.",
                 [target(f"max(dkms_next_boot_ready{{{HOST}}})\n"
                         f"or max(dkms_next_boot_readiness_unknown{{{HOST}}} == 1) - 2", instant=True)],
                 mappings=_mapping({"1": ("READY", "green"), "0": ("NOT READY", "red"),
                                    "-1": ("UNKNOWN", "orange")})), 4, 4)
    lay.add(stat("Boots next", "The kernel the bootloader starts next, and the loader that was read.",
                 [target(f"dkms_next_boot_kernel_info{{{HOST}}}", legend="{{kernel}} ({{loader}})",
                         instant=True)], text_mode="name", color_mode="none",
                 no_value="unknown (newest assumed)"), 5, 4)
    lay.add(stat("Running", "The running kernel.", [target(f"dkms_running_kernel_info{{{HOST}}}",
                                                           legend="{{kernel}}", instant=True)],
                 text_mode="name", color_mode="none"), 5, 4)
    lay.add(stat("Reboot pending since", "When /run/reboot-required appeared.",
                 [target(f"(dkms_reboot_required_since_timestamp_seconds{{{HOST}}}\n"
                         f" and on (job, instance) dkms_reboot_required{{{HOST}}} == 1) * 1000", instant=True)],
                 unit="dateTimeFromNow", color_mode="none", no_value="no reboot pending"), 4, 4)
    lay.add(stat("Rollback kernels", "Installed kernels besides the boot targets that are ready: what to "
                 "pick in the boot menu if the next kernel fails.",
                 [target(f"dkms_rollback_kernels{{{HOST}}}", instant=True)],
                 thresholds=_thresholds((None, "orange"), (1, "green"))), 3, 4)
    lay.add(stat("Secure Boot", "UEFI Secure Boot state: when enabled, kernels refuse unsigned modules.",
                 [target(f"max(dkms_secure_boot_enabled{{{HOST}}})\n"
                         f"or max(dkms_secure_boot_supported{{{HOST}}} == 0) - 1", instant=True)],
                 mappings=_mapping({"1": ("enabled", "blue"), "0": ("disabled", "text"),
                                    "-1": ("no UEFI", "text")}), color_mode="none"), 3, 4)
    lay.add(table("Kernels", "Installed kernels, their role, and what each needs to boot well.",
                  [target(f"dkms_kernel_info{{{HOST}}}", "A", table=True),
                   target(f"dkms_kernel_ready{{{HOST}}}", "B", table=True),
                   target(f"dkms_kernel_headers_present{{{HOST}}}", "C", table=True),
                   target(f"dkms_kernel_signature_enforced{{{HOST}}}", "D", table=True),
                   target(f"dkms_kernel_initramfs_present{{{HOST}}}", "E", table=True),
                   target(f"time() - dkms_kernel_initramfs_modified_timestamp_seconds{{{HOST}}}", "F",
                          table=True)],
                  ["kernel", "running", "newest", "next_boot", "boot_target", "Value #B", "Value #C",
                   "Value #D", "Value #E", "Value #F"], merge=True,
                  rename={"Value #B": "ready", "Value #C": "headers", "Value #D": "signatures enforced",
                          "Value #E": "initramfs", "Value #F": "initramfs age"},
                  mappings=YES_NO + BOOL_LABEL,
                  overrides=[{"matcher": {"id": "byName", "options": "initramfs age"},
                              "properties": [{"id": "unit", "value": "s"}, {"id": "mappings", "value": []}]}]),
            24, 6)
    lay.add(matrix("Modules work (kernel × module)", "One cell per module a kernel needs: works, or BROKEN "
                   "(the problems table says why). Empty: that kernel does not need the module.",
                   f"dkms_module_working{{{HOST}}}", WORKS), 12, 7)
    lay.add(table("Problems", "Why modules (or kernels) will not work; the reason names the runbook section.",
                  [target(f"dkms_module_problem{{{HOST}}} == 1 or dkms_kernel_problem{{{HOST}}} == 1", table=True)],
                  ["kernel", "module", "dkms", "reason"], no_value="no problems"), 12, 7)
    for title, description, metric in (
            ("Signed", "The module file carries a signature (kernels that enforce signatures refuse it "
             "otherwise).", "dkms_module_signed"),
            ("In initramfs", "The kernel's initramfs contains the module.", "dkms_module_in_initramfs"),
            ("Needed in early boot", "The module must be in the initramfs (storage, root filesystem).",
             "dkms_module_early_boot")):
        lay.add(matrix(f"{title} (kernel × module)", description, f"{metric}{{{HOST}}}", YES_NO), 8, 6)
    lay.add(table("DKMS status", "What `dkms status` prints.",
                  [target(f"dkms_module_state{{{HOST}}}", table=True)],
                  ["module", "version", "kernel", "arch", "state"], no_value="no DKMS modules"), 12, 7)
    lay.add(table("DKMS build failures", "Builds whose make.log DKMS left behind, and their cause.",
                  [target(f"dkms_build_failed{{{HOST}}}", "A", table=True),
                   target(f"dkms_build_failure_timestamp_seconds{{{HOST}}} * 1000", "B", table=True)],
                  ["module", "version", "kernel", "cause", "Value #B"], merge=True,
                  rename={"Value #B": "failed at"}, no_value="no failed builds",
                  overrides=[{"matcher": {"id": "byName", "options": "failed at"},
                              "properties": [{"id": "unit", "value": "dateTimeAsIso"}]}]), 12, 7)
    lay.add(table("Module signing keys", "Certificates DKMS signs modules with, and whether the firmware "
                  "or MOK trusts them (Secure Boot refuses modules signed by keys that are not enrolled).",
                  [target(f"dkms_signing_certificate_enrolled{{{HOST}}}", table=True)],
                  ["path", "signer", "key_id", "Value"], rename={"Value": "enrolled"}, mappings=YES_NO,
                  no_value="no signing certificate on disk"), 12, 6)
    lay.add(table("Held packages", "apt-mark hold: a held kernel gets no updates; a held headers package "
                  "starves DKMS.", [target(f"dkms_package_held{{{HOST}}}", table=True)],
                  ["package", "kind"], no_value="no held packages"), 8, 6)
    lay.add(table("Unfinished dpkg work", "What `dpkg --audit` lists.",
                  [target(f"dkms_package_unconfigured{{{HOST}}}", table=True)],
                  ["package", "state"], no_value="dpkg --audit is clean"), 8, 6)
    lay.add(table("Collectors", "Per collector: success, files it could not read, duration.",
                  [target(f"dkms_scrape_collector_success{{{HOST}}}", "A", table=True),
                   target(f"dkms_scrape_collector_errors{{{HOST}}}", "B", table=True),
                   target(f"dkms_scrape_collector_duration_seconds{{{HOST}}}", "C", table=True)],
                  ["collector", "Value #A", "Value #B", "Value #C"], merge=True,
                  rename={"Value #A": "success", "Value #B": "errors", "Value #C": "seconds"}), 8, 6)


def trends(lay: Layout) -> None:
    lay.row("Trends")
    lay.add(timeseries("Hosts by next-boot readiness", "From the fleet recording rules.", [
        target(f"sum(job:dkms_hosts_ready:count{{{FLEET}}})", "A", legend="ready"),
        target(f"sum(job:dkms_hosts_not_ready:count{{{FLEET}}})", "B", legend="not ready"),
        target(f"sum(job:dkms_hosts_readiness_unknown:count{{{FLEET}}})", "C", legend="unknown")],
        stack=True), 12, 8)
    lay.add(timeseries("Hosts not ready over time, by reason", "From the fleet recording rules.", [
        target(f"sum by (reason) (job_reason:dkms_hosts_not_ready:count{{{FLEET}}})", legend="{{reason}}")]),
        12, 8)
    lay.add(timeseries("Next-boot kernel across the fleet", "How many hosts boot each kernel next.", [
        target(f"sum by (kernel) (job_kernel:dkms_next_boot_kernel_info:count{{{FLEET}}})",
               legend="{{kernel}}")], stack=True), 12, 8)
    lay.add(timeseries("Pending reboots", "Hosts with /run/reboot-required.", [
        target(f"sum(job:dkms_hosts_reboot_required:count{{{FLEET}}})", legend="reboot pending")]), 12, 8)
    lay.add(timeseries("$instance: modules not working, by kernel", "Needed modules that do not work.", [
        target(f"count by (kernel) (dkms_module_working{{{HOST}}} == 0)", legend="{{kernel}}")]), 12, 8)
    lay.add(timeseries("$instance: collector duration", "Time each collector takes per scrape.", [
        target(f"dkms_scrape_collector_duration_seconds{{{HOST}}}", legend="{{collector}}")], unit="s"), 12, 8)


def variables(cfg: Config) -> list[dict]:
    jobs = f"label_values(dkms_exporter_build_info{{{cfg.selector}}}, job)"
    instances = 'label_values(dkms_exporter_build_info{job=~"$job"}, instance)'
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"name": "job", "label": "Job", "type": "query", "datasource": DS,
         "query": {"query": jobs, "refId": "job"}, "definition": jobs, "refresh": 2, "sort": 1,
         "includeAll": True, "multi": True, "allValue": ".+", "current": {}, "hide": 0, "options": [],
         "regex": ""},
        {"name": "instance", "label": "Host", "type": "query", "datasource": DS,
         "query": {"query": instances, "refId": "instance"}, "definition": instances, "refresh": 2,
         "sort": 1, "includeAll": False, "multi": False, "current": {}, "hide": 0, "options": [],
         "regex": ""},
    ]


def dashboard(cfg: Config) -> dict:
    lay = Layout()
    fleet(lay)
    host(lay)
    trends(lay)
    return {
        "uid": UID,
        "title": "DKMS: next-boot readiness",
        "description": "Will every out-of-tree kernel module work on the kernel each host boots next? "
                       "Generated by alerts/generate.py from dashboards/dashboard.py: do not edit.",
        "tags": ["dkms-exporter", "kernel"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "",
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "5m",
        "schemaVersion": 39,
        "version": 1,
        "links": [{"title": "Runbooks", "type": "link", "icon": "doc", "url": cfg.dashboard_runbook_url,
                   "targetBlank": True}],
        "annotations": {"list": []},
        "templating": {"list": variables(cfg)},
        "panels": lay.panels,
    }
