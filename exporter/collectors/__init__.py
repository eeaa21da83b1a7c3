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
    order: list[Collector] = []
    done: set[str] = set()
    pending = sorted(registry)
    while pending:
        ready = [n for n in pending if all(d in done for d in registry[n].after + registry[n].uses)]
        if not ready:
            missing = {n: [d for d in registry[n].after + registry[n].uses if d not in registry] for n in pending}
            raise ValueError(f"collector dependencies cannot be met: {missing}")
        order.append(registry[ready[0]])
        done.add(ready[0])
        pending.remove(ready[0])
    return order
