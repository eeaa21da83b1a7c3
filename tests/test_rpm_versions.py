"""rpm's version order against rpm itself: python3-rpm's labelCompare (rpmvercmp on epoch,
version, release) and rpm.ver (parseEVR + rpmverCmp), run by Debian's /usr/bin/python3, on
property-generated versions (hypothesis, batched: one rpm process per batch) and on the cases
where rpm and dpkg part ways."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpmtools import rpm_python
from exporter.formats.versions import compare as dpkg_compare
from exporter.formats.versions import rpm_evr_compare, rpmvercmp

ORACLE = """
import json, sys, rpm
out = []
for kind, a, b in json.load(sys.stdin):
    if kind == "vercmp":
        out.append(rpm.labelCompare(("0", a, "1"), ("0", b, "1")))
    else:
        x, y = rpm.ver(a), rpm.ver(b)
        out.append((x > y) - (x < y))
print(json.dumps(out))
"""

# segments and every kind of separator rpm treats specially (~ ^) or skips (. _ + - é)
_piece = st.one_of(st.from_regex(r"[0-9]{1,3}", fullmatch=True), st.from_regex(r"0[0-9]{1,2}", fullmatch=True),
                   st.from_regex(r"[a-zA-Z]{1,3}", fullmatch=True), st.sampled_from([".", "~", "^", "_", "+", "é", "..", "~~"]))
version = st.lists(_piece, min_size=1, max_size=6).map("".join)   # rpm refuses an empty version
evr = st.tuples(st.one_of(st.none(), st.integers(0, 3).map(str), st.just("")), version.filter(lambda v: "-" not in v),
                st.one_of(st.none(), version)).map(
    lambda t: (f"{t[0]}:" if t[0] is not None else "") + t[1] + (f"-{t[2]}" if t[2] is not None else ""))


def rpm_says(cases: list[tuple[str, str, str]]) -> list[int]:
    return rpm_python(ORACLE, cases)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow])
@given(st.lists(st.tuples(version, version), min_size=60, max_size=60))
def test_rpmvercmp_is_rpms(pairs):
    cases = [("vercmp", a, b) for a, b in pairs] + [("vercmp", a, a) for a, _ in pairs[:10]]
    expected = rpm_says(cases)
    mine = [rpmvercmp(a, b) for _, a, b in cases]
    bad = [(c, m, e) for c, m, e in zip(cases, mine, expected) if m != e]
    assert not bad, bad[:5]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow])
@given(st.lists(st.tuples(evr, evr), min_size=60, max_size=60))
def test_evr_order_is_rpms(pairs):
    cases = [("ver", a, b) for a, b in pairs if a and b]
    expected = rpm_says(cases)
    bad = [(c, rpm_evr_compare(c[1], c[2]), e) for c, e in zip(cases, expected) if rpm_evr_compare(c[1], c[2]) != e]
    assert not bad, bad[:5]


FIXED = [
    ("1.0", "1_0"), ("1.0", "1.0a"), ("1.0~rc1", "1.0"), ("1.0^", "1.0"), ("1.0^git1", "1.0.1"), ("1.0~~", "1.0~"),
    ("010", "10"), ("2a", "2.a"), ("a", "1"), ("1.0+1", "1.0"), ("5.14.0", "5.14"),
    ("427.13.1.el9_4.x86_64", "427.2.1.el9_4.x86_64"), ("503.el9.x86_64+debug", "503.el9.x86_64"),
]


def test_fixed_cases_and_where_rpm_and_dpkg_disagree():
    expected = rpm_says([("vercmp", a, b) for a, b in FIXED])
    assert [rpmvercmp(a, b) for a, b in FIXED] == expected
    # rpm: leftover letters win, separators do not count; dpkg: the other way round
    assert rpmvercmp("1.0a", "1.0") == 1 and dpkg_compare("1.0a", "1.0") > 0
    assert rpmvercmp("1.0", "1_0") == 0 and dpkg_compare("1.0", "1_0") != 0
    assert rpmvercmp("1.0^", "1.0") == 1
    assert rpm_says([("ver", "1:1.0-1", "2.0-1")]) == [rpm_evr_compare("1:1.0-1", "2.0-1")] == [1]
