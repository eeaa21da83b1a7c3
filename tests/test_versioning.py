import subprocess

from hypothesis import given, settings, strategies as st

from testkit import require_tool
from exporter.formats.versions import compare, newest

PAIRS = [
    ("6.8.0-100-generic", "6.8.0-52-generic"), ("6.1.0-27-amd64", "6.1.0-9-amd64"),
    ("6.1.0-27-amd64", "6.1.0-27-rt-amd64"), ("5.14.0-427.13.1.el9_4.x86_64", "5.14.0-70.el9.x86_64"),
    ("1.0~rc1", "1.0"), ("1:1.0", "2.0"), ("1.0a", "1.0+"), ("1.0", "1.0"), ("6.1.0-28-cloud-amd64", "6.1.0-28-amd64"),
]


def dpkg_cmp(a: str, b: str) -> int:
    dpkg = require_tool("dpkg")
    for op, result in (("lt", -1), ("eq", 0)):
        if subprocess.run([dpkg, "--compare-versions", a, op, b], capture_output=True).returncode == 0:
            return result
    return 1


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


def test_agrees_with_dpkg_on_kernel_releases():
    for a, b in PAIRS:
        assert sign(compare(a, b)) == dpkg_cmp(a, b), (a, b)
        assert sign(compare(b, a)) == dpkg_cmp(b, a), (b, a)


def test_newest_is_numeric_not_lexical():
    assert newest(["6.8.0-52-generic", "6.8.0-100-generic", "6.8.0-9-generic"]) == "6.8.0-100-generic"
    assert newest([]) is None


_part = st.text(alphabet="0123456789.+~abz", min_size=1, max_size=6).filter(lambda s: s[0].isdigit())


@settings(max_examples=60, deadline=None)
@given(_part, _part, st.sampled_from(["", "-1", "-27-amd64", "-2~bpo"]), st.sampled_from(["", "-3", "-27-rt-amd64"]))
def test_random_versions_agree_with_dpkg(a, b, ra, rb):
    assert sign(compare(a + ra, b + rb)) == dpkg_cmp(a + ra, b + rb)
