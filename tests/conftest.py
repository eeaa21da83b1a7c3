"""pytest's side of the suite: tests/ on sys.path, the `host` and `public_tmp` fixtures, and the
two tiers (docs/testing.md).  The shared helpers themselves live in tests/testkit.py.

Tiers: `pytest` runs everything (what scripts/test and CI run); `pytest --quick` (scripts/test
--quick) leaves out every test marked slow, and realhost, oracle and live imply slow.  In the
quick tier, a test that reaches a slow artifact without the mark fails saying so
(testkit.slow_artifact), and the tests that took longer than QUICK_BUDGET are listed at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests judge the code, not the machine: on the shared 2-core CI machine (load 15-20)
# input generation alone can exceed Hypothesis' too_slow limit, and a timing health check that
# fails there proves nothing about the parser. Tests that set suppress_health_check themselves
# list too_slow too.
settings.register_profile("shared-machine", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("shared-machine")

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

import testkit  # noqa: E402
from hostbuilder import Host  # noqa: E402
from testkit import require_tool, scrape  # noqa: E402,F401  (still importable from conftest)

SLOW_KINDS = ("realhost", "rhelhost", "oracle", "live")   # markers that imply slow
QUICK_BUDGET = 5.0                            # seconds per test (setup + call + teardown)
_spent: dict[str, float] = {}                 # quick tier: node id -> seconds


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process main(): no --cache.dir unless the test passes one (see testkit.NO_CACHE)."""
    import exporter.cli
    monkeypatch.setattr(exporter.cli, "DEFAULT_CACHE_DIR", "")


@pytest.fixture(autouse=True, scope="session")
def _subprocess_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Exporters the tests start as processes keep their persistent cache in a directory of
    this run ($CACHE_DIRECTORY, as systemd's CacheDirectory= sets it), never in the machine's
    /var/cache: a cache left by an earlier run must not decide a later run's answer."""
    path = tmp_path_factory.mktemp("cache-dir")
    path.chmod(0o700)
    old = os.environ.get("CACHE_DIRECTORY")
    os.environ["CACHE_DIRECTORY"] = str(path)
    yield
    if old is None:
        os.environ.pop("CACHE_DIRECTORY", None)
    else:
        os.environ["CACHE_DIRECTORY"] = old


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true",
                     help="the quick tier: leave out the tests marked slow (realhost, oracle, live "
                          "imply slow); see docs/testing.md")


def pytest_configure(config: pytest.Config) -> None:
    testkit.QUICK = config.getoption("quick")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
    if not config.getoption("quick"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if testkit.QUICK:
        _spent[report.nodeid] = _spent.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not config.getoption("quick"):
        return
    over = sorted(((t, n) for n, t in _spent.items() if t > QUICK_BUDGET), reverse=True)
    if over:
        terminalreporter.section("quick tier: tests over its budget")
        terminalreporter.write_line(f"{len(over)} test(s) took more than {QUICK_BUDGET:.0f}s; "
                                    f"mark them slow if that is what they are (docs/testing.md):")
        for seconds, nodeid in over:
            terminalreporter.write_line(f"  {seconds:6.1f}s  {nodeid}")


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """An empty Debian 12 fixture host under tmp_path (tests/hostbuilder.py fills it)."""
    return Host(tmp_path / "host")


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory the user nobody (uid 65534) can reach, for testkit.run_as_nobody: pytest's own tmp
    dirs sit under a 0700 /tmp/pytest-of-root, where an unprivileged run would meet EACCES
    everywhere and prove nothing."""
    path = Path(tempfile.mkdtemp(prefix="dkms-tests-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
