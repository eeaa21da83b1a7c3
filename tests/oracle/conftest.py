"""Fixtures of the oracle tests: every scenario x kernel of every Debian generation (GENERATIONS:
bookworm, trixie) booted once (equal boots shared), two QEMUs at a time, while holding the
real-host builders' locks shared.  A boot whose inputs are byte-identical to a recorded one is
replayed from tests/oracle/records.py; the canaries (CANARIES) boot on every run.  Failures to
build or boot fail the tests with the reason; nothing is skipped."""

from __future__ import annotations

import contextlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from testkit import slow_artifact

from . import artifacts
from .harness import BootResult, BootSpec, boot
from .judge import Row, judge_kernel
from .scenarios import GENERATIONS, Case, SharedLock, cases, ensure_realhost, os_cpu_count

# Booted on every run, replayed never, per Debian generation: the newest kernel of healthy (a
# direct boot: SeaBIOS, the payload, loadmod, the module loads) and of signed_sb_on (OVMF, shim,
# grub, the MOK in the variable store, the capture).  A broken harness, QEMU, OVMF or shim cannot
# hide behind the records, and each canary's answer is compared with its record.
CANARIES = ("healthy", "signed_sb_on")


@dataclass
class OracleRun:
    """All cases, their boots (by BootSpec key) and the wall time of the whole stage."""

    cases: list[Case]
    boots: dict[str, BootResult]
    seconds: float
    workdir: Path
    rows: dict[tuple[str, str], list[Row]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)   # empty-plan spec key -> the boot it shares
    canaries: set[str] = field(default_factory=set)         # spec keys booted whatever the records hold

    def result(self, case: Case) -> BootResult:
        return self.boots[case.spec.key()]

    def distinct(self, generation: str | None = None) -> list[BootResult]:
        """The boots that ran (not the aliases), of one generation or all."""
        keys = {c.spec.key() for c in self.cases if generation in (None, c.generation)} - set(self.aliases)
        return [self.boots[k] for k in sorted(keys)]

    def cpu_seconds(self, generation: str | None = None) -> float:
        """QEMU's CPU time over the distinct boots: the stage's cost whatever else runs."""
        return sum(b.cpu_seconds for b in self.distinct(generation))

    def report(self) -> str:
        replayed = sum(b.replayed for b in self.distinct())
        lines = [(f"oracle stage: {len(self.cases)} scenario x kernel cases, "
                  f"{len(self.boots) - len(self.aliases)} boots ({replayed} replayed from records), "
                  f"{self.seconds:.0f}s wall, {self.cpu_seconds():.0f}s QEMU CPU (recorded boots' included)")]
        for g in dict.fromkeys(c.generation for c in self.cases):
            boots = self.distinct(g)
            lines.append(f"   {g}: {sum(c.generation == g for c in self.cases)} cases, {len(boots)} boots, "
                         f"{self.cpu_seconds(g):.0f}s QEMU CPU, {sum(b.seconds for b in boots):.0f}s QEMU wall summed")
        for case in self.cases:
            r = self.result(case)
            mode = "secure-boot" if case.spec.secure_boot else "direct"
            how = "replayed" if r.replayed else "canary" if case.spec.key() in self.canaries else "booted"
            lines.append(f"== {case.generation}: {case.scenario} / {case.kernel}: {mode} boot {r.status} in {r.seconds:.1f}s ({r.cpu_seconds:.1f}s CPU, {how}) "
                         f"(init at {r.view.began_at}s kernel time) [{case.spec.key()}"
                         + (f" = boot {self.aliases[case.spec.key()]}]" if case.spec.key() in self.aliases else "]"))
            lines += ["   " + row.line() for row in self.rows[(case.scenario, case.kernel)]]
        return "\n".join(lines)


def _run_all(work: Path) -> OracleRun:
    from rhelhost.build import ensure_rhelhost
    builds = {g: ensure_realhost(g) for g in GENERATIONS}
    rhelhost = ensure_rhelhost() if "bookworm" in builds else None   # derived from bookworm's tree
    with contextlib.ExitStack() as locks:
        for build in (*builds.values(), *([rhelhost] if rhelhost else [])):
            locks.enter_context(SharedLock(build))
        start = time.monotonic()
        all_cases = [c for g, build in builds.items()
                     for c in cases(build, rhelhost if g == "bookworm" else None, g)]
        specs = {c.spec.key(): c.spec for c in all_cases}
        aliases = _empty_plan_aliases(specs)
        canaries = canary_keys(all_cases)
        workers = max(1, min(2, os_cpu_count()))
        with ThreadPoolExecutor(workers) as pool:
            futures = {key: pool.submit(boot, spec, work / key, fresh=key in canaries) for key, spec in specs.items()
                       if key not in aliases}
            boots = {key: f.result() for key, f in futures.items()}
        boots.update({key: boots[target] for key, target in aliases.items()})
        run = OracleRun(all_cases, boots, time.monotonic() - start, work, aliases=aliases, canaries=canaries)
    for case in all_cases:
        run.rows[(case.scenario, case.kernel)] = judge_kernel(case.kernel, case.doc, run.result(case))
    report = run.report()
    (work / "report.txt").write_text(report + "\n")
    (artifacts.oracle_cache() / "last-report.txt").write_text(report + "\n")
    (work / "timings.json").write_text(json.dumps(
        {k: {"seconds": b.seconds, "status": b.status, "init_at": b.view.began_at, "release": b.spec.release, "cpu_seconds": b.cpu_seconds,
             "secure_boot": b.spec.secure_boot is not None, "replayed": b.replayed} for k, b in boots.items()}, indent=1))
    return run


def canary_keys(all_cases: list[Case]) -> set[str]:
    """The spec keys of CANARIES' newest kernel in every generation."""
    keys = set()
    for g in dict.fromkeys(c.generation for c in all_cases):
        for scenario in CANARIES:
            mine = [c for c in all_cases if c.generation == g and c.scenario == scenario]
            if mine:
                keys.add(max(mine, key=lambda c: _release_order(c.kernel)).spec.key())
    return keys


def _release_order(kernel: str) -> list:
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.split(r"[-.+]", kernel)]


def _empty_plan_aliases(specs: dict[str, BootSpec]) -> dict[str, str]:
    """Specs with no module to try are judged only on whether the kernel boots to the init: one
    that boots the same kernel and initramfs with modules to try answers that too (no extra boot)."""
    with_plan: dict[str, str] = {}
    for key, spec in specs.items():
        if spec.modules:
            with_plan.setdefault(spec.image_key(), key)
    return {key: with_plan[spec.image_key()] for key, spec in specs.items()
            if not spec.modules and not spec.capture and spec.image_key() in with_plan}


@pytest.fixture(scope="session")
def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> OracleRun:
    slow_artifact("QEMU boots of the real-host trees (the oracle)")
    work = tmp_path_factory.mktemp("oracle")
    try:
        return _run_all(work)
    except artifacts.MissingTool as e:
        pytest.fail(str(e), pytrace=False)
    except RuntimeError as e:
        pytest.fail(f"the oracle could not run: {e}", pytrace=False)
