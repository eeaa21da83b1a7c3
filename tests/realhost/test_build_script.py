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


def test_trixie_has_its_own_root_inside_the_cache(tmp_path) -> None:
    """Debian 13's builds live below realhost/trixie, where bookworm's garbage collection (which
    only looks at realhost/bases and realhost/builds) never deletes them."""
    env = {**os.environ, "DKMS_EXPORTER_TEST_CACHE": str(tmp_path / "cache"), "DKMS_EXPORTER_REALHOST_SUITE": "trixie"}
    r = subprocess.run(["bash", str(BUILD), "--print"], capture_output=True, text=True, env=env, timeout=30,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "cache" / "realhost" / "trixie")


def test_an_unknown_generation_is_refused(tmp_path) -> None:
    env = {**os.environ, "DKMS_EXPORTER_TEST_CACHE": str(tmp_path / "cache"), "DKMS_EXPORTER_REALHOST_SUITE": "sid"}
    r = subprocess.run(["bash", str(BUILD), "--print"], capture_output=True, text=True, env=env, timeout=30,
                       check=False)
    assert r.returncode == 2 and "bookworm or trixie" in r.stderr, r.stderr


def test_every_scenario_has_a_builder_and_a_verdict() -> None:
    text = (HERE / "scenarios.sh").read_text()
    for name in SCENARIOS:
        assert f"\nscenario_{name}() {{" in text, name
    assert set(EXPECTED_CHECK) == set(SCENARIOS)


FAKE_APT_CACHE = r"""#!/bin/bash
# apt-cache for pick_kernels: `pkgnames PREFIX` and `madison PKG...` from $FAKE_APT (lines "pkg version");
# the -o options naming trixie's own lists are dropped.
cmd=$1; shift; args=()
while (($#)); do if [[ $1 == -o ]]; then shift 2; else args+=("$1"); shift; fi; done
set -- "$cmd" "${args[@]}"
case $1 in
  pkgnames) awk -v p="$2" 'index($1, p) == 1 {print $1}' "$FAKE_APT" | sort -u ;;
  madison) shift; for p in "$@"; do
             awk -v p="$p" '$1 == p {printf " %s | %s | http://deb.debian.org/debian bookworm/main amd64 Packages\n", $1, $2}' "$FAKE_APT"
           done ;;
  *) exit 100 ;;
esac
"""


def offer(*abis: tuple[int, str, bool], kbuild: tuple[str, ...], cloud: bool = False) -> str:
    """apt's offer: (ABI, version, headers offered?) per 6.1 ABI, and the linux-kbuild-6.1 versions."""
    lines = [f"linux-kbuild-6.1 {v}" for v in kbuild]
    for nn, version, headers in abis:
        flavours = ["amd64", "cloud-amd64"] if cloud else ["amd64"]
        lines += [f"linux-image-6.1.0-{nn}-{f} {version}" for f in flavours]
        if headers:
            lines += [f"linux-headers-6.1.0-{nn}-{f} {version}" for f in flavours]
            lines.append(f"linux-headers-6.1.0-{nn}-common {version}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("apt", "chosen"), [
    # What the mirror offered when this was written: headers for the newest ABI and the point
    # release's; 55 is the same upstream release as 56 (identical CRCs) and has no headers.
    (offer((56, "6.1.192-2", True), (55, "6.1.192-1", False), (52, "6.1.180-1", False),
           (50, "6.1.176-1", True), kbuild=("6.1.192-2", "6.1.176-1")),
     "6.1.0-56-amd64 6.1.0-50-amd64"),
    # An older ABI of the same upstream release is passed over even with headers.
    (offer((56, "6.1.192-2", True), (55, "6.1.192-1", True), (50, "6.1.176-1", True),
           kbuild=("6.1.192-2",)),
     "6.1.0-56-amd64 6.1.0-50-amd64"),
    # The newest headers need a linux-kbuild-6.1 the mirror no longer has: the next ABI with headers.
    (offer((56, "6.1.192-2", True), (55, "6.1.192-1", False), (50, "6.1.176-1", True),
           (49, "6.1.174-1", True), kbuild=("6.1.176-1",)),
     "6.1.0-50-amd64 6.1.0-49-amd64"),
    # A single ABI: its cloud flavour (newer in dpkg's order) gets the headers.
    (offer((56, "6.1.192-2", True), kbuild=("6.1.192-2",), cloud=True),
     "6.1.0-56-cloud-amd64 6.1.0-56-amd64"),
    # Nothing with headers at all.
    (offer((56, "6.1.192-2", False), (55, "6.1.192-1", False), kbuild=("6.1.192-2",)), None),
    # No older upstream release with headers (and no cloud flavour).
    (offer((56, "6.1.192-2", True), (55, "6.1.192-1", True), (50, "6.1.176-1", False),
           kbuild=("6.1.192-2",)), None),
])
def test_pick_kernels(tmp_path, apt: str, chosen: str | None) -> None:
    r = pick(tmp_path, apt, "bookworm")
    if chosen is None:
        assert r.returncode != 0 and "apt offers no two 6.1 kernels" in r.stderr, r.stdout + r.stderr
    else:
        assert r.returncode == 0, r.stderr
        new, old = chosen.split()
        assert r.stdout.split() == [new, old, f"linux-headers-{new}", f"linux-headers-{old}"]


def trixie_offer(*abis: tuple[str, bool]) -> str:
    """Debian 13's naming: one ABI per upstream release (6.12.118+deb13), one linux-kbuild per ABI."""
    lines = []
    for abi, headers in abis:
        version = abi.split("+")[0] + "-1"
        lines += [f"linux-image-{abi}-amd64 {version}", f"linux-image-{abi}-amd64-unsigned {version}",
                  f"linux-kbuild-{abi} {version}"]
        if headers:
            lines += [f"linux-headers-{abi}-amd64 {version}", f"linux-headers-{abi}-common {version}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("apt", "chosen"), [
    # What the mirror offered when this was written (version order, not text order: 118 > 113).
    # 117 has headers but 118's module_layout CRC: passed over.
    (trixie_offer(("6.12.118+deb13", True), ("6.12.117+deb13", True), ("6.12.113+deb13", True),
                  ("6.12.99+deb13", False)),
     "6.12.118+deb13-amd64 6.12.113+deb13-amd64 linux-headers-6.12.118+deb13-common"),
    (trixie_offer(("6.12.118+deb13", True), ("6.12.117+deb13", True), ("6.12.99+deb13", False)), None),
    (trixie_offer(("6.12.99+deb13", True), ("6.12.118+deb13", False), ("6.12.100+deb13", True)),
     "6.12.100+deb13-amd64 6.12.99+deb13-amd64 linux-headers-6.12.100+deb13-common"),
    (trixie_offer(("6.12.118+deb13", True), ("6.12.117+deb13", False)), None),
])
def test_pick_kernels_trixie(tmp_path, apt: str, chosen: str | None) -> None:
    r = pick(tmp_path, apt, "trixie", extra=" $HDR_COMMON_PKG")
    if chosen is None:
        assert r.returncode != 0 and "apt offers no two 6.12 kernels" in r.stderr, r.stdout + r.stderr
    else:
        assert r.returncode == 0, r.stderr
        new, old, common = chosen.split()
        assert r.stdout.split() == [new, old, f"linux-headers-{new}", f"linux-headers-{old}", common]


def pick(tmp_path, apt: str, suite: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    """pick_kernels of build.sh against a fake apt-cache offering `apt`."""
    (tmp_path / "apt").write_text(apt)
    fake = tmp_path / "bin" / "apt-cache"
    fake.parent.mkdir()
    fake.write_text(FAKE_APT_CACHE)
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "FAKE_APT": str(tmp_path / "apt"),
           "DKMS_EXPORTER_TEST_CACHE": str(tmp_path / "cache"), "DKMS_EXPORTER_REALHOST_SUITE": suite}
    env.pop("DKMS_EXPORTER_REALHOST_KERNELS", None)
    # module_layout's CRC per kernel (trixie reads it from the headers .deb): 6.12.117 shares
    # 6.12.118's, as on the mirror; every other kernel has its own.
    fake_layout = ('module_layout_of() { case $1 in 6.12.117+deb13-amd64|6.12.118+deb13-amd64) echo 0x2f9b2b9a ;; '
                   '*) echo "$1" ;; esac; }')
    script = (f'source "{BUILD}" && {fake_layout} && pick_kernels && '
              f'echo "$NEW_K $OLD_K $HDR_PKG $OLD_HDR_PKG{extra}"')
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
