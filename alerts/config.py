"""Facts about the monitoring mixin that Python code (the runbooks page, the tests) needs too.

The rules and the dashboard themselves are built by the jsonnet mixin only
(alerts/dkms-exporter-mixin/, adapted through its `_config`); nothing here builds them.  The
reason split is read from the mixin's own reasons.json, so the mixin and the /runbooks page
cannot disagree about which alert owns a reason.
"""

from __future__ import annotations

import json
from pathlib import Path

MIXIN_DIR = Path(__file__).resolve().parent / "dkms-exporter-mixin"
_REASONS = json.loads((MIXIN_DIR / "reasons.json").read_text())

# Problem reasons (the `reason` label of dkms_module_problem / dkms_kernel_problem) that have
# an alert of their own; every other module reason goes to DkmsNextBootKernelNotReady.
SECURE_BOOT_REASONS: tuple[str, ...] = tuple(_REASONS["secureBoot"])
INITRAMFS_REASONS: tuple[str, ...] = tuple(_REASONS["initramfs"])
# Module reasons that are warnings: the module still works (a blacklisted module loads when
# asked for), so they never make a host "not ready" and never hold a reboot.
NON_BLOCKING_REASONS: tuple[str, ...] = tuple(_REASONS["nonBlocking"])
# Kernel-level reasons that make a kernel not ready (headers_missing does not: it only stops
# DKMS from rebuilding).
KERNEL_BREAKING_REASONS: tuple[str, ...] = tuple(_REASONS["kernelBreaking"])
# The kernel-level reason of DkmsNextBootLoadedModuleMissing (dkms_kernel_loaded_module_missing
# names the modules; severity="error" ones page).
LOADED_MODULE_REASONS: tuple[str, ...] = tuple(_REASONS["loadedModule"])
# Kernel-level reasons with no alert of their own: DkmsNextBootVerdictNotReady pages when they
# make the next boot unready.
VERDICT_ONLY_REASONS: tuple[str, ...] = tuple(_REASONS["verdictOnly"])

# Alerts whose name starts with this are the reboot gate (kured filters on it).
REBOOT_GATE_PREFIX = "DkmsNextBoot"

# The Prometheus templates the default runbook_url / report_url use for the alert's own
# exporter and, for alerts whose instance serves nothing, for any exporter Prometheus scrapes
# (alerts.libsonnet defines them; the tests fill them in to follow the links).
INSTANCE = "{{ $labels.instance }}"
ANY_EXPORTER_RECORD = "dkms:exporter_build_info:any"
ANY_EXPORTER_INSTANCE = '{{ with query "' + ANY_EXPORTER_RECORD + '" }}{{ . | first | label "instance" }}{{ end }}'

# Metric names the rules or the dashboard may use before docs/metrics.md lists them (name ->
# the issue adding them), so rules can be written ahead of the exporter. The tests accept a
# name here only while docs/metrics.md lacks it (the live dashboard test marks its panels
# xfail until the exporter serves it); once documented it is checked like every other name
# and its entry goes.  Empty: everything used is served.
PENDING_METRICS: dict[str, str] = {}
