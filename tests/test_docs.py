"""docs/metrics.md lists exactly the metrics the exporter serves."""

import re
from pathlib import Path

from example_hosts import EXAMPLES
from testkit import metrics_of, samples

from exporter.cli import main

DOC = Path(__file__).parent.parent / "docs" / "metrics.md"


def documented() -> set[str]:
    return set(re.findall(r"^\| `(dkms_[a-z0-9_]+)`", DOC.read_text(), re.M))


def served(tmp_path, capsys) -> set[str]:
    names = set()
    for name, build in EXAMPLES.items():
        build(tmp_path / name)
        names.update(metrics_of(tmp_path / name, capsys))
    main(["textfile", "--output", str(tmp_path / "dkms.prom"), "--path.rootfs", str(tmp_path / "healthy")])
    names.update(samples((tmp_path / "dkms.prom").read_text()))
    return names


def test_every_served_metric_is_documented_and_every_documented_one_served(tmp_path, capsys):
    s, d = served(tmp_path, capsys), documented()
    assert s - d == set(), f"served but not in docs/metrics.md: {sorted(s - d)}"
    assert d - s == set(), f"documented but never served by an example host: {sorted(d - s)}"
