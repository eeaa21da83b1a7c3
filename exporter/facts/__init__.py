"""Facts: what the collectors found on the host, as frozen dataclasses, one module per collector.

Collectors produce them; the verdict and output layers read them and nothing else of the host.
``HostFacts`` is one scrape's worth: every collector's run (its facts, duration, read errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..host.context import ReadError

T = TypeVar("T")


@dataclass
class CollectorRun:
    name: str
    facts: Any = None
    duration: float = 0.0
    errors: list[ReadError] = field(default_factory=list)
    crashed: str | None = None

    @property
    def success(self) -> bool:
        return self.crashed is None and not self.errors


@dataclass
class HostFacts:
    runs: dict[str, CollectorRun]
    enabled: frozenset[str]
    # collectors readiness depends on, whether or not they ran this scrape (a disabled one too)
    readiness_collectors: tuple[str, ...] = ()

    def get(self, kind: type[T]) -> T | None:
        """The facts of type ``kind`` from this scrape, None when its collector failed, was
        disabled or did not run."""
        for run in self.runs.values():
            if isinstance(run.facts, kind):
                return run.facts
        return None

    def failed(self, names: tuple[str, ...] | None = None) -> list[str]:
        """Which of these collectors (default: the ones readiness depends on) did not give
        trustworthy facts (failed or disabled)."""
        names = self.readiness_collectors if names is None else names
        return [n for n in names if n not in self.runs or not self.runs[n].success]
