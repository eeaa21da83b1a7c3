"""The package layout is the data flow: each layer imports only the layers below it.

host files -> formats (pure parsers) -> collectors (through host/) -> facts -> verdict -> output
and web.  The rules are read from the code's own imports (module level and inside functions), so
a shortcut across layers fails here, not in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EXPORTER = Path(__file__).resolve().parent.parent / "exporter"

# package -> the exporter packages (and top-level modules) it may import
ALLOWED = {
    "formats": {"formats"},
    "host": {"host", "config"},
    "facts": {"facts", "formats", "host"},
    "distro": {"distro", "facts", "formats", "host"},
    "collectors": {"collectors", "facts", "formats", "host", "distro", "config"},
    "verdict": {"verdict", "facts", "formats", "distro", "config"},
    "scrape": {"scrape", "collectors", "facts", "verdict", "host", "config", "process"},
    "output": {"output", "scrape", "verdict", "facts", "distro", "formats", "config", "__init__"},
    "web": {"web", "output", "scrape", "formats", "host", "config", "__init__"},
}


def _imports(path: Path) -> set[str]:
    """The exporter packages a module imports: 'formats' for exporter.formats.x, '__init__' for
    the package root itself (``from .. import __version__``)."""
    package = path.relative_to(EXPORTER).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1]) if node.level > 1 else list(package)
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "exporter":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                found.add(target[0])
            else:
                found.update(a.name if (EXPORTER / f"{a.name}.py").exists() or (EXPORTER / a.name).is_dir()
                             else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("exporter.") and len(a.name.split(".")) > 1)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_is_below_it(layer):
    offenders = {}
    for path in sorted((EXPORTER / layer).rglob("*.py")):
        bad = _imports(path) - ALLOWED[layer]
        if bad:
            offenders[str(path.relative_to(EXPORTER))] = sorted(bad)
    assert offenders == {}, f"{layer}/ may import only {sorted(ALLOWED[layer])}"


def test_the_two_rules_the_layout_is_built_on():
    """formats/ never imports host/; collectors/ never imports verdict/ or output/."""
    assert "host" not in ALLOWED["formats"]
    assert not {"verdict", "output"} & ALLOWED["collectors"]


def test_the_checker_sees_relative_and_absolute_imports(tmp_path, monkeypatch):
    fake = tmp_path / "exporter"
    (fake / "formats").mkdir(parents=True)
    module = fake / "formats" / "x.py"
    module.write_text("from ..host.reader import read_bounded\nimport exporter.verdict.fixes\n"
                      "def f():\n    from ..collectors import kernel\n")
    monkeypatch.setattr(__import__(__name__), "EXPORTER", fake)
    assert _imports(module) == {"host", "verdict", "collectors"}


def test_every_collector_file_is_named_like_its_flag():
    from exporter.collectors import collectors
    for c in collectors():
        assert Path(__import__("sys").modules[c.collect.__module__].__file__).stem == c.name


def test_every_package_has_a_docstring_saying_what_it_holds():
    for init in sorted(EXPORTER.rglob("__init__.py")):
        if init.parent == EXPORTER:
            continue
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} says nothing about its layer"


def test_every_family_backend_is_found_by_its_name():
    """exporter/distro/__init__.py imports backends by name (BACKENDS): each entry must lead to
    a Distro of that family, and every Distro module under exporter/distro/ must be listed."""
    import importlib
    import pkgutil

    import exporter.distro as distro
    from exporter.distro.base import Distro
    for family in distro.BACKENDS:
        backend = distro.for_family(family)
        assert isinstance(backend, Distro) and backend.family == family
    assert distro.for_family(None).family == distro.for_family("nonsense").family == "unknown"
    listed = {module for module, _ in distro.BACKENDS.values()}
    for info in pkgutil.iter_modules(distro.__path__):
        module = importlib.import_module(f"exporter.distro.{info.name}")
        backends = [v for v in vars(module).values()
                    if isinstance(v, Distro) and type(v).__module__ == module.__name__ and v.family != "unknown"]
        assert not backends or info.name in listed, info.name


def test_the_code_compiles_without_warnings():
    """An invalid escape sequence in a string is a DeprecationWarning on 3.11 and a SyntaxWarning
    from 3.12: printed on every import from source, and an error in some later Python."""
    import warnings

    for path in sorted(EXPORTER.rglob("*.py")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(path.read_text(), str(path), "exec")
