// The Grafana dashboard: fleet overview, host drill-down, trends.
//
// Fleet panels read the recording rules of rules.libsonnet (cheap at 10,000 hosts); host panels
// read raw series of one `$instance`.  Every target carries `job=~"$job"`, and every host panel
// also `instance=~"$instance"` (tests/test_dashboard.py checks both); the job list itself comes
// from _config.dkmsSelector.
local g = import 'lib/grafana.libsonnet';

local FLEET = 'job=~"$job"';
local HOST = 'job=~"$job", instance=~"$instance"';
local t = g.target;
local at = g.at;
local th = g.thresholds;

local WORKS = g.mapping([['1', 'works', 'green'], ['0', 'BROKEN', 'red']]);
local YES_NO = g.mapping([['1', 'yes', 'green'], ['0', 'no', 'red']]);
local BOOL_LABEL = g.mapping([['true', 'yes', 'blue'], ['false', '', 'transparent']]);

local orZero(expr) = expr + ' or vector(0)';

{
  local cfg = $._config,
  local reasons = cfg.reasons,

  // The boot-target records of the reboot gate (alerts.libsonnet): the join is computed once per
  // evaluation there, not again on every refresh of every dashboard.
  local exprs = $.dkmsExpressions,
  local bootTargetProblems(selector) =
    exprs.moduleRecord + '{' + selector + ', reason!~"' + std.join('|', reasons.nonBlocking) + '"}\n'
    + 'or ' + exprs.kernelRecord + '{' + selector + ', reason=~"' + std.join('|', reasons.kernelBreaking) + '"}',

  // Data links: a host cell opens that host's report (the exporter's `/`, _config.reportUrl), a
  // reason cell its entry on that exporter's /runbooks (_config.runbookUrlBase).
  local forCell(url, instance) = std.strReplace(url, '{{ $labels.instance }}', instance),
  local link(column, title, url) = {
    matcher: { id: 'byName', options: column },
    properties: [{ id: 'links', value: [{ title: title, url: url, targetBlank: true }] }],
  },
  local hostLinks = if cfg.reportUrl == '' then [] else [
    link('instance', 'Report of ${__value.raw}', forCell(cfg.reportUrl, '${__value.raw}')),
  ],
  local reasonLinks = [
    link('reason', 'Runbook: ${__value.raw}',
         forCell(cfg.runbookUrlBase, '${__data.fields.instance}') + '#reason-${__value.raw}'),
  ],

  // Events on the host's time line, from what the exporter serves (docs/metrics.md has no boot
  // time): a changed running kernel, or a pending reboot that cleared, is a reboot; a kernel
  // series that was not there, a kernel install; a changed initramfs mtime, a rebuilt image.
  // A reboot into the same kernel with nothing pending shows no event (node_exporter's
  // node_boot_time_seconds would show it).  The exporter's first scrape marks all as new.
  local WINDOW = '10m',
  local annotation(name, color, expr, title, text, tags) = {
    name: name,
    datasource: g.DS,
    enable: true,
    iconColor: color,
    expr: expr,
    step: '1m',
    titleFormat: title,
    textFormat: text,
    tagKeys: tags,
    useValueForTime: false,
  },
  local annotations = [
    annotation('Reboots', 'blue',
               'dkms_running_kernel_info{' + HOST + '}\n'
               + '  unless on (job, instance, kernel) dkms_running_kernel_info{' + HOST + '} offset ' + WINDOW + '\n'
               + 'or (dkms_reboot_required{' + HOST + '} == 0)\n'
               + '  and on (job, instance) (dkms_reboot_required{' + HOST + '} offset ' + WINDOW + ' == 1)',
               'Reboot', '{{instance}} runs {{kernel}}', 'instance,kernel'),
    annotation('Kernel installs', 'purple',
               'dkms_kernel_info{' + HOST + '}\n'
               + '  unless on (job, instance, kernel) dkms_kernel_info{' + HOST + '} offset ' + WINDOW,
               'Kernel installed', '{{instance}}: {{kernel}}', 'instance,kernel'),
    annotation('Initramfs rebuilds', 'orange',
               'changes(dkms_kernel_initramfs_modified_timestamp_seconds{' + HOST + '}[' + WINDOW + ']) > 0',
               'Initramfs rebuilt', '{{instance}}: {{kernel}}', 'instance,kernel'),
  ],

  local fleet = [
    g.row('Fleet: will the next boot work?'),
  ] + [
    at(g.stat(s[0], s[1], [t(orZero('sum(' + s[2] + '{' + FLEET + '})'), instant=true)], thresholds=s[3]), 4, 4)
    for s in [
      ['Hosts reporting', "Hosts whose dkms-exporter metrics reach Prometheus.",
       'job:dkms_hosts:count', th([[null, 'blue']])],
      ['Would break if rebooted now', 'Hosts where a boot target (next-boot or newest kernel) lacks a working '
                                      + 'module: rebooting them now strands them. The table below says which and why.',
       'job:dkms_hosts_not_ready:count',
       th([[null, 'green'], [1, 'red']])],
      ['Readiness unknown', 'Hosts where the exporter cannot decide (a collector failed or is disabled).',
       'job:dkms_hosts_readiness_unknown:count', th([[null, 'green'], [1, 'orange']])],
      ['Reboot pending', 'Hosts with /run/reboot-required.', 'job:dkms_hosts_reboot_required:count',
       th([[null, 'green'], [1, 'blue']])],
      ['Secure Boot on', 'Hosts booted with UEFI Secure Boot enabled: their kernels refuse unsigned '
                         + 'modules.', 'job:dkms_hosts_secure_boot_enabled:count', th([[null, 'blue']])],
    ]
  ] + [
    at(g.stat('Targets down', 'Scrape targets of the selected jobs that do not answer: nobody is '
                              + 'warned about those hosts.', [t(orZero('count(up{' + FLEET + '} == 0)'), instant=true)],
              thresholds=th([[null, 'green'], [1, 'red']])), 4, 4),
  ] + [
    at(g.bargauge('Hosts not ready, by ' + b[1], 'How many hosts have at least one problem with '
                  + 'this ' + b[1] + ' on a kernel they will boot.',
                  'sum by (' + b[0] + ') (job_' + b[0] + ':dkms_hosts_not_ready:count{' + FLEET + '})',
                  '{{' + b[0] + '}}', 'every host is ready'), 8, 7)
    for b in [['reason', 'reason'], ['kernel', 'boot-target kernel'], ['module', 'module']]
  ] + [
    at(g.table('Would break if rebooted now: which host, kernel, module, and why',
               'One row per module (or kernel-level problem) that fails on a kernel the host boots next or '
               + "its newest kernel. Click a host for its report (the exporter's page: the fix command in its "
               + "distribution's words), a reason for its runbook entry.",
               [t(bootTargetProblems(FLEET), table=true)],
               ['instance', 'kernel', 'module', 'dkms', 'reason'], noValue='no host is trapped',
               overrides=hostLinks + reasonLinks), 16, 9),
    at(g.table('Firing DKMS alerts', 'What Alertmanager has been told.',
               [t('ALERTS{alertname=~"Dkms.*", alertstate="firing", ' + FLEET + '}', table=true)],
               ['alertname', 'severity', 'instance', 'kernel', 'module', 'reason'],
               noValue='no DKMS alert is firing', overrides=hostLinks), 8, 9),
  ],

  local host = [
    g.row('Host: $instance'),
    at(g.stat('Next boot', 'READY: every module every boot target needs works. UNKNOWN: a collector '
                           + 'failed or is disabled.',
              [t('max(dkms_next_boot_ready{' + HOST + '})\n'
                 + 'or max(dkms_next_boot_readiness_unknown{' + HOST + '} == 1) - 2', instant=true)],
              mappings=g.mapping([['1', 'READY', 'green'], ['0', 'NOT READY', 'red'], ['-1', 'UNKNOWN', 'orange']])), 4, 4),
    at(g.stat('Boots next', 'The kernel the bootloader starts next, and the loader that was read.',
              [t('dkms_next_boot_kernel_info{' + HOST + '}', legend='{{kernel}} ({{loader}})', instant=true)],
              textMode='name', colorMode='none', noValue='unknown (newest assumed)'), 5, 4),
    at(g.stat('Running', 'The running kernel.', [t('dkms_running_kernel_info{' + HOST + '}', legend='{{kernel}}', instant=true)],
              textMode='name', colorMode='none'), 5, 4),
    at(g.stat('Reboot pending since', 'When /run/reboot-required appeared.',
              [t('(dkms_reboot_required_since_timestamp_seconds{' + HOST + '}\n'
                 + ' and on (job, instance) dkms_reboot_required{' + HOST + '} == 1) * 1000', instant=true)],
              unit='dateTimeFromNow', colorMode='none', noValue='no reboot pending'), 4, 4),
    at(g.stat('Rollback kernels', 'Installed kernels besides the boot targets that are ready: what to '
                                  + 'pick in the boot menu if the next kernel fails.',
              [t('dkms_rollback_kernels{' + HOST + '}', instant=true)],
              thresholds=th([[null, 'orange'], [1, 'green']])), 3, 4),
    at(g.stat('Secure Boot', 'UEFI Secure Boot state: when enabled, kernels refuse unsigned modules.',
              [t('max(dkms_secure_boot_enabled{' + HOST + '})\n'
                 + 'or max(dkms_secure_boot_supported{' + HOST + '} == 0) - 1', instant=true)],
              mappings=g.mapping([['1', 'enabled', 'blue'], ['0', 'disabled', 'text'], ['-1', 'no UEFI', 'text']]),
              colorMode='none'), 3, 4),
    at(g.table('Kernels', 'Installed kernels, their role, and what each needs to boot well.',
               [t('dkms_kernel_info{' + HOST + '}', 'A', table=true),
                t('dkms_kernel_ready{' + HOST + '}', 'B', table=true),
                t('dkms_kernel_headers_present{' + HOST + '}', 'C', table=true),
                t('dkms_kernel_signature_enforced{' + HOST + '}', 'D', table=true),
                t('dkms_kernel_initramfs_present{' + HOST + '}', 'E', table=true),
                t('time() - dkms_kernel_initramfs_modified_timestamp_seconds{' + HOST + '}', 'F', table=true)],
               ['kernel', 'running', 'newest', 'next_boot', 'boot_target', 'Value #B', 'Value #C',
                'Value #D', 'Value #E', 'Value #F'], merge=true,
               rename={ 'Value #B': 'ready', 'Value #C': 'headers', 'Value #D': 'signatures enforced',
                        'Value #E': 'initramfs', 'Value #F': 'initramfs age' },
               mappings=YES_NO + BOOL_LABEL,
               overrides=[{ matcher: { id: 'byName', options: 'initramfs age' },
                            properties: [{ id: 'unit', value: 's' }, { id: 'mappings', value: [] }] }]), 24, 6),
    at(g.matrix('Modules work (kernel × module)', 'One cell per module a kernel needs: works, or BROKEN '
                                                  + '(the problems table says why). Empty: that kernel does not need the module.',
                'dkms_module_working{' + HOST + '}', WORKS), 12, 7),
    at(g.table('Problems', 'Why modules (or kernels) will not work; the reason names the runbook section.',
               [t('dkms_module_problem{' + HOST + '} == 1 or dkms_kernel_problem{' + HOST + '} == 1', table=true)],
               ['kernel', 'module', 'dkms', 'reason'], noValue='no problems'), 12, 7),
  ] + [
    at(g.matrix(m[0] + ' (kernel × module)', m[1], m[2] + '{' + HOST + '}', YES_NO), 8, 6)
    for m in [
      ['Signed', 'The module file carries a signature (kernels that enforce signatures refuse it '
                 + 'otherwise).', 'dkms_module_signed'],
      ['In initramfs', "The kernel's initramfs contains the module.", 'dkms_module_in_initramfs'],
      ['Needed in early boot', 'The module must be in the initramfs (storage, root filesystem).',
       'dkms_module_early_boot'],
    ]
  ] + [
    at(g.table('DKMS status', 'What `dkms status` prints.',
               [t('dkms_module_state{' + HOST + '}', table=true)],
               ['module', 'version', 'kernel', 'arch', 'state'], noValue='no DKMS modules'), 12, 7),
    at(g.table('DKMS build failures', 'Builds whose make.log DKMS left behind, and their cause.',
               [t('dkms_build_failed{' + HOST + '}', 'A', table=true),
                t('dkms_build_failure_timestamp_seconds{' + HOST + '} * 1000', 'B', table=true)],
               ['module', 'version', 'kernel', 'cause', 'Value #B'], merge=true,
               rename={ 'Value #B': 'failed at' }, noValue='no failed builds',
               overrides=[{ matcher: { id: 'byName', options: 'failed at' },
                            properties: [{ id: 'unit', value: 'dateTimeAsIso' }] }]), 12, 7),
    at(g.table('Module signing keys', 'Certificates DKMS signs modules with, and whether the firmware '
                                      + 'or MOK trusts them (Secure Boot refuses modules signed by keys that are not enrolled).',
               [t('dkms_signing_certificate_enrolled{' + HOST + '}', table=true)],
               ['path', 'signer', 'key_id', 'Value'], rename={ Value: 'enrolled' }, mappings=YES_NO,
               noValue='no signing certificate on disk'), 12, 6),
    at(g.table('Held packages', 'apt-mark hold: a held kernel gets no updates; a held headers package '
                                + 'starves DKMS.', [t('dkms_package_held{' + HOST + '}', table=true)],
               ['package', 'kind'], noValue='no held packages'), 8, 6),
    at(g.table('Unfinished dpkg work', 'What `dpkg --audit` lists.',
               [t('dkms_package_unconfigured{' + HOST + '}', table=true)],
               ['package', 'state'], noValue='dpkg --audit is clean'), 8, 6),
    at(g.table('Collectors', 'Per collector: success, files it could not read, duration.',
               [t('dkms_scrape_collector_success{' + HOST + '}', 'A', table=true),
                t('dkms_scrape_collector_errors{' + HOST + '}', 'B', table=true),
                t('dkms_scrape_collector_duration_seconds{' + HOST + '}', 'C', table=true)],
               ['collector', 'Value #A', 'Value #B', 'Value #C'], merge=true,
               rename={ 'Value #A': 'success', 'Value #B': 'errors', 'Value #C': 'seconds' }), 8, 6),
  ],

  local trends = [
    g.row('Trends'),
    at(g.timeseries('Hosts by next-boot readiness', 'From the fleet recording rules.', [
      t('sum(job:dkms_hosts_ready:count{' + FLEET + '})', 'A', legend='ready'),
      t('sum(job:dkms_hosts_not_ready:count{' + FLEET + '})', 'B', legend='not ready'),
      t('sum(job:dkms_hosts_readiness_unknown:count{' + FLEET + '})', 'C', legend='unknown'),
    ], stack=true), 12, 8),
    at(g.timeseries('Hosts not ready over time, by reason', 'From the fleet recording rules.', [
      t('sum by (reason) (job_reason:dkms_hosts_not_ready:count{' + FLEET + '})', legend='{{reason}}'),
    ]), 12, 8),
    at(g.timeseries('Next-boot kernel across the fleet', 'How many hosts boot each kernel next.', [
      t('sum by (kernel) (job_kernel:dkms_next_boot_kernel_info:count{' + FLEET + '})', legend='{{kernel}}'),
    ], stack=true), 12, 8),
    at(g.timeseries('Pending reboots', 'Hosts with /run/reboot-required.', [
      t('sum(job:dkms_hosts_reboot_required:count{' + FLEET + '})', legend='reboot pending'),
    ]), 12, 8),
    at(g.timeseries('$instance: modules not working, by kernel', 'Needed modules that do not work.', [
      t('count by (kernel) (dkms_module_working{' + HOST + '} == 0)', legend='{{kernel}}'),
    ]), 12, 8),
    at(g.timeseries('$instance: collector duration', 'Time each collector takes per scrape.', [
      t('dkms_scrape_collector_duration_seconds{' + HOST + '}', legend='{{collector}}'),
    ], unit='s'), 12, 8),
  ],

  local jobs = 'label_values(dkms_exporter_build_info{' + cfg.dkmsSelector + '}, job)',
  local instances = 'label_values(dkms_exporter_build_info{job=~"$job"}, instance)',
  local variables = [
    { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus',
      current: {}, hide: 0, refresh: 1, regex: '', options: [] },
    { name: 'job', label: 'Job', type: 'query', datasource: g.DS,
      query: { query: jobs, refId: 'job' }, definition: jobs, refresh: 2, sort: 1,
      includeAll: true, multi: true, allValue: '.+', current: {}, hide: 0, options: [], regex: '' },
    { name: 'instance', label: 'Host', type: 'query', datasource: g.DS,
      query: { query: instances, refId: 'instance' }, definition: instances, refresh: 2,
      sort: 1, includeAll: false, multi: false, current: {}, hide: 0, options: [], regex: '' },
  ],

  grafanaDashboards+:: {
    'dkms-exporter.json': {
      uid: cfg.dashboardUid,
      title: 'DKMS: next-boot readiness',
      description: 'Will every out-of-tree kernel module work on the kernel each host boots next? '
                   + 'Generated from alerts/dkms-exporter-mixin/ (jsonnet): do not edit.',
      tags: cfg.dashboardTags,
      editable: true,
      graphTooltip: 1,
      timezone: '',
      time: { from: 'now-7d', to: 'now' },
      refresh: '5m',
      schemaVersion: 39,
      version: 1,
      links: [{ title: 'Runbooks', type: 'link', icon: 'doc', targetBlank: true,
                url: std.strReplace(cfg.runbookUrlBase, '{{ $labels.instance }}', '${instance}') }],
      annotations: { list: annotations },
      templating: { list: variables },
      panels: g.layout(fleet + host + trends),
    },
  },
}
