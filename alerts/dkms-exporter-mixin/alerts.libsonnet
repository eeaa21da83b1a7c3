// The alerts.  Monitoring-mixin style: every alert is CamelCase with the `Dkms` prefix, carries
// `severity` (critical | warning | info, renamed by _config.severities), `summary` (static),
// `description` (templated) and `runbook_url` (a docs/runbooks.md anchor).  Alerts whose name
// starts with `DkmsNextBoot` are the reboot gate: each says "do not reboot this host now"
// (kured filters on the prefix).
//
// The boot-target join (a problem on a kernel that is a boot target) is computed once per
// evaluation, by the recording rules at the top of the reboot-gate group (BOOT_TARGET_RECORDS):
// at 10,000 hosts evaluating it in every rule that needs it took minutes (docs/performance.md,
// "Fleet scale").  Prometheus runs the rules of one group in order at one timestamp, so the gate
// alerts below them read this evaluation's results; rules of other groups (host, the fleet
// records, the dashboard) read the latest, at most one evaluation interval old.  The records
// live in this file, so the alerts still need nothing but alerts/dkms-alerts.yaml; no alert
// reads the fleet recording rules of rules.libsonnet.
local q = import 'lib/promql.libsonnet';

local INSTANCE = '{{ $labels.instance }}';
// An alert whose instance serves no runbooks (it is down, absent: no instance at all, or the
// target is not a dkms-exporter) links to those of any dkms-exporter Prometheus does scrape
// (no selector: it finds one even when the selector is what is wrong).  The template reads one
// recorded series (ANY_RECORD, the first rule of the exporter group), not the metric itself: a
// template's query runs for every active alert on every evaluation, and over every exporter's
// series that cost hosts x alerts (at 10,000 hosts with 100 down, DkmsExporterDown took 6.5 s an
// evaluation, topk(1, ...) in the template as much; docs/performance.md, "Fleet scale").
local ANY_RECORD = 'dkms:exporter_build_info:any';
local ANY_EXPORTER_INSTANCE = '{{ with query "%s" }}{{ . | first | label "instance" }}{{ end }}' % ANY_RECORD;

local BOOT_TARGET = 'boot_target="true"';
// The boot-target records (level:metric:operations): each problem of a module a boot target needs
// (every reason, labels as dkms_module_problem's), each problem of a boot-target kernel, and the
// module problems that page (a reboot pending, or the module needed in early boot).
local MODULE_RECORD = 'dkms:module_problem:boot_target';
local KERNEL_RECORD = 'dkms:kernel_problem:boot_target';
local URGENT_RECORD = 'dkms:module_problem:boot_target_urgent';
local NEWEST = 'newest="true"';
local HEADERS_MISSING = 'reason="headers_missing"';
local KERNEL_KIND = 'kind=~"kernel.*"';
local FROM_DKMS = '{{ if $labels.dkms }} (DKMS {{ $labels.dkms }}){{ end }}';
local CHECK = 'Run `dkms-exporter check` on the host: it prints the command that fixes it.';

{
  local cfg = $._config,
  local sel(metric, matchers=[]) = q.sel(cfg.dkmsSelector, metric, matchers),
  local on = std.join(', ', cfg.hostLabels),
  local reasons = cfg.reasons,
  local severity(level) = cfg.severities[level],
  // Where the exact, distribution-specific command is (report_url is that page).
  local REPORT = if cfg.reportUrl != '' then '`dkms-exporter check` on the host, or its report page (report_url), '
  else '`dkms-exporter check` on the host ',

  // Annotations: `summary` (static), `description` (what is wrong, naming the module, kernel and
  // reason where the alert has them), `fix` (one line: the command, or where to find it),
  // `runbook_url`; `report_url` (the host's own report, with the fix command in its
  // distribution's words) unless the instance serves nothing (`elsewhere`: down, absent, not a
  // dkms-exporter) or _config.reportUrl is ''; `reason_url` (the reason's entry on the runbooks
  // page) for alerts that carry a `reason` label.
  local alert(name, expr, for_, level, summary, description, fix, elsewhere=false, reason=false) =
    local duration = if cfg.forOverride != null then cfg.forOverride else for_;
    local base = if elsewhere then std.strReplace(cfg.runbookUrlBase, INSTANCE, ANY_EXPORTER_INSTANCE)
    else cfg.runbookUrlBase;
    {
      alert: name,
      expr: expr,
      [if duration != '' && duration != '0s' then 'for']: duration,
      labels: { severity: severity(level) },
      annotations: {
        summary: summary,
        description: description,
        fix: fix,
        runbook_url: base + '#' + std.asciiLower(name),
        [if !elsewhere && cfg.reportUrl != '' then 'report_url']: cfg.reportUrl,
        [if reason then 'reason_url']: base + '#reason-{{ $labels.reason }}',
      },
    },

  // --- the reboot gate ----------------------------------------------------------------

  // Each reason a module needed by a boot target (next boot or newest kernel) fails, and each
  // problem of a boot-target kernel: recorded once per evaluation (the records below).
  local bootTargetModuleJoin =
    sel('dkms_module_problem') + ' == 1\n'
    + 'and on (' + on + ', kernel) ' + sel('dkms_kernel_info', [BOOT_TARGET]) + ' == 1',
  local bootTargetKernelJoin =
    sel('dkms_kernel_problem') + ' == 1\n'
    + 'and on (' + on + ', kernel) ' + sel('dkms_kernel_info', [BOOT_TARGET]) + ' == 1',

  // Problems that page: a reboot is already pending, or the module is needed in early boot
  // (storage, root filesystem: the host may not come back at all).
  local urgentJoin =
    q.paren(sel(MODULE_RECORD)) + '\nand on (' + on + ') ' + sel('dkms_reboot_required') + ' == 1\n'
    + 'or\n' + q.paren(sel(MODULE_RECORD)) + '\n'
    + 'and on (' + on + ', kernel, module) ' + sel('dkms_module_early_boot') + ' == 1',

  local bootTargetRecords = [
    { record: MODULE_RECORD, expr: bootTargetModuleJoin },
    { record: KERNEL_RECORD, expr: bootTargetKernelJoin },
    { record: URGENT_RECORD, expr: urgentJoin },
  ],

  local bootTargetProblems(reasonMatcher) = sel(MODULE_RECORD, [reasonMatcher]),
  local bootTargetKernelProblems =
    sel(KERNEL_RECORD, ['reason=~"' + q.alternatives(reasons.kernelBreaking) + '"']),
  local urgent(reasonMatcher) = sel(URGENT_RECORD, [reasonMatcher]),

  // A module the host loads at every boot that a boot-target kernel lacks (severity="error";
  // a "warning" one was loaded by hand or hotplug).  The kernel-level problem says the kernel
  // has such a module, the per-module series which; the metric's own `severity` goes, so the
  // alert's is the only one.
  local loadedModuleMissing =
    'max without (severity) (\n  ' + sel('dkms_kernel_loaded_module_missing', ['severity="error"']) + ' == 1\n)\n'
    + 'and on (' + on + ', kernel) ' + sel(KERNEL_RECORD, ['reason=~"' + q.alternatives(reasons.loadedModule) + '"']),

  // The lower-severity variant of an alert yields to the higher one only once that one fires.
  // Were it `unless <the higher one's condition>`, a problem that escalates (a reboot becomes
  // pending on a host whose next kernel was already broken) would resolve the warning at once
  // and page nothing for the critical one's whole `for:`.  Rules of a group run in order, so
  // the higher variant, listed first, has written its ALERTS series when this one runs.
  local unlessFiring(name, level, by) =
    'unless on (' + by + ') ALERTS{alertname="' + name + '", alertstate="firing", severity="' + severity(level) + '"}',

  local moduleGate(name, reasonMatcher, summary, description, fix) =
    local problems = bootTargetProblems(reasonMatcher);
    [
      alert(name, urgent(reasonMatcher), cfg.readinessFor, 'critical', summary, description, fix, reason=true),
      alert(name, problems + '\n' + unlessFiring(name, 'critical', on + ', kernel, module, reason'),
            cfg.readinessFor, 'warning', summary, description, fix, reason=true),
    ],

  local nonBlocking = q.alternatives(reasons.nonBlocking),
  local blocking = 'reason!~"' + nonBlocking + '"',

  local rebootGate =
    moduleGate(
      'DkmsNextBootKernelNotReady',
      'reason!~"' + q.alternatives(reasons.secureBoot + reasons.initramfs + reasons.nonBlocking) + '"',
      'A kernel this host will boot lacks a working out-of-tree module.',
      '{{ $labels.instance }}: module {{ $labels.module }}' + FROM_DKMS + ' will not work on kernel '
      + '{{ $labels.kernel }}, which the host boots next (or is its newest kernel): {{ $labels.reason }}. '
      + 'Rebooting now leaves the host without it. ' + CHECK,
      'Do not reboot yet: ' + REPORT + 'prints the command that makes {{ $labels.module }} work on {{ $labels.kernel }}.'
    )
    + moduleGate(
      'DkmsNextBootModuleRejectedBySecureBoot',
      'reason=~"' + q.alternatives(reasons.secureBoot) + '"',
      'A kernel this host will boot enforces module signatures and will refuse a module.',
      '{{ $labels.instance }}: kernel {{ $labels.kernel }} enforces module signatures and module '
      + '{{ $labels.module }}' + FROM_DKMS + ' is '
      + '{{ if eq $labels.reason "unsigned" }}not signed{{ else }}signed by a key the kernel does not '
      + 'trust{{ end }} ({{ $labels.reason }}): it will not load after the reboot. '
      + 'Sign it with an enrolled key (DKMS signs with its MOK key) or enrol the key.',
      'Sign {{ $labels.module }} for {{ $labels.kernel }} with an enrolled key, or enrol its key (`mokutil --import`); '
      + REPORT + 'names the key.'
    )
    + moduleGate(
      'DkmsNextBootInitramfsIncomplete',
      'reason=~"' + q.alternatives(reasons.initramfs) + '"',
      "An early-boot module is missing from, or newer than, the next kernel's initramfs.",
      '{{ $labels.instance }}: module {{ $labels.module }}' + FROM_DKMS + ' is needed in early boot, '
      + 'but the initramfs of kernel {{ $labels.kernel }} '
      + '{{ if eq $labels.reason "initramfs_stale" }}is older than the module file{{ else }}does not '
      + 'contain it{{ end }} ({{ $labels.reason }}). Run `update-initramfs -u -k {{ $labels.kernel }}`.',
      '`update-initramfs -u -k {{ $labels.kernel }}` (dracut: `dracut -f --kver {{ $labels.kernel }}`).'
    )
    + [
      alert(
        'DkmsNextBootInitramfsUnusable', bootTargetKernelProblems, cfg.readinessFor, 'critical',
        'A kernel this host will boot has no usable initramfs.',
        '{{ $labels.instance }}: kernel {{ $labels.kernel }} is a boot target but its initramfs '
        + '{{ if eq $labels.reason "initramfs_unreadable" }}is truncated or corrupt{{ else }}does not exist, '
        + 'while the running kernel has one{{ end }} ({{ $labels.reason }}): the host may not find its root '
        + 'filesystem. Run `update-initramfs -c -k {{ $labels.kernel }}`.',
        '`update-initramfs -c -k {{ $labels.kernel }}` (dracut: `dracut -f --kver {{ $labels.kernel }}`).',
        reason=true,
      ),
      alert(
        'DkmsNextBootLoadedModuleMissing', loadedModuleMissing, cfg.readinessFor, 'critical',
        'A kernel this host will boot lacks a module the host loads at every boot.',
        '{{ $labels.instance }}: module {{ $labels.module }} is loaded now and the host loads it at every '
        + 'boot (initramfs or modules-load.d), but kernel {{ $labels.kernel }}, which the host boots next (or '
        + 'is its newest kernel), has it neither built in nor as a file where its modules.dep puts it '
        + '(loaded_module_missing): after the reboot it is gone. ' + CHECK,
        'Do not reboot yet: install the package with the in-tree modules of {{ $labels.kernel }} (Ubuntu: '
        + '`apt-get install linux-modules-extra-{{ $labels.kernel }}`); ' + REPORT + 'names it.'
      ),
      alert(
        'DkmsNextBootVerdictNotReady',
        sel('dkms_next_boot_ready') + ' == 0\nunless on (' + on + ')\n'
        + q.paren(q.paren(bootTargetProblems(blocking)) + '\nor\n' + q.paren(bootTargetKernelProblems)
                  + '\nor\n' + q.paren(loadedModuleMissing)),
        cfg.readinessFor, 'warning',
        'The exporter says the next boot is not ready, and no module or kernel problem explains it.',
        '{{ $labels.instance }}: dkms_next_boot_ready is 0 but no boot-target module or kernel problem '
        + "is reported (for example the bootloader's default entry boots a kernel that is not installed). "
        + CHECK,
        'Do not reboot yet: ' + REPORT + 'says what the verdict rests on.'
      ),
      alert(
        'DkmsNextBootReadinessUnknown', sel('dkms_next_boot_readiness_unknown') + ' == 1',
        cfg.readinessFor, 'warning',
        'The exporter cannot decide whether the next boot is ready.',
        '{{ $labels.instance }}: readiness of the next boot is undecidable (a collector it depends on '
        + 'failed or is disabled, or no kernel is installed). Treat the host as not safe to reboot. '
        + CHECK,
        'Do not reboot yet: ' + REPORT + 'names the collector that failed and the file it could not read.'
      ),
    ],

  // --- the host -----------------------------------------------------------------------

  local reboot = sel('dkms_reboot_required'),
  local nextBootOlder = q.paren(sel('dkms_next_boot_kernel_info') + '\n'
                                + 'and on (' + on + ') ' + sel('dkms_next_boot_is_newest') + ' == 0'),
  local olderSummary = 'The bootloader will not start the newest installed kernel.',
  local olderDescription = '{{ $labels.instance }}: the next boot starts kernel {{ $labels.kernel }} '
                           + '({{ $labels.loader }}), not the newest installed one: GRUB_DEFAULT or a saved '
                           + "entry pins it, so a reboot will not bring the newest kernel's fixes.",
  local olderFix = 'Point GRUB_DEFAULT (or the saved entry) at the newest kernel, or keep {{ $labels.kernel }} on purpose.',

  local hostAlerts = [
    alert('DkmsOlderKernelBootsNext', nextBootOlder + '\nand on (' + on + ') ' + reboot + ' == 1',
          '1h', 'warning', olderSummary, olderDescription, olderFix),
    alert('DkmsOlderKernelBootsNext',
          nextBootOlder + '\n' + unlessFiring('DkmsOlderKernelBootsNext', 'warning', on),
          '1h', 'info', olderSummary, olderDescription, olderFix),
    // as long as the reboot gate waits: while a boot target's build failure is the same incident
    // as its gate alert, Alertmanager inhibits it, which only works if it does not fire first
    alert('DkmsModuleBuildFailed', sel('dkms_build_failed') + ' == 1', cfg.readinessFor, 'warning',
          'A DKMS module failed to build for an installed kernel.',
          '{{ $labels.instance }}: DKMS could not build {{ $labels.module }}/{{ $labels.version }} for '
          + 'kernel {{ $labels.kernel }} ({{ $labels.cause }}); make.log is in '
          + '/var/lib/dkms/{{ $labels.module }}/{{ $labels.version }}/build/.',
          'Read /var/lib/dkms/{{ $labels.module }}/{{ $labels.version }}/build/make.log, fix the cause, then '
          + '`dkms install {{ $labels.module }}/{{ $labels.version }} -k {{ $labels.kernel }}`.'),
    alert('DkmsModuleBlacklisted', bootTargetProblems('reason=~"' + nonBlocking + '"'), '1h', 'info',
          'A module a boot target needs is blacklisted in modprobe.d.',
          '{{ $labels.instance }}: module {{ $labels.module }}' + FROM_DKMS + ' is needed on kernel '
          + '{{ $labels.kernel }} but modprobe.d blacklists it: it loads only when asked for by name, '
          + 'not automatically for its device.',
          'Remove the blacklist line for {{ $labels.module }} from modprobe.d, or load it by name (modules-load.d).'),
    alert('DkmsModuleUnregistered', sel('dkms_module_unregistered') + ' == 1', '1h', 'warning',
          "A DKMS module's source is installed but DKMS no longer knows it.",
          '{{ $labels.instance }}: /usr/src/{{ $labels.module }}-{{ $labels.version }} has a dkms.conf but '
          + 'DKMS has no {{ $labels.module }}/{{ $labels.version }}: it will not be built for any new '
          + 'kernel. Run `dkms add {{ $labels.module }}/{{ $labels.version }}` and `dkms autoinstall`.',
          '`dkms add {{ $labels.module }}/{{ $labels.version }}`, then `dkms autoinstall`.'),
    alert('DkmsSigningKeyNotEnrolled',
          sel('dkms_signing_certificate_enrolled') + ' == 0\n'
          + 'and on (' + on + ') ' + sel('dkms_secure_boot_enabled') + ' == 1',
          '1h', 'warning',
          'Secure Boot is on but the key DKMS signs modules with is not enrolled.',
          '{{ $labels.instance }}: Secure Boot is enabled and {{ $labels.path }} ({{ $labels.signer }}, '
          + '{{ $labels.key_id }}) is not enrolled in MOK or db: every module DKMS builds next, for the '
          + 'next kernel too, will be refused. Run `mokutil --import {{ $labels.path }}` and confirm in '
          + 'MokManager on the next boot.',
          '`mokutil --import {{ $labels.path }}`, then confirm the key in MokManager on the next boot.'),
    alert('DkmsKernelHeadersMissing',
          sel('dkms_kernel_problem', [HEADERS_MISSING]) + ' == 1\n'
          + '  and on (' + on + ', kernel) ' + sel('dkms_kernel_info', [NEWEST]) + ' == 1\n'
          + '  and on (' + on + ') count by (' + on + ') (' + sel('dkms_module_state') + ') > 0',
          cfg.readinessFor, 'warning',
          'The newest kernel has no headers, so DKMS cannot build modules for it.',
          '{{ $labels.instance }}: kernel {{ $labels.kernel }} is the newest installed kernel but '
          + '/lib/modules/{{ $labels.kernel }}/build is missing: DKMS cannot build for it. '
          + 'Install linux-headers-{{ $labels.kernel }} (is a headers package held?).',
          'Install the headers of {{ $labels.kernel }} (Debian: linux-headers-{{ $labels.kernel }}; the report page '
          + 'names the package on this distribution).'),
    alert('DkmsNoRollbackKernel',
          sel('dkms_rollback_kernels') + ' == 0\n  and on (' + on + ') ' + reboot + ' == 1',
          '1h', 'warning',
          'A reboot is pending and no other installed kernel is ready to fall back to.',
          '{{ $labels.instance }}: a reboot is pending and no installed kernel besides the boot '
          + 'targets has all its modules working: if the next kernel fails there is nothing to '
          + 'select in the boot menu.',
          'Keep a kernel whose modules work installed before rebooting; ' + REPORT + 'lists the kernels.'),
    alert('DkmsKernelPackageHeld', sel('dkms_package_held', [KERNEL_KIND]) + ' == 1',
          cfg.kernelHoldFor, 'info',
          'A kernel package has been on hold for a long time.',
          '{{ $labels.instance }}: {{ $labels.package }} ({{ $labels.kind }}) has been held '
          + '(apt-mark hold) for more than ' + cfg.kernelHoldFor + ': the host gets no kernel '
          + 'security updates. Unhold it once its modules build for the new kernel.',
          'Unhold {{ $labels.package }} (`apt-mark unhold`, or the dnf versionlock) once its modules build for the new kernel.'),
    alert('DkmsPackagesHalfConfigured', sel('dkms_packages_unconfigured') + ' > 0', '1h', 'warning',
          'Packages are left unpacked or half-configured.',
          '{{ $labels.instance }}: `dpkg --audit` lists {{ $value }} package(s); a kernel package '
          + 'that is not configured has not run its DKMS and initramfs hooks. Run `dpkg --configure -a`.',
          '`dpkg --configure -a`.'),
    alert('DkmsRebootPendingTooLong',
          'time() - ' + sel('dkms_reboot_required_since_timestamp_seconds')
          + ' > ' + (cfg.rebootPendingDays * 86400) + '\n  and on (' + on + ') ' + reboot + ' == 1',
          '1h', 'warning',
          'A reboot has been pending for more than ' + cfg.rebootPendingDays + ' days.',
          '{{ $labels.instance }}: /run/reboot-required has existed for {{ $value | humanizeDuration }}: '
          + 'updates that need a reboot (a new kernel) are not active.',
          'Reboot the host in its next window, once no DkmsNextBoot alert fires for it.'),
    alert('DkmsBootFilesystemLow', sel('dkms_boot_free_bytes') + ' < ' + cfg.bootFreeBytesMin,
          '30m', 'warning',
          'The filesystem holding /boot is nearly full.',
          '{{ $labels.instance }}: {{ $value | humanize1024 }}B free for /boot: the next kernel\'s '
          + 'image and initramfs may not fit, which leaves its package half-configured.',
          'Remove kernels no longer needed (Debian: `apt autoremove --purge`), or grow /boot.'),
  ],

  // --- the exporter -------------------------------------------------------------------

  local exporterAlerts = [
    alert('DkmsExporterDown', sel('up') + ' == 0', '10m', 'warning',
          'Prometheus cannot scrape a dkms-exporter target.',
          '{{ $labels.instance }} ({{ $labels.job }}) is down: nobody will be warned before a reboot '
          + 'into a kernel without its modules.',
          'On the host: `systemctl status dkms-exporter`; else check the scrape target and the network.', elsewhere=true),
    alert('DkmsExporterAbsent', 'absent(' + sel('dkms_exporter_build_info') + ')', '15m', 'warning',
          'No dkms-exporter metrics reach Prometheus at all.',
          'No series matches dkms_exporter_build_info{' + std.strReplace(cfg.dkmsSelector, '"', "'") + '}: the '
          + 'exporter is not deployed, not discovered, or the mixin\'s _config.dkmsSelector is wrong.',
          'Deploy the exporter, or set the mixin\'s _config.dkmsSelector to the job Prometheus scrapes it as.', elsewhere=true),
    alert('DkmsMetricsMissing',
          sel('up') + ' == 1\nunless on (' + on + ') ' + sel('dkms_exporter_build_info'),
          '15m', 'warning',
          'A target is up but serves no dkms-exporter metrics.',
          '{{ $labels.instance }} ({{ $labels.job }}) answers scrapes without dkms metrics (textfile '
          + 'mode: the .prom file is missing or unreadable by node_exporter).',
          'Textfile mode: `systemctl status dkms-exporter-textfile.timer`, and check node_exporter reads the .prom file.',
          elsewhere=true),
    alert('DkmsCollectorFailing', sel('dkms_scrape_collector_success') + ' == 0', '15m', 'warning',
          'A dkms-exporter collector keeps failing.',
          '{{ $labels.instance }}: collector {{ $labels.collector }} has failed for 15 minutes: files '
          + "it needs cannot be read or parsed (the exporter's log names them).",
          'The exporter\'s log names the file collector {{ $labels.collector }} could not read (so do '
          + '`dkms-exporter check` and the report page).'),
    alert('DkmsTextfileStale',
          'time() - ' + sel('dkms_textfile_last_run_timestamp_seconds') + ' > ' + cfg.textfileStaleSeconds,
          '15m', 'warning',
          'The dkms-exporter textfile is not being refreshed.',
          '{{ $labels.instance }}: dkms.prom was last written {{ $value | humanizeDuration }} ago: the '
          + 'textfile timer or its hooks are not running, and the readiness shown is old.',
          '`systemctl status dkms-exporter-textfile.timer` on the host.'),
  ],

  // Shared with rules.libsonnet (the fleet recording rules count the same problems).
  dkmsExpressions:: {
    bootTargetProblems(reasonMatcher):: bootTargetProblems(reasonMatcher),
    bootTargetKernelProblems:: bootTargetKernelProblems,
    moduleRecord:: MODULE_RECORD,
    kernelRecord:: KERNEL_RECORD,
  },

  prometheusAlerts+:: {
    groups+: [
      // the records first: the gate alerts below read this evaluation's results
      { name: 'dkms-exporter.reboot-gate', rules: bootTargetRecords + rebootGate },
      { name: 'dkms-exporter.host', rules: hostAlerts },
      // the record first: the runbook links of the instance-less alerts below read it
      { name: 'dkms-exporter.exporter', rules: [{ record: ANY_RECORD, expr: 'topk(1, dkms_exporter_build_info)' }]
                                               + exporterAlerts },
    ],
  },
}
