// Recording rules for the fleet: per-job aggregates a 10,000-host dashboard reads instead of
// raw series.  The problem counts read the boot-target records of the reboot-gate group
// (alerts.libsonnet, alerts/dkms-alerts.yaml), so this file needs that one loaded too; being
// another group, they see those records as of that group's latest evaluation.
local q = import 'lib/promql.libsonnet';

{
  local cfg = $._config,
  local sel(metric, matchers=[]) = q.sel(cfg.dkmsSelector, metric, matchers),
  local on = std.join(', ', cfg.hostLabels),
  local modules = $.dkmsExpressions.bootTargetProblems('reason!=""'),
  local kernels = $.dkmsExpressions.bootTargetKernelProblems,
  local anyProblem = q.paren(modules) + '\nor\n' + q.paren(kernels),

  local hosts(by, what) = 'count by (job, ' + by + ') (\n  count by (' + on + ', ' + by + ') '
                          + q.paren(what, 2) + '\n)',
  local count(expr) = 'count by (job) (' + expr + ')',
  local record(name, expr) = { record: name, expr: expr },

  prometheusRules+:: {
    groups+: [{
      name: 'dkms-exporter.fleet',
      rules: [
        record('job:dkms_hosts:count', count(sel('dkms_exporter_build_info'))),
        record('job:dkms_hosts_ready:count', count(sel('dkms_next_boot_ready') + ' == 1')),
        record('job:dkms_hosts_not_ready:count', count(sel('dkms_next_boot_ready') + ' == 0')),
        record('job:dkms_hosts_readiness_unknown:count', count(sel('dkms_next_boot_readiness_unknown') + ' == 1')),
        record('job:dkms_hosts_reboot_required:count', count(sel('dkms_reboot_required') + ' == 1')),
        record('job:dkms_hosts_secure_boot_enabled:count', count(sel('dkms_secure_boot_enabled') + ' == 1')),
        record('job_reason:dkms_hosts_not_ready:count', hosts('reason', anyProblem)),
        record('job_kernel:dkms_hosts_not_ready:count', hosts('kernel', anyProblem)),
        record('job_module:dkms_hosts_not_ready:count', hosts('module', modules)),
        record('job_kernel:dkms_next_boot_kernel_info:count',
               'count by (job, kernel) (' + sel('dkms_next_boot_kernel_info') + ')'),
      ],
    }],
  },
}
