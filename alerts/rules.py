"""The alerting and recording rules, as data, built from one Config.

Monitoring-mixin style: every alert is CamelCase with the `Dkms` prefix, carries `severity`
(critical | warning | info) and `summary` (static), `description` (templated) and
`runbook_url` (a docs/runbooks.md anchor).  Alerts whose name starts with `DkmsNextBoot`
are the reboot gate: each says "do not reboot this host now" (kured filters on the prefix).

Alert expressions use raw series, never the recording rules, so they work when only the
alert group is loaded and never depend on the evaluation order of two groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import (INITRAMFS_REASONS, KERNEL_BREAKING_REASONS, NON_BLOCKING_REASONS, SECURE_BOOT_REASONS,
                     Config)

REBOOT_GATE_PREFIX = "DkmsNextBoot"
# Label matchers, kept out of f-string expressions (no backslashes there before Python 3.12).
BOOT_TARGET = 'boot_target="true"'
NEWEST = 'newest="true"'
HEADERS_MISSING = 'reason="headers_missing"'
KERNEL_KIND = 'kind=~"kernel.*"'
BLOCKING = 'reason!~"' + "|".join(NON_BLOCKING_REASONS) + '"'
NON_BLOCKING = 'reason=~"' + "|".join(NON_BLOCKING_REASONS) + '"'


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)

    # The alert's `instance` serves no runbooks (it is down, absent, or not a dkms-exporter):
    # its runbook_url names another exporter Prometheus scrapes (alerts/config.py: runbook_base).
    elsewhere: bool = False

    @property
    def has_instance(self) -> bool:
        """absent() returns no `instance` label."""
        return not self.expr.startswith("absent(")

    def anchor(self) -> str:
        return self.name.lower()

    def to_rule(self, cfg: Config) -> dict:
        rule: dict = {"alert": self.name, "expr": self.expr}
        duration = cfg.for_override if cfg.for_override is not None else self.for_
        if duration not in ("", "0s"):
            rule["for"] = duration
        rule["labels"] = {"severity": self.severity, **self.labels}
        rule["annotations"] = {"summary": self.summary, "description": self.description,
                               "runbook_url": f"{cfg.runbook_base(not self.elsewhere)}#{self.anchor()}"}
        return rule


@dataclass(frozen=True)
class Record:
    record: str
    expr: str

    def to_rule(self) -> dict:
        return {"record": self.record, "expr": self.expr}


def _alternatives(values: tuple[str, ...]) -> str:
    return "|".join(values)


# --- the reboot gate ------------------------------------------------------------------

def boot_target_problems(cfg: Config, reason_matcher: str) -> str:
    """Each reason a module needed by a boot target (next boot or newest kernel) fails."""
    return (f"{cfg.sel('dkms_module_problem', reason_matcher)} == 1\n"
            f"and on ({cfg.on_host}, kernel) {cfg.sel('dkms_kernel_info', BOOT_TARGET)} == 1")


def boot_target_kernel_problems(cfg: Config) -> str:
    reasons = f'reason=~"{_alternatives(KERNEL_BREAKING_REASONS)}"'
    return (f"{cfg.sel('dkms_kernel_problem', reasons)} == 1\n"
            f"and on ({cfg.on_host}, kernel) {cfg.sel('dkms_kernel_info', BOOT_TARGET)} == 1")


def _urgent(cfg: Config, problems: str) -> str:
    """Problems that page: a reboot is already pending, or the module is needed in early
    boot (storage, root filesystem: the host may not come back at all)."""
    return (f"{_paren(problems)}\nand on ({cfg.on_host}) {cfg.sel('dkms_reboot_required')} == 1\n"
            f"or\n{_paren(problems)}\n"
            f"and on ({cfg.on_host}, kernel, module) {cfg.sel('dkms_module_early_boot')} == 1")


def unless_firing(name: str, severity: str, on: str) -> str:
    """The lower-severity variant of an alert yields to the higher one only once that one fires.

    Were it `unless <the higher one's condition>`, a problem that escalates (a reboot becomes
    pending on a host whose next kernel was already broken) would resolve the warning at once
    and page nothing for the critical one's whole `for:`.  Rules of a group run in order, so
    the higher variant, listed first, has written its ALERTS series when this one runs."""
    return f'unless on ({on}) ALERTS{{alertname="{name}", alertstate="firing", severity="{severity}"}}'


def _module_gate(cfg: Config, name: str, reason_matcher: str, summary: str, description: str) -> list[Alert]:
    problems = boot_target_problems(cfg, reason_matcher)
    warning = f"{_paren(problems)}\n{unless_firing(name, 'critical', f'{cfg.on_host}, kernel, module, reason')}"
    return [Alert(name, _urgent(cfg, problems), cfg.readiness_for, "critical", summary, description),
            Alert(name, warning, cfg.readiness_for, "warning", summary, description)]


_FROM_DKMS = "{{ if $labels.dkms }} (DKMS {{ $labels.dkms }}){{ end }}"
_CHECK = "Run `dkms-exporter check` on the host: it prints the command that fixes it."


def reboot_gate(cfg: Config) -> list[Alert]:
    own = _alternatives(SECURE_BOOT_REASONS + INITRAMFS_REASONS + NON_BLOCKING_REASONS)
    alerts = _module_gate(
        cfg, "DkmsNextBootKernelNotReady", f'reason!~"{own}"',
        "A kernel this host will boot lacks a working out-of-tree module.",
        "{{ $labels.instance }}: module {{ $labels.module }}" + _FROM_DKMS + " will not work on kernel "
        "{{ $labels.kernel }}, which the host boots next (or is its newest kernel): {{ $labels.reason }}. "
        "Rebooting now leaves the host without it. " + _CHECK)
    alerts += _module_gate(
        cfg, "DkmsNextBootModuleRejectedBySecureBoot", f'reason=~"{_alternatives(SECURE_BOOT_REASONS)}"',
        "A kernel this host will boot enforces module signatures and will refuse a module.",
        "{{ $labels.instance }}: kernel {{ $labels.kernel }} enforces module signatures and module "
        "{{ $labels.module }}" + _FROM_DKMS + " is "
        "{{ if eq $labels.reason \"unsigned\" }}not signed{{ else }}signed by a key the kernel does not "
        "trust{{ end }} ({{ $labels.reason }}): it will not load after the reboot. "
        "Sign it with an enrolled key (DKMS signs with its MOK key) or enrol the key.")
    alerts += _module_gate(
        cfg, "DkmsNextBootInitramfsIncomplete", f'reason=~"{_alternatives(INITRAMFS_REASONS)}"',
        "An early-boot module is missing from, or newer than, the next kernel's initramfs.",
        "{{ $labels.instance }}: module {{ $labels.module }}" + _FROM_DKMS + " is needed in early boot, "
        "but the initramfs of kernel {{ $labels.kernel }} "
        "{{ if eq $labels.reason \"initramfs_stale\" }}is older than the module file{{ else }}does not "
        "contain it{{ end }} ({{ $labels.reason }}). Run `update-initramfs -u -k {{ $labels.kernel }}`.")
    alerts.append(Alert(
        "DkmsNextBootInitramfsUnusable", boot_target_kernel_problems(cfg), cfg.readiness_for, "critical",
        "A kernel this host will boot has no usable initramfs.",
        "{{ $labels.instance }}: kernel {{ $labels.kernel }} is a boot target but its initramfs "
        "{{ if eq $labels.reason \"initramfs_unreadable\" }}is truncated or corrupt{{ else }}does not exist, "
        "while the running kernel has one{{ end }} ({{ $labels.reason }}): the host may not find its root "
        "filesystem. Run `update-initramfs -c -k {{ $labels.kernel }}`."))
    explained = _paren(f"{_paren(boot_target_problems(cfg, BLOCKING))}\nor\n"
                       f"{_paren(boot_target_kernel_problems(cfg))}")
    alerts.append(Alert(
        "DkmsNextBootVerdictNotReady",
        f"{cfg.sel('dkms_next_boot_ready')} == 0\nunless on ({cfg.on_host})\n{explained}",
        cfg.readiness_for, "warning",
        "The exporter says the next boot is not ready, and no module or kernel problem explains it.",
        "{{ $labels.instance }}: dkms_next_boot_ready is 0 but no boot-target module or kernel problem "
        "is reported (for example the bootloader's default entry boots a kernel that is not installed). "
        + _CHECK))
    alerts.append(Alert(
        "DkmsNextBootReadinessUnknown", f"{cfg.sel('dkms_next_boot_readiness_unknown')} == 1",
        cfg.readiness_for, "warning",
        "The exporter cannot decide whether the next boot is ready.",
        "{{ $labels.instance }}: readiness of the next boot is undecidable (a collector it depends on "
        "failed or is disabled, or no kernel is installed). Treat the host as not safe to reboot. "
        + _CHECK))
    return alerts


# --- the host -------------------------------------------------------------------------

def host_alerts(cfg: Config) -> list[Alert]:
    on = cfg.on_host
    next_boot_older = _paren(f"{cfg.sel('dkms_next_boot_kernel_info')}\n"
                             f"and on ({on}) {cfg.sel('dkms_next_boot_is_newest')} == 0")
    reboot = cfg.sel("dkms_reboot_required")
    older_summary = "The bootloader will not start the newest installed kernel."
    older_description = ("{{ $labels.instance }}: the next boot starts kernel {{ $labels.kernel }} "
                         "({{ $labels.loader }}), not the newest installed one: GRUB_DEFAULT or a saved "
                         "entry pins it, so a reboot will not bring the newest kernel's fixes.")
    return [
        Alert("DkmsOlderKernelBootsNext", f"{next_boot_older}\nand on ({on}) {reboot} == 1",
              "1h", "warning", older_summary, older_description),
        Alert("DkmsOlderKernelBootsNext",
              f"{next_boot_older}\n{unless_firing('DkmsOlderKernelBootsNext', 'warning', on)}",
              "1h", "info", older_summary, older_description),
        # as long as the reboot gate waits: while a boot target's build failure is the same incident
        # as its gate alert, Alertmanager inhibits it, which only works if it does not fire first
        Alert("DkmsModuleBuildFailed", f"{cfg.sel('dkms_build_failed')} == 1", cfg.readiness_for, "warning",
              "A DKMS module failed to build for an installed kernel.",
              "{{ $labels.instance }}: DKMS could not build {{ $labels.module }}/{{ $labels.version }} for "
              "kernel {{ $labels.kernel }} ({{ $labels.cause }}); make.log is in "
              "/var/lib/dkms/{{ $labels.module }}/{{ $labels.version }}/build/."),
        Alert("DkmsModuleBlacklisted", boot_target_problems(cfg, NON_BLOCKING), "1h", "info",
              "A module a boot target needs is blacklisted in modprobe.d.",
              "{{ $labels.instance }}: module {{ $labels.module }}" + _FROM_DKMS + " is needed on kernel "
              "{{ $labels.kernel }} but modprobe.d blacklists it: it loads only when asked for by name, "
              "not automatically for its device."),
        Alert("DkmsModuleUnregistered", f"{cfg.sel('dkms_module_unregistered')} == 1", "1h", "warning",
              "A DKMS module's source is installed but DKMS no longer knows it.",
              "{{ $labels.instance }}: /usr/src/{{ $labels.module }}-{{ $labels.version }} has a dkms.conf but "
              "DKMS has no {{ $labels.module }}/{{ $labels.version }}: it will not be built for any new "
              "kernel. Run `dkms add {{ $labels.module }}/{{ $labels.version }}` and `dkms autoinstall`."),
        Alert("DkmsSigningKeyNotEnrolled",
              f"{cfg.sel('dkms_signing_certificate_enrolled')} == 0\n"
              f"and on ({on}) {cfg.sel('dkms_secure_boot_enabled')} == 1",
              "1h", "warning",
              "Secure Boot is on but the key DKMS signs modules with is not enrolled.",
              "{{ $labels.instance }}: Secure Boot is enabled and {{ $labels.path }} ({{ $labels.signer }}, "
              "{{ $labels.key_id }}) is not enrolled in MOK or db: every module DKMS builds next, for the "
              "next kernel too, will be refused. Run `mokutil --import {{ $labels.path }}` and confirm in "
              "MokManager on the next boot."),
        Alert("DkmsKernelHeadersMissing",
              f"{cfg.sel('dkms_kernel_problem', HEADERS_MISSING)} == 1\n"
              f"  and on ({on}, kernel) {cfg.sel('dkms_kernel_info', NEWEST)} == 1\n"
              f"  and on ({on}) count by ({on}) ({cfg.sel('dkms_module_state')}) > 0",
              cfg.readiness_for, "warning",
              "The newest kernel has no headers, so DKMS cannot build modules for it.",
              "{{ $labels.instance }}: kernel {{ $labels.kernel }} is the newest installed kernel but "
              "/lib/modules/{{ $labels.kernel }}/build is missing: DKMS cannot build for it. "
              "Install linux-headers-{{ $labels.kernel }} (is a headers package held?)."),
        Alert("DkmsNoRollbackKernel",
              f"{cfg.sel('dkms_rollback_kernels')} == 0\n  and on ({on}) {reboot} == 1",
              "1h", "warning",
              "A reboot is pending and no other installed kernel is ready to fall back to.",
              "{{ $labels.instance }}: a reboot is pending and no installed kernel besides the boot "
              "targets has all its modules working: if the next kernel fails there is nothing to "
              "select in the boot menu."),
        Alert("DkmsKernelPackageHeld", f"{cfg.sel('dkms_package_held', KERNEL_KIND)} == 1",
              cfg.kernel_hold_for, "info",
              "A kernel package has been on hold for a long time.",
              "{{ $labels.instance }}: {{ $labels.package }} ({{ $labels.kind }}) has been held "
              "(apt-mark hold) for more than " + cfg.kernel_hold_for + ": the host gets no kernel "
              "security updates. Unhold it once its modules build for the new kernel."),
        Alert("DkmsPackagesHalfConfigured", f"{cfg.sel('dkms_packages_unconfigured')} > 0", "1h", "warning",
              "Packages are left unpacked or half-configured.",
              "{{ $labels.instance }}: `dpkg --audit` lists {{ $value }} package(s); a kernel package "
              "that is not configured has not run its DKMS and initramfs hooks. Run `dpkg --configure -a`."),
        Alert("DkmsRebootPendingTooLong",
              f"time() - {cfg.sel('dkms_reboot_required_since_timestamp_seconds')}"
              f" > {cfg.reboot_pending_days * 86400}\n  and on ({on}) {reboot} == 1",
              "1h", "warning",
              f"A reboot has been pending for more than {cfg.reboot_pending_days} days.",
              "{{ $labels.instance }}: /run/reboot-required has existed for {{ $value | humanizeDuration }}: "
              "updates that need a reboot (a new kernel) are not active."),
        Alert("DkmsBootFilesystemLow", f"{cfg.sel('dkms_boot_free_bytes')} < {cfg.boot_free_bytes_min}",
              "30m", "warning",
              "The filesystem holding /boot is nearly full.",
              "{{ $labels.instance }}: {{ $value | humanize1024 }}B free for /boot: the next kernel's "
              "image and initramfs may not fit, which leaves its package half-configured."),
    ]


# --- the exporter ---------------------------------------------------------------------

def exporter_alerts(cfg: Config) -> list[Alert]:
    on = cfg.on_host
    return [
        Alert("DkmsExporterDown", f"{cfg.sel('up')} == 0", "10m", "warning",
              "Prometheus cannot scrape a dkms-exporter target.",
              "{{ $labels.instance }} ({{ $labels.job }}) is down: nobody will be warned before a reboot "
              "into a kernel without its modules.", elsewhere=True),
        Alert("DkmsExporterAbsent", f"absent({cfg.sel('dkms_exporter_build_info')})", "15m", "warning",
              "No dkms-exporter metrics reach Prometheus at all.",
              "No series matches dkms_exporter_build_info{" + cfg.selector.replace('"', "'") + "}: the "
              "exporter is not deployed, not discovered, or the selector in alerts/config.py is wrong.", elsewhere=True),
        Alert("DkmsMetricsMissing",
              f"{cfg.sel('up')} == 1\nunless on ({on}) {cfg.sel('dkms_exporter_build_info')}",
              "15m", "warning",
              "A target is up but serves no dkms-exporter metrics.",
              "{{ $labels.instance }} ({{ $labels.job }}) answers scrapes without dkms metrics (textfile "
              "mode: the .prom file is missing or unreadable by node_exporter).", elsewhere=True),
        Alert("DkmsCollectorFailing", f"{cfg.sel('dkms_scrape_collector_success')} == 0", "15m", "warning",
              "A dkms-exporter collector keeps failing.",
              "{{ $labels.instance }}: collector {{ $labels.collector }} has failed for 15 minutes: files "
              "it needs cannot be read or parsed (the exporter's log names them)."),
        Alert("DkmsTextfileStale",
              f"time() - {cfg.sel('dkms_textfile_last_run_timestamp_seconds')} > {cfg.textfile_stale_seconds}",
              "15m", "warning",
              "The dkms-exporter textfile is not being refreshed.",
              "{{ $labels.instance }}: dkms.prom was last written {{ $value | humanizeDuration }} ago: the "
              "textfile timer or its hooks are not running, and the readiness shown is old."),
    ]


# --- recording rules for the fleet ----------------------------------------------------

def fleet_records(cfg: Config) -> list[Record]:
    """Per-job fleet aggregates: what a 10,000-host dashboard reads instead of raw series."""
    on = cfg.on_host
    modules = boot_target_problems(cfg, 'reason!=""')
    kernels = boot_target_kernel_problems(cfg)
    any_problem = f"{_paren(modules)}\nor\n{_paren(kernels)}"

    def hosts(by: str, what: str) -> str:
        return f"count by (job, {by}) (\n  count by ({on}, {by}) {_paren(what, 2)}\n)"

    def count(expr: str) -> str:
        return f"count by (job) ({expr})"

    return [
        Record("job:dkms_hosts:count", count(cfg.sel("dkms_exporter_build_info"))),
        Record("job:dkms_hosts_ready:count", count(f"{cfg.sel('dkms_next_boot_ready')} == 1")),
        Record("job:dkms_hosts_not_ready:count", count(f"{cfg.sel('dkms_next_boot_ready')} == 0")),
        Record("job:dkms_hosts_readiness_unknown:count",
               count(f"{cfg.sel('dkms_next_boot_readiness_unknown')} == 1")),
        Record("job:dkms_hosts_reboot_required:count", count(f"{cfg.sel('dkms_reboot_required')} == 1")),
        Record("job:dkms_hosts_secure_boot_enabled:count", count(f"{cfg.sel('dkms_secure_boot_enabled')} == 1")),
        Record("job_reason:dkms_hosts_not_ready:count", hosts("reason", any_problem)),
        Record("job_kernel:dkms_hosts_not_ready:count", hosts("kernel", any_problem)),
        Record("job_module:dkms_hosts_not_ready:count", hosts("module", modules)),
        Record("job_kernel:dkms_next_boot_kernel_info:count",
               f"count by (job, kernel) ({cfg.sel('dkms_next_boot_kernel_info')})"),
    ]


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def _paren(expr: str, outer: int = 0) -> str:
    """`(expr)` over several lines, the body indented two more than the parentheses."""
    return "(\n" + _indent(expr, outer + 2) + "\n" + " " * outer + ")"


def alert_groups(cfg: Config) -> list[dict]:
    return [
        {"name": "dkms-exporter.reboot-gate", "rules": [a.to_rule(cfg) for a in reboot_gate(cfg)]},
        {"name": "dkms-exporter.host", "rules": [a.to_rule(cfg) for a in host_alerts(cfg)]},
        {"name": "dkms-exporter.exporter", "rules": [a.to_rule(cfg) for a in exporter_alerts(cfg)]},
    ]


def record_groups(cfg: Config) -> list[dict]:
    return [{"name": "dkms-exporter.fleet", "rules": [r.to_rule() for r in fleet_records(cfg)]}]


def all_alerts(cfg: Config) -> list[Alert]:
    return reboot_gate(cfg) + host_alerts(cfg) + exporter_alerts(cfg)
