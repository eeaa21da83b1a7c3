"""Fixtures of the RHEL-layout tests: build (or reuse) the trees of tests/rhelhost/build.py; a failed
build fails the tests with its reason, never skips them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class RhelHost:
    root: Path
    host: dict

    def tree(self, scenario: str) -> Path:
        return self.root / "scenarios" / scenario / "tree"

    def scenario(self, name: str) -> dict:
        return json.loads((self.root / "scenarios" / name / "scenario.json").read_text())


@pytest.fixture(scope="session")
def rhelhost() -> RhelHost:
    from rhelhost.build import ensure_rhelhost
    try:
        root = ensure_rhelhost()
    except RuntimeError as exc:
        pytest.fail(f"tests/rhelhost/build.py failed: {exc}", pytrace=False)
    return RhelHost(root, json.loads((root / "host.json").read_text()))
