"""Shared test helpers: build hosts, scrape them, require the real tools."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from hostbuilder import Host  # noqa: E402

from exporter.config import Config  # noqa: E402
from exporter.host.rootfs import HostFS  # noqa: E402
from exporter.scrape.scraper import Scrape, Scraper  # noqa: E402


def require_tool(name: str) -> str:
    """The path of a real tool the test compares against; a missing one fails, never skips."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/test installs it from .ci/apt-packages")
    return path


def scrape(root: Path, config: Config | None = None, **kw) -> Scrape:
    return Scraper(HostFS(root, **kw), config or Config()).scrape()


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "host")
