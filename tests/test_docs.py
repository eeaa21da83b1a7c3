"""docs/metrics.md lists exactly the metrics the exporter serves."""

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from example_hosts import EXAMPLES
from exporter.cli import main

DOC = Path(__file__).parent.parent / "docs" / "metrics.md"


def documented() -> set[str]:
    return set(re.findall(r"^\| `(dkms_[a-z0-9_]+)`", DOC.read_text(), re.M))


def served(tmp_path, capsys) -> set[str]:
    names = set()
    for name, build in EXAMPLES.items():
        build(tmp_path / name)
        main(["metrics", "--path.rootfs", str(tmp_path / name)])
        for fam in text_string_to_metric_families(capsys.readouterr().out):
            names.update(s.name for s in fam.samples)
    main(["textfile", "--output", str(tmp_path / "dkms.prom"), "--path.rootfs", str(tmp_path / "healthy")])
    for fam in text_string_to_metric_families((tmp_path / "dkms.prom").read_text()):
        names.update(s.name for s in fam.samples)
    return names


def test_every_served_metric_is_documented_and_every_documented_one_served(tmp_path, capsys):
    s, d = served(tmp_path, capsys), documented()
    assert s - d == set(), f"served but not in docs/metrics.md: {sorted(s - d)}"
    assert d - s == set(), f"documented but never served by an example host: {sorted(d - s)}"


def test_readiness_doc_lists_every_check_in_code_order():
    """docs/readiness.md's table of checks names every module reason, in CHECK_ORDER's order."""
    from exporter.verdict.checks import CHECK_ORDER
    from exporter.verdict.fixes import REASONS
    text = (Path(__file__).parent.parent / "docs" / "readiness.md").read_text()
    table = text.split("## When a module works for K", 1)[1].split("\n\n## ", 1)[0]
    reasons = " ".join(line.rstrip(" |").rsplit("|", 1)[-1] for line in table.splitlines() if line.startswith("|"))
    positions = [reasons.find(f"`{reason}`") for reason in CHECK_ORDER]
    assert all(p >= 0 for p in positions), [r for r, p in zip(CHECK_ORDER, positions) if p < 0]
    assert positions == sorted(positions), "docs/readiness.md lists the checks in another order than the code"
    assert set(CHECK_ORDER) <= set(REASONS)
