"""What the real depmod says of a weak-updates link, the reference both RPM-family weak-modules
tests (RHEL's weak-modules, SUSE's weak-modules2) compare the exporter's CRC check with."""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

from testkit import require_tool


def depmod_disagreements(tmp_path: Path, tree: Path, kernel: str, link: str, target: str) -> tuple[set[str], str]:
    """The symbols `depmod -naeE` says the module at ``target`` (a path in ``tree``) disagrees
    about when linked as ``link`` (relative to lib/modules/KERNEL) into a sandbox for ``kernel``,
    with that kernel's own symvers; and depmod's stderr, for the assertion message."""
    sandbox = tmp_path / kernel
    link_path = sandbox / "lib/modules" / kernel / link
    link_path.parent.mkdir(parents=True)
    link_path.symlink_to(tree / target)
    symvers = tmp_path / f"symvers-{kernel}"
    symvers.write_bytes(gzip.decompress((tree / f"boot/symvers-{kernel}.gz").read_bytes()))
    proc = subprocess.run([require_tool("depmod"), "-b", str(sandbox), "-naeE", str(symvers), kernel],
                          capture_output=True, text=True)
    return set(re.findall(r"disagrees about version of symbol (\S+)", proc.stderr)), proc.stderr
