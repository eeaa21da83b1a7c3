"""build.sh and scenarios.sh themselves (no build needed): shellcheck-clean, --print honours
DKMS_EXPORTER_TEST_CACHE, and the scenario list the tests parametrize over is the one built."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import BUILD, HERE, SCENARIOS
from .test_differential import EXPECTED_CHECK


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: scripts/test installs it from .ci/apt-packages")
    r = subprocess.run([shellcheck, "-x", "-P", "SCRIPTDIR", str(BUILD), str(HERE / "scenarios.sh")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_print_names_the_cache_dir(tmp_path) -> None:
    env = {**os.environ, "DKMS_EXPORTER_TEST_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(["bash", str(BUILD), "--print"], capture_output=True, text=True, env=env, timeout=30,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "cache" / "realhost")
    assert not (tmp_path / "cache").exists(), "--print must not create or build anything"


def test_every_scenario_has_a_builder_and_a_verdict() -> None:
    text = (HERE / "scenarios.sh").read_text()
    for name in SCENARIOS:
        assert f"\nscenario_{name}() {{" in text, name
    assert set(EXPECTED_CHECK) == set(SCENARIOS)
