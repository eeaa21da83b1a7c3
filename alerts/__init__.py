"""Prometheus alerting and recording rules for dkms-exporter, generated from Python (see generate.py)."""
