"""Durations as Prometheus and Go users write them: '30s', '1m30s', '250ms', '1.5h', '0'.

One grammar for every duration the exporter reads (``--scrape.timeout``, the web config's
``rate_limit.interval``): Go's ``time.ParseDuration``, which is what node_exporter's flags
(kingpin's ``Duration``) and exporter-toolkit's web config (yaml.v2 into ``time.Duration``)
accept, so a value copied from those works here unchanged:

- an optional sign, then one or more ``<number><unit>``: ``1h30m``, ``2m0.5s``, ``1.5s``, ``.5h``;
  numbers are decimal with an optional fraction (no exponent), parts in any order;
- units ``ns``, ``us``, ``µs`` (U+00B5), ``μs`` (U+03BC), ``ms``, ``s``, ``m``, ``h``;
- ``0`` alone (any other number needs a unit), no spaces, at most 2^63-1 nanoseconds.

Prometheus' own ``model.ParseDuration`` (scrape_interval, ``for:``) writes integers with units
from ``ms`` to ``y`` in descending order: every such value up to hours ('5m', '1h30m', '10s',
'500ms', '0') means the same here.  Its ``d``, ``w`` and ``y`` are refused with the Go spelling to
use instead ('24h'): Go has no days, and neither a scrape timeout nor a rate-limit interval is
measured in them.

``bare_seconds=True`` also takes a plain number as seconds ('2', '0.5'), for a command-line flag
that took one in earlier releases.  A file never gets it: Go refuses a unit-less number, and
yaml.v2 reads ``interval: 10`` as ten nanoseconds, so guessing either way would be wrong.
"""

from __future__ import annotations

import re

_NANOSECONDS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                "h": 3600 * 10**9}
# Prometheus units Go lacks, in hours: the error names the Go spelling
_PROMETHEUS_ONLY = {"d": 24, "w": 24 * 7, "y": 24 * 365}
_LIMIT = 1 << 63                   # Go's time.Duration is an int64 of nanoseconds
_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


class DurationError(ValueError):
    """Not a duration; the message says why, in Go's words."""


def parse_duration(text: str, *, bare_seconds: bool = False) -> float:
    """``text`` in seconds (negative for a leading '-').  DurationError when it is not one."""
    if bare_seconds and _PLAIN_NUMBER.fullmatch(text):
        return float(text)
    return _go_nanoseconds(text) / 1e9


def _go_nanoseconds(text: str) -> int:
    """Go's time.ParseDuration (time/format.go) step for step, overflow and rounding included:
    the integer part is exact, a fraction goes through float64 as in Go."""
    rest = text
    negative = rest[:1] == "-"
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise DurationError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(rest):
        m = _PART.match(rest, pos)
        assert m is not None                      # every group may be empty: it always matches
        whole, fraction, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not fraction:            # '.s', 's', '-.5' ...
            raise DurationError(f"invalid duration {text!r}")
        if not unit:
            raise DurationError(f"missing unit in duration {text!r}")
        if unit not in _NANOSECONDS:
            raise DurationError(f"unknown unit {unit!r} in duration {text!r}" + _hint(unit, whole, fraction))
        scale = _NANOSECONDS[unit]
        v = int(whole or "0")
        if v > _LIMIT or v > _LIMIT // scale:
            raise DurationError(f"invalid duration {text!r}: longer than Go's 292 years")
        v *= scale
        f, divisor = _leading_fraction(fraction or "")
        if f:
            v += int(float(f) * (float(scale) / divisor))
        total += v
        if v > _LIMIT or total > _LIMIT:
            raise DurationError(f"invalid duration {text!r}: longer than Go's 292 years")
        pos = m.end()
    if not negative and total > _LIMIT - 1:
        raise DurationError(f"invalid duration {text!r}: longer than Go's 292 years")
    return -total if negative else total


def _leading_fraction(digits: str) -> tuple[int, float]:
    """Go's leadingFraction: the digits as an integer and their scale, digits past what fits
    in 63 bits ignored."""
    x, scale = 0, 1.0
    for c in digits:
        if x > (_LIMIT - 1) // 10:
            break
        y = x * 10 + int(c)
        if y > _LIMIT:
            break
        x, scale = y, scale * 10
    return x, scale


def _hint(unit: str, whole: str, fraction: str | None) -> str:
    if unit in _PROMETHEUS_ONLY and fraction is None:
        return f" (Go durations stop at hours: write {int(whole) * _PROMETHEUS_ONLY[unit]}h)"
    return " (units: ns, us, ms, s, m, h)"
