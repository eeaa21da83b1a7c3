"""The exporter runs on the oldest Python it claims: Debian 12's own python3 (3.11.2), which the
Debian package runs it with, not only the newer 3.11 the test virtualenv may have.

3.11.2 matches possessive quantifiers (``*+``, ``++``, ``?+``, ``{m,n}+``) and atomic groups
(``(?>...)``) wrongly: a dpkg status parser written with them refused every status file there
while passing every test in a 3.11.7 virtualenv.  They are kept out of every regular expression
in exporter/, and the parsers are run under Debian's interpreter on the files they are tested on.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXPORTER = Path(__file__).resolve().parent.parent / "exporter"
REPO = EXPORTER.parent
DEBIAN_PYTHON = "/usr/bin/python3"

# a quantifier followed by '+' (possessive) or an atomic group, not counting escaped characters
_POSSESSIVE = re.compile(r"(?<!\\)(?:[*+?]|\{\d*,?\d*\})\+|\(\?>")


def _regex_literals(path: Path) -> list[tuple[int, str]]:
    """The string constants passed to re.<function>(...) in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name) and node.func.value.id == "re":
            for arg in node.args[:1]:
                for const in ast.walk(arg):
                    if isinstance(const, ast.Constant) and isinstance(const.value, (str, bytes)):
                        text = const.value if isinstance(const.value, str) else const.value.decode("latin-1")
                        found.append((node.lineno, text))
    return found


def test_the_checker_finds_possessive_quantifiers_and_atomic_groups():
    for bad in (r"a*+", r"[ \t]++", r"x?+", r"a{2,3}+", r"(?>ab)"):
        assert _POSSESSIVE.search(bad), bad
    for fine in (r"a*", r"\++", r"[+]+", r"a+", r"(?:x)+", r"\*+"):
        assert not _POSSESSIVE.search(fine), fine


def test_no_regular_expression_uses_what_3_11_2_matches_wrongly():
    literals = [(p, line, text) for p in sorted(EXPORTER.rglob("*.py")) for line, text in _regex_literals(p)]
    assert len(literals) > 20                       # the walk does find the project's expressions
    bad = [f"{p.relative_to(REPO)}:{line}: {text!r}" for p, line, text in literals if _POSSESSIVE.search(text)]
    assert not bad, "\n".join(bad)


STATUS_FILES = [
    b"Package: a\nStatus: install ok installed\nVersion: 1\nDescription: x\n \n y\n",
    b"Package: a\nStatus: install ok installed\nVersion: 1\nDescription: x\n y\n z",        # no final newline
    b"package: A\nstatus: Install OK Installed\nVersion: 1\r\n\r\nPackage: b\nStatus: hold ok unpacked\nVersion: 2\n",
    b"Package: a\nStatus: install ok installed\nVersion: 1\n#x\n",
]
SYMVERS = b"0x1\tcr_ns\tvmlinux\tEXPORT_SYMBOL\tNS\r\n0x2\tform\x0cfeed\tvmlinux\tEXPORT_SYMBOL\t\n"
_PROGRAM = """
import sys
from exporter.formats import dpkg, symvers
for blob in eval(sys.argv[1]):
    try:
        print(sorted((p.name, p.arch, p.version, p.want, p.state) for p in dpkg.parse_status(blob)))
    except dpkg.DpkgStatusError as exc:
        print("refused", exc)
print(sorted((s, e.namespace) for s, e in symvers.parse_symvers_file(eval(sys.argv[2])).items()))
print(sys.version_info[:3])
"""


def test_the_line_parsers_answer_alike_under_debians_python():
    if not Path(DEBIAN_PYTHON).exists():
        pytest.fail(f"{DEBIAN_PYTHON} is missing: Debian 12's python3 is what the Debian package runs on")
    runs = [subprocess.run([python, "-c", _PROGRAM, repr(STATUS_FILES), repr(SYMVERS)], cwd=REPO,
                           capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
            for python in (DEBIAN_PYTHON, sys.executable)]
    debian, ours = runs
    assert debian[:-1] == ours[:-1]
    assert debian[1].startswith("refused") and "missing final newline" in debian[1]
    assert not debian[0].startswith("refused") and debian[3].startswith("refused")
