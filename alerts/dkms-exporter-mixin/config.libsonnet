// The one place to adapt the rules and the dashboard to a Prometheus setup.  Override any
// field the way kube-prometheus users do: (import 'mixin.libsonnet') + { _config+:: { ... } }.
{
  _config+:: {
    // Label matchers that select dkms-exporter's series.  `serve` scraped as its own job:
    // job="dkms-exporter".  Textfile mode (metrics arrive through node_exporter): job="node",
    // or job=~"dkms-exporter|node" for a fleet that has both.
    dkmsSelector: 'job="dkms-exporter"',
    // Labels that identify one host across dkms-exporter's series (joins use them).
    hostLabels: ['job', 'instance'],

    // Where each alert's runbook_url points (then #alertname, lowercase).  A Prometheus
    // template: by default the /runbooks page of the very exporter the alert is about
    // (`serve` renders docs/runbooks.md there), so a default install opens it with nothing
    // else deployed.  With TLS (--web.config.file) make it https://; in textfile mode (the
    // instance is node_exporter, which serves no runbooks) or for a published copy, set a
    // fixed URL, e.g. 'https://docs.internal/dkms-exporter/runbooks.md' (GitHub's heading
    // anchors match).
    runbookUrlBase: 'http://{{ $labels.instance }}/runbooks',
    // The host's own report (the exporter's landing page `/`: verdicts, reasons and the fix
    // commands in the distribution's words).  '' leaves the report_url annotation and the
    // dashboard's host links out (textfile mode: nothing serves it).
    reportUrl: 'http://{{ $labels.instance }}/',

    // How long DKMS and initramfs-tools may take after a kernel install before a boot target
    // without working modules pages: a large DKMS build (nvidia, zfs) takes minutes.
    readinessFor: '30m',
    textfileStaleSeconds: 2 * 3600,  // textfile timer + margin
    rebootPendingDays: 7,
    kernelHoldFor: '7d',
    bootFreeBytesMin: 150 * 1024 * 1024,  // a Debian kernel + initrd needs ~100 MiB

    // The `severity` label each level becomes (e.g. { critical: 'page', warning: 'ticket' }).
    severities: { critical: 'critical', warning: 'warning', info: 'info' },

    // Which alert owns which problem reason (shared with alerts/runbooks.py).
    reasons: import 'reasons.json',

    dashboardUid: 'dkms-exporter',
    dashboardTags: ['dkms-exporter', 'kernel'],

    // Test mode only: every `for:` becomes this (the live end-to-end test uses seconds).
    forOverride: null,
  },
}
