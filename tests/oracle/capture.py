"""Capture the trust files of a real Secure Boot boot into tests/data/efi-captures/.

    .venv/bin/python -m tests.oracle.capture [--out tests/data/efi-captures]

Boots the real-host tree's newest Debian kernel through OVMF (Secure Boot, Microsoft keys) +
Debian's signed shim + grub, with tests/data/keys/dkms-mok.der enrolled as a MOK (virt-fw-vars
--add-mok, for `mokutil --import` + MokManager).  The oracle init prints the files base64-encoded
on the serial console; they are written here under their host paths (sys/..., proc/keys), the
efivarfs files with their 4 attribute bytes, with PROVENANCE.json saying what booted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import artifacts
from .harness import BootResult, BootSpec, SecureBootSetup, boot
from .scenarios import REPO, SharedLock, ensure_realhost, installed_kernels

DEFAULT_OUT = REPO / "tests/data/efi-captures"
MOK_KEY = REPO / "tests/data/keys/dkms-mok.der"
SOURCE_SCENARIO = "signed_sb_on"


def capture_boot(work: Path) -> tuple[BootResult, dict]:
    """One Secure Boot boot with every capture on; returns it with its provenance."""
    realhost = ensure_realhost()
    with SharedLock(realhost):
        tree = realhost / "scenarios" / SOURCE_SCENARIO / "tree"
        kernel = installed_kernels(tree)[-1]
        spec = BootSpec(tree=tree, release=kernel, vmlinuz=tree / "boot" / f"vmlinuz-{kernel}",
                        initrd=tree / "boot" / f"initrd.img-{kernel}", modules=(),
                        secure_boot=SecureBootSetup((MOK_KEY.read_bytes(),)), capture=True)
        result = boot(spec, work)
    chain = artifacts.secure_boot_chain()
    provenance = {
        "captured": time.strftime("%Y-%m-%d", time.gmtime()),
        "kernel": kernel,
        "boot_chain": chain.describe(),
        "qemu": "qemu-system-x86_64 -machine q35,smm=on (TCG), secure pflash",
        "mok_enrolled": "tests/data/keys/dkms-mok.der (virt-fw-vars --add-mok)",
        "boot_seconds": round(result.seconds, 1),
        "facts": result.view.facts,
    }
    return result, provenance


def write_captures(result: BootResult, provenance: dict, out: Path) -> list[str]:
    """Replace ``out``'s captured files (README.md stays) with the boot's; return their paths."""
    if result.status != "ok" or not result.view.files:
        raise RuntimeError(f"the capture boot did not finish:\n{result.describe()}")
    for child in out.iterdir() if out.exists() else ():
        if child.name in ("sys", "proc"):
            shutil.rmtree(child)
    written = []
    for path, data in sorted(result.view.files.items()):
        target = out / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(path.lstrip("/"))
    provenance["files"] = written
    (out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="oracle-capture-") as tmp:
        result, provenance = capture_boot(Path(tmp))
        written = write_captures(result, provenance, args.out)
    print(f"captured {len(written)} files in {args.out} from a {result.seconds:.0f}s Secure Boot boot:")
    for path in written:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
