"""formats/duration.py against the real parsers: Go's time.ParseDuration (built from Debian's Go)
and Prometheus' model.ParseDuration (through Debian's promtool)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from gotools import go_program

from exporter.formats.duration import DurationError, parse_duration

# Go's own test table (time_test.go) and its error cases, plus what people type by mistake
GO_EXAMPLES = [
    "0", "5s", "30s", "1478s", "-5s", "+5s", "-0", "+0", "5.0s", "5.6s", "5.s", ".5s", "1.0s", "1.00s",
    "1.004s", "1.0040s", "100.00100s", "10ns", "11us", "12µs", "12μs", "13ms", "14s", "15m", "16h",
    "3h30m", "10.5s4m", "-2m3.4s", "1h2m3s4ms5us6ns", "39h9m14.425s", "52763797000ns",
    "0.3333333333333333333h", "9007199254740993ns", "9223372036854775807ns", "9223372036854775.807us",
    "9223372036s854ms775us807ns", "-9223372036854775808ns", "-9223372036854775.808us",
    "0.100000000000000000000h", "0.830103483285477580700h",
    "", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "1.1.1s", "3000000h", "9223372036854775808ns",
    "9223372036854775.808us", "9223372036854ms775us808ns", "-9223372036854775809ns", "1 s", " 1s", "1s ",
    "1e3s", "0x10s", "1S", "1sec", "1m-1s", "--1s", "00", "0s", "01s", "1h1h",
]


def go_parse(texts: list[str]) -> list[int | None]:
    """What Go's time.ParseDuration makes of each text: nanoseconds, or None for an error."""
    out = subprocess.run([str(go_program("parse_duration"))], input="".join(t + "\n" for t in texts),
                         capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    assert len(out) == len(texts)
    return [int(line[3:]) if line.startswith("ok ") else None for line in out]


def ours(text: str) -> int | None:
    try:
        return round(parse_duration(text) * 1e9)
    except DurationError:
        return None


def test_same_answers_as_go_on_its_own_examples():
    for text, expected in zip(GO_EXAMPLES, go_parse(GO_EXAMPLES)):
        got = ours(text)
        # seconds are floats: equal to Go's nanoseconds to float precision
        assert (got is None) == (expected is None), (text, got, expected)
        if expected is not None:
            assert parse_duration(text) == expected / 1e9, (text, got, expected)


def _random_duration(rng: random.Random) -> str:
    """Mostly well-formed parts (number, fraction, unit), with now and then a damaged one."""
    units = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"] * 3 + ["d", "", "S", "x", " s", "."]
    parts = [rng.choice(["", "", "+", "-"])]
    for _ in range(rng.randint(1, 4)):
        number = "".join(rng.choices("0123456789", k=rng.randint(0, 21)))
        if rng.random() < 0.4:
            number += "." + "".join(rng.choices("0123456789", k=rng.randint(0, 21)))
        parts.append(number + rng.choice(units))
    text = "".join(parts)
    if text and rng.random() < 0.1:
        i = rng.randrange(len(text))
        text = text[:i] + rng.choice("0.+- sd") + text[i + 1:]
    return text


def test_same_answers_as_go_on_random_strings():
    """A differential test, seeded so that a failure repeats."""
    rng = random.Random(20261202)
    texts = sorted({_random_duration(rng) for _ in range(3000)})
    expected = go_parse(texts)
    mismatches = [(t, ours(t), e) for t, e in zip(texts, expected)
                  if (ours(t) is None) != (e is None) or (e is not None and parse_duration(t) != e / 1e9)]
    assert mismatches == []
    valid = sum(e is not None for e in expected)
    assert 500 < valid < len(texts) - 500          # both answers were exercised


def promtool_accepts(text: str, tmp: Path) -> bool:
    """Prometheus' model.ParseDuration, as promtool reads a config's evaluation_interval."""
    cfg = tmp / "prometheus.yml"
    cfg.write_text(f"global:\n  evaluation_interval: {text}\n")
    return subprocess.run([require_tool("promtool"), "check", "config", str(cfg)], capture_output=True,
                          timeout=60).returncode == 0


# Prometheus durations and their meaning in seconds (model.ParseDuration: y=365d, w=7d, d=24h)
PROMETHEUS = {"0": 0, "15s": 15, "5m": 300, "1h30m": 5400, "500ms": 0.5, "90s": 90, "2h0m1s": 7201,
              "1d": 86400, "2w": 14 * 86400, "1y": 365 * 86400, "1d12h": 129600, "1w2d3h4m5s6ms": None}


@pytest.mark.parametrize("text", sorted(PROMETHEUS))
def test_prometheus_durations_mean_the_same_or_name_the_go_spelling(text, tmp_path):
    assert promtool_accepts(text, tmp_path)
    if not any(unit in text for unit in "dwy"):
        assert parse_duration(text) == PROMETHEUS[text]
        return
    with pytest.raises(DurationError, match=r"unknown unit '[dwy]'") as exc:
        parse_duration(text)
    if text in ("1d", "2w", "1y"):       # one unit: the message spells it in hours
        assert f"write {PROMETHEUS[text] // 3600}h" in str(exc.value)


@pytest.mark.parametrize("text, seconds", [("1.5h", 5400), ("30m1h", 5400), ("1m30.5s", 90.5), ("250us", 250e-6)])
def test_go_durations_prometheus_refuses_are_accepted(text, seconds, tmp_path):
    """Go's syntax is the wider one: fractions, any order, units below a millisecond."""
    assert not promtool_accepts(text, tmp_path)
    assert parse_duration(text) == pytest.approx(seconds)


def test_bare_seconds_only_when_asked():
    assert [parse_duration(t, bare_seconds=True) for t in ("2", "0.5", ".5", "2.", "30s")] == [2, 0.5, 0.5, 2, 30]
    for text in ("2", "0.5"):
        with pytest.raises(DurationError, match="missing unit"):
            parse_duration(text)
    for text in ("-2", "2 ", "1e3", "", "nan", "inf"):
        with pytest.raises(DurationError):
            parse_duration(text, bare_seconds=True)
