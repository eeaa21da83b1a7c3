"""The one place to adapt the bundled rules and dashboard to a Prometheus setup.

Everything the generated files depend on is here: which series are dkms-exporter's (the
selector), which labels identify a host, thresholds, the runbook address.  Change a value,
run `python alerts/generate.py`, commit the regenerated files (a test fails on drift).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Metric names the rules or the dashboard may use before docs/metrics.md lists them (name ->
# the issue adding them), so rules can be written ahead of the exporter. The tests accept a
# name here only while docs/metrics.md lacks it (the live dashboard test marks its panels
# xfail until the exporter serves it); once documented it is checked like every other name
# and its entry goes.  Empty: everything used is served.
PENDING_METRICS: dict[str, str] = {}

# Problem reasons (the `reason` label of dkms_module_problem / dkms_kernel_problem) that
# have an alert of their own; every other module reason goes to DkmsNextBootKernelNotReady.
SECURE_BOOT_REASONS = ("unsigned", "untrusted_key")
INITRAMFS_REASONS = ("missing_from_initramfs", "initramfs_stale")
# Module reasons that are warnings: the module still works (a blacklisted module loads when
# asked for), so they never make a host "not ready" and never hold a reboot.
NON_BLOCKING_REASONS = ("blacklisted",)
# Kernel-level reasons that make a kernel not ready (headers_missing does not: it only stops
# DKMS from rebuilding).
KERNEL_BREAKING_REASONS = ("initramfs_missing", "initramfs_unreadable")


INSTANCE = "{{ $labels.instance }}"
ANY_EXPORTER_INSTANCE = '{{ with query "dkms_exporter_build_info" }}{{ . | first | label "instance" }}{{ end }}'


@dataclass(frozen=True)
class Config:
    # Label matchers that select dkms-exporter's series.  `serve` scraped as its own job:
    # job="dkms-exporter".  Textfile mode (metrics arrive through node_exporter):
    # job="node", or job=~"dkms-exporter|node" for a fleet that has both.
    selector: str = 'job="dkms-exporter"'
    # Labels that identify one host across dkms-exporter's series (joins use them).
    host_labels: tuple[str, ...] = ("job", "instance")
    # Where each alert's runbook_url points (then #alertname, lowercase).  A Prometheus template:
    # by default the /runbooks page of the very exporter the alert is about (`serve` renders
    # docs/runbooks.md there), so a default install can open it with nothing else deployed.
    # With TLS (--web.config.file) make it https://; in textfile mode (the instance is
    # node_exporter, which serves no runbooks) or to use a published copy, set a fixed URL,
    # e.g. "https://docs.internal/dkms-exporter/runbooks.md" (GitHub's heading anchors match).
    runbook_url_base: str = "http://{{ $labels.instance }}/runbooks"
    # How long DKMS and initramfs-tools may take after a kernel install before a boot
    # target without working modules pages: a large DKMS build (nvidia, zfs) takes minutes.
    readiness_for: str = "30m"
    textfile_stale_seconds: int = 2 * 3600       # textfile timer + margin
    reboot_pending_days: int = 7
    kernel_hold_for: str = "7d"
    boot_free_bytes_min: int = 150 * 1024 * 1024  # a Debian kernel + initrd needs ~100 MiB
    # Test mode only: every `for:` becomes this (the live end-to-end test uses seconds).
    for_override: str | None = None

    def runbook_base(self, own_instance: bool = True) -> str:
        """The base for one alert.  An alert whose instance serves no runbooks (the exporter is
        down, absent: no instance at all, or the target is not a dkms-exporter) links to those
        of any dkms-exporter Prometheus does scrape (no selector: it finds one even when the
        selector is what is wrong)."""
        if own_instance:
            return self.runbook_url_base
        return self.runbook_url_base.replace(INSTANCE, ANY_EXPORTER_INSTANCE)

    @property
    def dashboard_runbook_url(self) -> str:
        """The dashboard's link: the selected host's exporter (Grafana's `$instance`)."""
        return self.runbook_url_base.replace(INSTANCE, "${instance}")

    @property
    def on_host(self) -> str:
        return ", ".join(self.host_labels)

    def sel(self, metric: str, *matchers: str) -> str:
        """`metric{<selector>, matchers...}`."""
        return f"{metric}{{{', '.join((self.selector, *matchers))}}}"

    def testing(self, for_override: str) -> "Config":
        return replace(self, for_override=for_override)


DEFAULT = Config()
