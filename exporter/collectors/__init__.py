"""The collectors: one file each, named like its ``--collector.NAME`` flag, registered from there.

A collector is a function Context -> facts (a frozen dataclass from exporter.facts).  Its file
registers it with ``@register(name, FactsType, after=..., uses=..., readiness=...)``:

- ``after``: collectors whose facts it reads (``ctx.previous[name]``); it runs once they
  returned, and is not run when one of them gave no facts;
- ``uses``: collectors whose facts it takes when there are some (to spare work, never to
  decide alone): it runs after them when they are enabled, and without them when they
  failed, are disabled or stalled;
- ``readiness``: readiness is only as good as this collector's facts: when it fails or is
  disabled, verdicts are "unknown", never "ready".

Adding a collector is one new file here (plus its metrics section in exporter/output/metrics/
and its lines in docs/metrics.md); nothing else lists the collectors.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from ..host.context import Context

F = TypeVar("F", bound=Callable[[Context], Any])


@dataclass(frozen=True)
class Collector:
    name: str
    collect: Callable[[Context], Any]
    facts: type
    after: tuple[str, ...] = ()
    readiness: bool = False
    doc: str = ""
    uses: tuple[str, ...] = ()


REGISTRY: dict[str, Collector] = {}   # name -> collector, filled by the modules' @register
_loaded = False


def register(name: str, facts: type, *, after: tuple[str, ...] = (), readiness: bool = False,
             uses: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Register the decorated function as the collector ``name`` producing ``facts``."""
    def decorate(fn: F) -> F:
        if name in REGISTRY and REGISTRY[name].collect is not fn:
            raise ValueError(f"collector {name!r} registered twice")
        doc = (sys.modules[fn.__module__].__doc__ or "").strip()
        REGISTRY[name] = Collector(name, fn, facts, tuple(after), readiness, doc.split("\n\n", 1)[0],
                                   tuple(uses))
        return fn
    return decorate


def collectors() -> list[Collector]:
    """Every collector, in run order: dependencies first, otherwise by name."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return _run_order(REGISTRY)


def by_name() -> dict[str, Collector]:
    return {c.name: c for c in collectors()}


def _run_order(registry: dict[str, Collector]) -> list[Collector]:
    """By name, each collector's dependencies (``after`` and ``uses``) pulled in just before it:
    so module runs right after os and secureboot, before packages, whose facts would otherwise
    be held through module's parsing (+0.5 MiB peak on the benchmark host)."""
    order: list[Collector] = []
    placed: set[str] = set()

    def place(name: str, path: tuple[str, ...]) -> None:
        if name in placed:
            return
        if name not in registry or name in path:
            raise ValueError(f"collector dependencies cannot be met: {' -> '.join(path + (name,))}")
        for dep in registry[name].after + registry[name].uses:
            place(dep, path + (name,))
        placed.add(name)
        order.append(registry[name])

    for name in sorted(registry):
        place(name, ())
    return order
