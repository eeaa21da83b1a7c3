"""Every file a scrape reads on a real tree, damaged one at a time (tests/realhost and tests/rhelhost).

Each file the exporter opened in a first scrape is emptied, cut in half, replaced by random bytes
of its size and replaced by a directory, and each directory it listed is replaced by a file; the
host is scraped again by the same scraper (as a
running `serve` sees a file change) and rendered.  No damage may crash a collector or the
exposition, and on a host that is not ready none may make it "ready": a damaged file is an
error (unknown) or a finding (not ready), never a pass.  Some files are excepted, each with the
reason the real consumer of the file boots something that is ready after the damage (the
callers name them).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
from pathlib import Path
from typing import Callable, Iterator

from prometheus_client.exposition import generate_latest

from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.output.metrics import registry_for
from exporter.scrape import Scraper

DAMAGES: dict[str, Callable[[bytes], bytes | None]] = {
    "empty": lambda data: b"",
    "half": lambda data: data[: len(data) // 2],
    "garbage": lambda data: random.Random(len(data)).randbytes(len(data)),
    "directory": lambda data: None,
}

_recording: list[set[str]] = []


def _audit(event: str, args: tuple) -> None:
    if _recording and event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes)):
        _recording[-1].add(os.fsdecode(args[0]))


sys.addaudithook(_audit)   # records only inside sweep()'s first scrape; audit hooks cannot be removed


@contextlib.contextmanager
def damaged(path: Path, damage: Callable[[bytes], bytes | None]) -> Iterator[None]:
    """``path`` replaced (never written through: the trees are hard-linked copies) by the
    damaged bytes, or by a directory; the original bytes and mtime put back after (staleness
    is judged by mtimes)."""
    data, st = path.read_bytes(), path.stat()
    new = damage(data)
    path.unlink()
    if new is None:
        path.mkdir()
    else:
        path.write_bytes(new)
    try:
        yield
    finally:
        if new is None:
            path.rmdir()
        else:
            path.unlink()
        path.write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@contextlib.contextmanager
def file_for_directory(path: Path) -> Iterator[None]:
    """The directory ``path`` moved aside and a small file put in its place, then put back."""
    aside = path.with_name(f"{path.name}.swept-aside")
    path.rename(aside)
    path.write_bytes(b"not a directory\n")
    try:
        yield
    finally:
        path.unlink()
        aside.rename(path)


def sweep(root: Path, excepted: tuple[str, ...] = ()) -> tuple[str, list[str], list[str]]:
    """(the undamaged verdict, the host paths opened, what went wrong) for the tree at ``root``;
    a damage of a host path starting with one of ``excepted`` may leave the host ready."""
    root = root.resolve()
    scraper = Scraper(HostFS(root), Config())
    registry, collector = registry_for(scraper)
    _recording.append(set())
    try:
        generate_latest(registry)
    finally:
        seen = _recording.pop()
    base = collector.last.readiness.verdict
    inside = [Path(p) for p in seen if p.startswith(f"{root}/") and not os.path.islink(p)]
    files = sorted(p for p in inside if p.is_file())
    dirs = sorted(p for p in inside if p.is_dir())
    damages = [(p, kind, functools.partial(damaged, p, damage)) for p in files for kind, damage in DAMAGES.items()]
    damages += [(p, "file for the directory", functools.partial(file_for_directory, p)) for p in dirs]
    failures: list[str] = []
    for path, kind, damage_of in damages:
        host_path = f"/{path.relative_to(root)}"
        with damage_of():
            try:
                body = generate_latest(registry)
            except Exception as exc:  # noqa: BLE001 - the finding is the exception itself
                failures.append(f"{host_path} {kind}: the exposition raised {type(exc).__name__}: {exc}")
                continue
        scrape = collector.last
        crashed = {n: r.crashed for n, r in scrape.facts.runs.items()
                   if r.crashed and not r.crashed.startswith("not run")}
        if crashed:
            failures.append(f"{host_path} {kind}: collectors crashed: {crashed}")
        if base != "ready" and scrape.readiness.verdict == "ready" and not host_path.startswith(excepted):
            failures.append(f"{host_path} {kind}: the host passed as ready")
        if (b"\ndkms_next_boot_ready " in body) == (scrape.readiness.verdict == "unknown"):
            failures.append(f"{host_path} {kind}: dkms_next_boot_ready disagrees with the verdict")
    return base, [f"/{p.relative_to(root)}" for p in files + dirs], failures
