// dkms-exporter's monitoring mixin: alerts, recording rules and the Grafana dashboard for
// "does every out-of-tree module work on the kernel each host boots next?".
//
//   local dkms = (import 'dkms-exporter-mixin/mixin.libsonnet') + {
//     _config+:: { dkmsSelector: 'job="node"', runbookUrlBase: 'https://docs.internal/runbooks.md' },
//   };
//   dkms.prometheusAlerts, dkms.prometheusRules, dkms.grafanaDashboards
//
// _config is in config.libsonnet; docs/monitoring-mixin.md shows the kube-prometheus import.
(import 'config.libsonnet')
+ (import 'alerts.libsonnet')
+ (import 'rules.libsonnet')
+ (import 'dashboards.libsonnet')
