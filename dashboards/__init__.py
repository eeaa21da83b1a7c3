"""The Grafana dashboard for dkms-exporter, generated from Python (see alerts/generate.py)."""
