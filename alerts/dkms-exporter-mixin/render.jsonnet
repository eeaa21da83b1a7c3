// The committed files, rendered from the mixin (run from the repository root):
//
//   jsonnet -S -m . alerts/dkms-exporter-mixin/render.jsonnet
//
// `python alerts/generate.py` runs exactly this (and `--check` compares the result byte for
// byte with the committed files).  `config` overrides _config, e.g. test mode:
//   --tla-code 'config={forOverride: "5s"}'
// Each value lacks its final newline: `jsonnet -S -m` adds one to every file.
local json = import 'lib/json.libsonnet';
local yaml = import 'lib/yaml.libsonnet';
local mixin = import 'mixin.libsonnet';

local HEADER = '# Generated from alerts/dkms-exporter-mixin/ with jsonnet (python alerts/generate.py): do not edit.\n';

function(config={})
  local m = mixin { _config+:: config };
  local dashboards = {
    [name]: json.manifest(m.grafanaDashboards[name])
    for name in std.objectFields(m.grafanaDashboards)
  };
  {
    'alerts/dkms-alerts.yaml': HEADER + yaml.manifest(m.prometheusAlerts),
    'alerts/dkms-rules.yaml': HEADER + yaml.manifest(m.prometheusRules),
    'deploy/kubernetes/prometheusrule.yaml':
      HEADER
      + "# Add the labels your Prometheus' ruleSelector matches (kube-prometheus: role: alert-rules; "
      + 'kube-prometheus-stack: release: <release name>).\n'
      + yaml.manifest({
        apiVersion: 'monitoring.coreos.com/v1',
        kind: 'PrometheusRule',
        metadata: {
          name: 'dkms-exporter',
          labels: { 'app.kubernetes.io/name': 'dkms-exporter', 'app.kubernetes.io/component': 'monitoring-rules' },
        },
        spec: { groups: m.prometheusAlerts.groups + m.prometheusRules.groups },
      }),
    'deploy/kubernetes/grafana-dashboards.yaml':
      HEADER
      + '# Grafana\'s sidecar (kube-prometheus-stack) loads ConfigMaps labelled grafana_dashboard: "1".\n'
      + yaml.manifest({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: 'dkms-exporter-dashboards',
          labels: { 'app.kubernetes.io/name': 'dkms-exporter', grafana_dashboard: '1' },
        },
        data: { [name]: dashboards[name] + '\n' for name in std.objectFields(dashboards) },
      }),
  } + {
    ['dashboards/' + name]: dashboards[name]
    for name in std.objectFields(dashboards)
  }
