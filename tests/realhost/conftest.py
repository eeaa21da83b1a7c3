"""Fixtures of the real-host tests: build (or reuse) the trees, load the real tools' outputs, run
the exporter's CLI on a tree.  A failed build or a missing exporter fails the tests, never skips."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from testkit import realhost_scenarios, slow_artifact

from .reference import Reference, load_reference

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = HERE / "build.sh"
BUILD_TIMEOUT = 45 * 60   # a cold build takes about 7 minutes on 2 cores; warm, about 2 seconds
EXPORTER_TIMEOUT = 120


SCENARIOS = realhost_scenarios()
# The Debian generations build.sh makes (DKMS_EXPORTER_REALHOST_SUITE): every real-host test runs
# on each one named, so a difference between dkms 3.0.10 (bookworm) and 3.2 (trixie) fails a test.
# Both by default (so .ci/run runs both); DKMS_EXPORTER_REALHOST_GENERATIONS=bookworm runs one.
GENERATIONS = tuple(g for g in os.environ.get("DKMS_EXPORTER_REALHOST_GENERATIONS", "bookworm,trixie").split(",")
                    if g)


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class RealHost:
    """One build of one generation: root/scenarios/NAME/{tree,ref} and root/host.env."""

    root: Path
    env: dict[str, str]
    suite: str = "bookworm"

    def reference(self, scenario: str) -> Reference:
        return load_reference(self.root / "scenarios" / scenario)

    def tree(self, scenario: str) -> Path:
        return self.root / "scenarios" / scenario / "tree"


def run_build(out: list[str], suite: str = "bookworm") -> int:
    """Runs build.sh for one generation, echoing its progress lines (a cold build takes minutes)
    and keeping them in `out`; killed after BUILD_TIMEOUT seconds."""
    env = {**os.environ, "DKMS_EXPORTER_REALHOST_SUITE": suite}
    proc = subprocess.Popen(["bash", str(BUILD)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    timer = threading.Timer(BUILD_TIMEOUT, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            sys.stderr.write(line)
            sys.stderr.flush()
        returncode = proc.wait()
    finally:
        timer.cancel()
    if timer.finished.is_set() and returncode < 0:
        out.append(f"(killed after {BUILD_TIMEOUT}s)\n")
    return returncode


def trixie_variant_build(script: str, marker: str, timeout: int) -> Path:
    """Builds (or reuses) the trixie real host, then the variant trees SCRIPT makes from it
    (sdboot.sh, ukiboot.sh); returns the directory the script printed as MARKER=DIR."""
    out: list[str] = []
    if run_build(out, "trixie") != 0:
        pytest.fail(f"trixie build.sh failed:\n{tail(''.join(out), 40)}", pytrace=False)
    [src] = [line.split("=", 1)[1].strip() for line in out if line.startswith("REALHOST_DIR=")][-1:]
    p = subprocess.run(["bash", str(HERE / script), src], capture_output=True, text=True, timeout=timeout,
                       check=False)
    if p.returncode != 0:
        pytest.fail(f"{script} failed (exit {p.returncode}):\n{tail(p.stdout + p.stderr, 40)}", pytrace=False)
    return Path([line for line in p.stdout.splitlines() if line.startswith(f"{marker}=")][-1].split("=", 1)[1])


def variant_env(ref: Path) -> dict[str, str]:
    """A variant's ref/entries.env (KEY=VALUE lines the build script wrote) as a dict."""
    return dict(line.split("=", 1) for line in (ref / "entries.env").read_text().splitlines() if "=" in line)


@pytest.fixture(scope="session", params=GENERATIONS)
def realhost(request: pytest.FixtureRequest) -> RealHost:
    """Runs build.sh for one generation (warm: reuses the cache), its progress shown live past
    pytest's capture; a failed build fails with the end of its output."""
    suite: str = request.param
    slow_artifact(f"the real-host build of Debian {suite} (tests/realhost/build.sh)")
    out: list[str] = []
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        returncode = run_build(out, suite)
    if returncode != 0:
        pytest.fail(f"DKMS_EXPORTER_REALHOST_SUITE={suite} tests/realhost/build.sh failed (exit {returncode}):\n"
                    f"{tail(''.join(out), 60)}",
                    pytrace=False)
    dirs = [line.split("=", 1)[1].strip() for line in out if line.startswith("REALHOST_DIR=")]
    if not dirs:
        pytest.fail(f"tests/realhost/build.sh printed no REALHOST_DIR=:\n{tail(''.join(out), 20)}", pytrace=False)
    root = Path(dirs[-1])
    env = dict(line.split("=", 1) for line in (root / "host.env").read_text().splitlines() if "=" in line)
    built = env.get("SCENARIOS", "").strip('"').split()
    if tuple(built) != SCENARIOS:
        pytest.fail(f"build.sh built scenarios {built}, scenarios.sh names {list(SCENARIOS)}", pytrace=False)
    return RealHost(root, env, suite)


@dataclass(frozen=True)
class ExporterRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
                f"stderr (end):\n{tail(self.stderr, 30)}\nstdout (start):\n{self.stdout[:3000]}")


class Exporter:
    """Runs `python -m exporter` on scenario trees, once per scenario and command."""

    COMMANDS: ClassVar[dict[str, list[str]]] = {"metrics": ["metrics"], "check": ["check", "--json"]}

    def __init__(self, host: RealHost) -> None:
        self.host = host
        self.runs: dict[tuple[str, str], ExporterRun] = {}

    def _execute(self, scenario: str, command: str) -> ExporterRun:
        argv = [sys.executable, "-m", "exporter", *self.COMMANDS[command],
                "--path.rootfs", str(self.host.tree(scenario))]
        try:
            p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=EXPORTER_TIMEOUT,
                               check=False)
            return ExporterRun(argv, p.returncode, p.stdout, p.stderr)
        except subprocess.TimeoutExpired:
            return ExporterRun(argv, -1, "", f"timed out after {EXPORTER_TIMEOUT}s")

    def prefetch(self, scenarios: tuple[str, ...]) -> None:
        """Runs every scenario and command at once, one process per core (each is ~1 s of Python)."""
        keys = [(s, c) for s in scenarios for c in self.COMMANDS]
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            for key, run in zip(keys, pool.map(lambda k: self._execute(*k), keys)):
                self.runs[key] = run

    def run(self, scenario: str, command: str) -> ExporterRun:
        if (scenario, command) not in self.runs:
            self.runs[(scenario, command)] = self._execute(scenario, command)
        return self.runs[(scenario, command)]

    def metrics(self, scenario: str) -> str:
        """The `metrics` text; fails (with the command's output) when the exporter side is missing or broken."""
        r = self.run(scenario, "metrics")
        if r.returncode != 0 or not r.stdout.strip():
            missing = "No module named" in r.stderr or "invalid choice" in r.stderr
            pytest.fail(("the exporter side is missing: `python -m exporter metrics` is not available yet"
                         if missing else "the exporter's `metrics` failed on this tree")
                        + f"\n{r.describe()}", pytrace=False)
        return r.stdout


@pytest.fixture(scope="session")
def exporter(realhost: RealHost) -> Exporter:
    runner = Exporter(realhost)
    runner.prefetch(SCENARIOS)
    return runner
