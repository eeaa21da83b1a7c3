"""The docs are true to the code.

- docs/metrics.md lists exactly the metrics the exporter serves;
- docs/readiness.md lists every check and reason the code has, in the code's order;
- every `exporter/...` file and function the docs name exists;
- every `docs/X.md, "Title"` a docstring cites is a heading of that file;
- nothing in the repository points outside it.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from pathlib import Path

import pytest

from example_hosts import EXAMPLES
from testkit import metrics_of, samples

from exporter.cli import main
from exporter.collectors import collectors
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.verdict.checks import CHECK_ORDER
from exporter.verdict.fixes import REASONS

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
DOC = DOCS / "metrics.md"
EXPORTER = REPO / "exporter"


# --- docs/metrics.md ------------------------------------------------------------------------

def documented() -> set[str]:
    return set(re.findall(r"^\| `(dkms_[a-z0-9_]+)`", DOC.read_text(), re.M))


def served(tmp_path, capsys) -> set[str]:
    names = set()
    for name, build in EXAMPLES.items():
        build(tmp_path / name)
        names.update(metrics_of(tmp_path / name, capsys))
    main(["textfile", "--output", str(tmp_path / "dkms.prom"), "--path.rootfs", str(tmp_path / "healthy"),
          "--cache.dir", str(tmp_path / "cache")])   # the persistent cache's own metrics
    names.update(samples((tmp_path / "dkms.prom").read_text()))
    return names


def test_every_served_metric_is_documented_and_every_documented_one_served(tmp_path, capsys):
    s, d = served(tmp_path, capsys), documented()
    assert s - d == set(), f"served but not in docs/metrics.md: {sorted(s - d)}"
    assert d - s == set(), f"documented but never served by an example host: {sorted(d - s)}"


# --- docs/readiness.md: every check and reason, in the code's order ---------------------------

READINESS = DOCS / "readiness.md"


def documented_reasons() -> list[str]:
    """The reasons of docs/readiness.md's check tables (rows `| N | `reason` | ...`), in order."""
    return re.findall(r"^\| \d+ \| `([a-z_]+)` \|", READINESS.read_text(), re.M)


def _problem_reasons_in(source: Path, function: str | None = None) -> list[str]:
    """The reason literals of ``Problem("reason", ...)`` and ``fix("reason", ...)`` calls in a
    module (or one of its functions), in source order."""
    tree = ast.parse(source.read_text())
    if function is not None:
        tree = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args
             and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)
             and getattr(n.func, "id", getattr(n.func, "attr", "")) in ("Problem", "fix")]
    ordered = sorted(calls, key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.args[0].value for n in ordered))


def kernel_level_reasons() -> list[str]:
    return _problem_reasons_in(EXPORTER / "verdict" / "readiness.py", "_kernel_problems")


def test_kernel_level_reasons_are_read_from_the_code():
    assert kernel_level_reasons() == ["headers_missing", "initramfs_missing", "initramfs_unreadable",
                                      "loaded_module_missing"]


def test_readiness_lists_the_reasons_in_the_order_of_the_code():
    assert documented_reasons() == list(CHECK_ORDER) + kernel_level_reasons()


def test_readiness_documents_every_reason_and_no_other():
    docs = documented_reasons()
    assert len(docs) == len(set(docs)), "a reason is listed twice"
    assert set(docs) - set(REASONS) == set(), "documented, but not a reason the code has"
    assert set(REASONS) - set(docs) == set(), "a reason of exporter.verdict.fixes.REASONS is not documented"


def test_check_order_names_exactly_the_reasons_checks_py_reports():
    """CHECK_ORDER is complete: every reason a Problem in checks.py is made with is in it."""
    assert set(_problem_reasons_in(EXPORTER / "verdict" / "checks.py")) == set(CHECK_ORDER)
    assert set(CHECK_ORDER) | set(kernel_level_reasons()) == set(REASONS)


def test_problems_are_reported_in_check_order(tmp_path):
    """On the example hosts (every kernel, every needed module), a module's problems come in
    CHECK_ORDER and a kernel's in _kernel_problems' order: the order docs/readiness.md states."""
    kernel_order = kernel_level_reasons()
    seen = set()
    for name, build in EXAMPLES.items():
        build(tmp_path / name)
        readiness = Scraper(HostFS(tmp_path / name), Config()).scrape().readiness
        for kv in readiness.kernels:
            for m in kv.modules:
                reasons = [p.reason for p in m.problems]
                seen.update(reasons)
                assert reasons == sorted(reasons, key=CHECK_ORDER.index), f"{name} {kv.kernel} {m.module}"
            reasons = [p.reason for p in kv.kernel_problems]
            seen.update(reasons)
            assert reasons == sorted(reasons, key=kernel_order.index), f"{name} {kv.kernel}"
    assert len(seen) >= 10, f"the example hosts show too few reasons to test the order: {sorted(seen)}"


def test_readiness_names_the_collectors_registered_with_readiness():
    text = READINESS.read_text()
    m = re.search(r"registered with `readiness=True`[^:]*: ((?:`[a-z_]+`[,\s]*(?:and\s+)?)+)", text)
    assert m, "docs/readiness.md no longer lists the collectors readiness depends on"
    listed = re.findall(r"`([a-z_]+)`", m.group(1))
    assert listed == [c.name for c in collectors() if c.readiness], "list them in run order"


def test_architecture_names_the_collectors_registered_with_readiness():
    text = (DOCS / "architecture.md").read_text()
    m = re.search(r"are, in run order: ((?:`[a-z_]+`[,\s]*)+)", text)
    assert m, "docs/architecture.md no longer lists the collectors readiness depends on"
    assert re.findall(r"`([a-z_]+)`", m.group(1)) == [c.name for c in collectors() if c.readiness]


# --- code the docs name exists ---------------------------------------------------------------

DOC_FILES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
_PATH_REF = re.compile(r"\bexporter/((?:[A-Za-z_]\w*/)*[A-Za-z_]\w*\.py)(?::([A-Za-z_][\w.]*))?")
_DIR_REF = re.compile(r"`exporter/((?:[A-Za-z_]\w*/)*[A-Za-z_]\w*)/`")
_DOTTED_REF = re.compile(r"`(exporter(?:\.[A-Za-z_]\w*)+)`")
# module names of the flat layout before exporter/host, formats, collectors, ... (issue 12)
_OLD_FLAT_NAMES = ("kernels.py", "dkmstree.py", "hostfs.py", "filecache.py", "modfile.py", "initramfs_images.py")


def _defined(path: Path, symbol: str) -> bool:
    """Whether ``symbol`` (``name`` or ``Class.attr``) is defined at the top of a module."""
    body = ast.parse(path.read_text()).body
    for part in symbol.split("."):
        found = None
        for node in body:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            if part in names:
                found = node
                break
        if found is None:
            return False
        body = getattr(found, "body", [])
    return True


def _code_refs(text: str) -> list[tuple[str, str | None]]:
    """(path under exporter/, symbol or None) of every reference; `exporter/facts/NAME.py`
    (an upper-case part) is a placeholder, not a reference."""
    refs = [(m.group(1), m.group(2)) for m in _PATH_REF.finditer(text)]
    return [(rel, sym) for rel, sym in refs if not any(part.isupper() for part in rel[:-3].split("/"))]


def test_the_reference_checker_catches_what_is_gone():
    assert _code_refs("see `exporter/verdict/checks.py:assess_module` and exporter/kernels.py, "
                      "not exporter/facts/NAME.py") == [("verdict/checks.py", "assess_module"), ("kernels.py", None)]
    assert _defined(EXPORTER / "verdict" / "checks.py", "Evidence.of")
    assert not _defined(EXPORTER / "verdict" / "checks.py", "Evidence.nothing")
    assert not _defined(EXPORTER / "verdict" / "checks.py", "no_such_function")


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_every_exporter_file_and_function_a_doc_names_exists(doc):
    text = doc.read_text()
    missing = []
    for rel, symbol in _code_refs(text):
        path = EXPORTER / rel
        if not path.is_file():
            missing.append(f"exporter/{rel}")
        elif symbol and not _defined(path, symbol.rstrip(".")):
            missing.append(f"exporter/{rel}:{symbol}")
    for rel in _DIR_REF.findall(text):
        if not (EXPORTER / rel).is_dir():
            missing.append(f"exporter/{rel}/")
    for dotted in _DOTTED_REF.findall(text):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                missing.append(dotted)
            break
        else:
            missing.append(dotted)
    old = [name for name in _OLD_FLAT_NAMES if re.search(rf"(?<![\w/]){re.escape(name)}", text)]
    assert missing == [] and old == [], f"{doc.name} names code that does not exist: {missing + old}"


def test_every_exporter_file_and_function_a_source_file_names_exists():
    """Docstrings and comments (code, tests, scripts, deploy files) name real modules too."""
    missing = []
    for path in tracked_files():
        if path.suffix not in (".py", ".sh", ".yaml", ".yml", ".toml", ".cfg", "") or path.name == "test_docs.py":
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for rel, symbol in _code_refs(text):
            target = EXPORTER / rel
            if not target.is_file() or (symbol and not _defined(target, symbol.rstrip("."))):
                missing.append(f"{path.relative_to(REPO)}: exporter/{rel}" + (f":{symbol}" if symbol else ""))
    assert missing == [], "source files name code that does not exist:\n" + "\n".join(missing)


def test_architecture_follows_the_code_by_name():
    """docs/architecture.md walks through real code: it must keep naming plenty of it, the
    worked example's steps included."""
    refs = {f"{rel}:{sym}" if sym else rel for rel, sym in _code_refs((DOCS / "architecture.md").read_text())}
    assert len(refs) >= 60, len(refs)
    for step in ("collectors/kernel.py:_headers", "verdict/checks.py:_dkms_problem",
                 "verdict/readiness.py:_kernel_problems", "output/metrics/readiness.py:section",
                 "output/check.py:render_text", "collectors/__init__.py:register",
                 "scrape/scheduler.py:gather", "scrape/scraper.py:Scraper.scrape",
                 "host/reader.py:read_bounded", "host/cache.py:FileCache", "distro/__init__.py:detect"):
        assert step in refs, step


# --- docs/X.md, "Title" citations ------------------------------------------------------------

_CITATION = re.compile(r"docs/([a-z]+\.md),\s+\"([^\"]+)\"")
FORMATS_SECTIONS = ("Kernel module files", "Initramfs images", "EFI variables and signature lists",
                    "Boot loaders", "Module signature enforcement")


def headings(doc: Path) -> set[str]:
    return {h.strip() for h in re.findall(r"^#{1,6} (.+)$", doc.read_text(), re.M)}


def citations() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(EXPORTER.rglob("*.py")):
        for doc, title in _CITATION.findall(path.read_text()):
            found.append((str(path.relative_to(REPO)), doc, title))
    return found


def test_every_cited_docs_section_exists():
    cited = citations()
    assert {t for _, doc, t in cited if doc == "formats.md"} >= set(FORMATS_SECTIONS), \
        "the parsers no longer cite docs/formats.md's sections (or the check no longer finds them)"
    missing = [(where, doc, title) for where, doc, title in cited
               if not (DOCS / doc).is_file() or title not in headings(DOCS / doc)]
    assert missing == [], f"docstrings cite sections that do not exist: {missing}"


def test_formats_md_has_the_sections_the_parsers_rely_on():
    assert set(FORMATS_SECTIONS) <= headings(DOCS / "formats.md")


# --- nothing points outside the repository ---------------------------------------------------

# Written in pieces so that this file does not match itself.
_OUTSIDE = re.compile("|".join((
    "/" + "work/",                        # the workplace these files were written in
    r"(?<![\w.-])" + "shared" + "/",      # its shared notes
    "design" + r"/[\w.-]+\.md",           # design notes kept there
    "HELPER" + "-BRIEF",
    r"\." + "mirror/", r"\." + "library/",  # fetched snapshots and search corpora
    "bash" + "_jobs",
)).encode())


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot list the repository's files with git: {exc}")
    return [REPO / p for p in sorted(set(out.decode().split("\0"))) if p and (REPO / p).is_file()]


def test_the_outside_pattern_matches_what_it_must():
    for bad in (b"see /" + b"work" + b"/x", b"/sha" + b"red" + b"/notes", b"design" + b"/formats.md",
                b"HELPER" + b"-BRIEF.md", b"/." + b"mirror" + b"/dell+dkms"):
        assert _OUTSIDE.search(bad), bad
    for fine in (b"/usr/share/doc", b"libfoo-shared/x", b"docs/formats.md", b"network/"):
        assert not _OUTSIDE.search(fine), fine


def test_nothing_in_the_repository_points_outside_it():
    files = tracked_files()
    assert len(files) > 100 and REPO / "exporter" / "cli.py" in files
    offenders = []
    for path in files:
        data = path.read_bytes()
        for m in _OUTSIDE.finditer(data):
            line = data.count(b"\n", 0, m.start()) + 1
            offenders.append(f"{path.relative_to(REPO)}:{line}: {m.group().decode(errors='replace')}")
    assert offenders == [], "files point outside the repository:\n" + "\n".join(offenders)
