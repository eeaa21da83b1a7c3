"""`dkms-exporter check`: the reboot gate.  Exit 0 ready, 1 not ready, 2 undecidable."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import TextIO

from ..facts.bootloader import BootFacts
from ..facts.kernel import KernelFacts
from ..scrape import Scrape
from ..verdict.model import KernelVerdict

EXIT = {"ready": 0, "not_ready": 1, "unknown": 2}


def select(scrape: Scrape, kernel: str | None) -> tuple[list[KernelVerdict], str, list[str]]:
    """The kernels to judge (the boot targets, or the one asked for) and the verdict over them."""
    r = scrape.readiness
    notes = list(r.notes)
    if kernel is None:
        chosen = [k for k in r.kernels if k.target]
        return chosen, r.verdict, notes
    kv = r.kernel(kernel)
    if kv is None:
        notes.append(f"kernel {kernel} is not installed (no image in /boot)")
        return [], "unknown", notes
    return [kv], kv.verdict, notes


def as_json(scrape: Scrape, kernel: str | None = None) -> dict:
    chosen, verdict, notes = select(scrape, kernel)
    facts = scrape.facts
    k = facts.get(KernelFacts)
    boot = facts.get(BootFacts)
    return {
        "verdict": verdict,
        "exit_code": EXIT[verdict],
        "running_kernel": k.running if k else None,
        "newest_kernel": k.newest if k else None,
        "next_boot": {"kernel": scrape.readiness.next_boot, "how": scrape.readiness.next_boot_how,
                      "loader": boot.loader if boot else "unknown"},
        "targets": list(scrape.readiness.targets),
        "rollback_kernels_ready": scrape.readiness.rollback_ready,
        "kernels": [kernel_json(kv) for kv in chosen],
        "collectors": {name: {"success": run.success, "crashed": run.crashed,
                              "errors": [{"path": e.path, "error": e.message} for e in run.errors]}
                       for name, run in facts.runs.items()},
        "notes": notes,
    }


def kernel_json(kv: KernelVerdict) -> dict:
    return {
        "kernel": kv.kernel, "verdict": kv.verdict,
        "roles": [r for r, on in (("running", kv.running), ("newest", kv.newest),
                                  ("next_boot", kv.next_boot), ("target", kv.target)) if on],
        "unknown_because": list(kv.unknown_because),
        "problems": [asdict(p) for p in kv.kernel_problems],
        "modules": [{"module": m.module, "dkms": m.dkms, "state": m.state, "working": m.working,
                     "expected_because": list(m.expected_because), "file": m.file,
                     "early_boot": m.early_boot, "in_initramfs": m.in_initramfs,
                     "signature": _identity(m.signature) if m.signature else None,
                     "problems": [asdict(p) for p in m.problems]} for m in kv.modules],
    }


def header(scrape: Scrape) -> str:
    """running · newest · next boot (and how the bootloader was read)."""
    k = scrape.facts.get(KernelFacts)
    r = scrape.readiness
    return (f"running {k.running if k else '?'} · newest {k.newest if k else '?'} · next boot "
            f"{r.next_boot or 'unknown'}" + (f" ({r.next_boot_how})" if r.next_boot_how else ""))


COLUMNS = ("KERNEL", "MODULE", "DKMS", "STATE", "VERDICT", "REASON", "FIX")


def rows(chosen: list[KernelVerdict]) -> list[tuple[str, ...]]:
    """One row per working module and per problem: the table `check` prints and the landing
    page shows (same columns as COLUMNS)."""
    out: list[tuple[str, ...]] = []
    for kv in chosen:
        for m in kv.modules:
            if m.working:
                out.append((kv.kernel, m.module, m.dkms or "-", m.state or "-", "ok", "-", "-"))
            for p in m.problems:
                mark = "BROKEN" if p.severity == "error" else "warning"
                out.append((kv.kernel, m.module, m.dkms or "-", m.state or "-", mark, p.reason, p.fix))
        for p in kv.kernel_problems:
            out.append((kv.kernel, "-", "-", "-", "BROKEN" if p.severity == "error" else "warning",
                        p.reason, p.fix))
        if not kv.modules and not kv.kernel_problems:
            out.append((kv.kernel, "-", "-", "-", "ok", "no out-of-tree modules needed", "-"))
    return out


def details(chosen: list[KernelVerdict]) -> list[str]:
    """Why each problem is one, in the verdict's words."""
    lines = [f"{kv.kernel} {m.module}: {p.reason}: {p.detail}" for kv in chosen for m in kv.modules
             for p in m.problems]
    return lines + [f"{kv.kernel}: {p.reason}: {p.detail}" for kv in chosen for p in kv.kernel_problems]


def diagnostics(scrape: Scrape, chosen: list[KernelVerdict], notes: list[str]) -> list[str]:
    """What made a verdict undecidable, every file a collector could not read, and notes."""
    lines = [f"{kv.kernel}: undecidable: {why}" for kv in chosen for why in kv.unknown_because]
    for run in scrape.facts.runs.values():
        lines += [f"error: {run.name}: {e.path}: {e.message}" for e in run.errors]
        if run.crashed:
            lines.append(f"error: collector {run.name} crashed: {run.crashed}")
    return lines + [f"note: {note}" for note in notes]


def summary(chosen: list[KernelVerdict], verdict: str, notes: list[str]) -> str:
    names = ", ".join(kv.kernel for kv in chosen) or "no kernel"
    return {"ready": f"READY: every needed module works on {names}",
            "not_ready": f"NOT READY: do not reboot into {names} before fixing the modules above",
            "unknown": f"UNKNOWN: cannot decide for {names}" + (" (see above)" if chosen or notes else "")}[verdict]


def render_text(scrape: Scrape, out: TextIO, kernel: str | None = None) -> int:
    chosen, verdict, notes = select(scrape, kernel)
    out.write(header(scrape) + "\n")
    _table([COLUMNS, *rows(chosen)], out)
    why = details(chosen)
    for line in why:
        out.write(f"\n{line}")
    if why:
        out.write("\n")
    for line in diagnostics(scrape, chosen, notes):
        out.write(f"\n{line}")
    out.write(f"\n{summary(chosen, verdict, notes)}\n")
    return EXIT[verdict]


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
        out.write(f"{head}  {row[-1]}".rstrip() + "\n")


def render_json(scrape: Scrape, out: TextIO, kernel: str | None = None) -> int:
    doc = as_json(scrape, kernel)
    json.dump(doc, out, indent=2, sort_keys=False)
    out.write("\n")
    return doc["exit_code"]


def _identity(sig) -> dict:
    """A signature's identity fields (what modinfo prints), not the bytes verifying it takes."""
    return {f.name: getattr(sig, f.name) for f in fields(sig) if f.compare}
