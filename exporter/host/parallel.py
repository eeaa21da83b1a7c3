"""A few parses side by side, for work that runs outside the interpreter lock (decompression,
digests): see collectors.initramfs LISTING_WORKERS and collectors.module PARSE_WORKERS.

Daemon threads, not concurrent.futures: its workers are joined at interpreter exit, so a parse
stuck on a hung read (a dead NFS /boot) would keep `check` or `textfile` from exiting after the
scrape gave up on its collector; the scrape's own collector threads are daemons for the same
reason (exporter.scrape.scheduler).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .context import Context

T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """CPUs this process may run on (its affinity mask, which container CPU sets narrow)."""
    return len(os.sched_getaffinity(0))


def map_in_threads(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """[fn(item) for item in items], in up to ``workers`` threads (in this one when fewer than
    two are asked for).  Returns once every call has returned; the first exception, in item
    order, is raised then."""
    if workers < 2 or len(items) < 2:
        return [fn(item) for item in items]
    results: list = [None] * len(items)
    errors: list[BaseException | None] = [None] * len(items)
    lock = threading.Lock()
    next_index = iter(range(len(items)))

    def work() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors[i] = exc

    threads = [threading.Thread(target=work, name="parse", daemon=True) for _ in range(min(workers, len(items)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for exc in errors:
        if exc is not None:
            raise exc
    return results


def parse_side_by_side(ctx: "Context", fn: Callable[["Context", T], R], items: Sequence[T], workers: int) -> list[R]:
    """[fn(ctx, item) for item in items], in up to ``workers`` threads (capped by the cores)
    when two or more are asked for.  Each threaded call records into a Context of its own, and
    their read errors are added to ``ctx`` in item order: the same list the serial run makes."""
    workers = min(workers, cores())
    if workers < 2 or len(items) < 2:
        return [fn(ctx, item) for item in items]
    own = [replace(ctx, errors=[]) for _ in items]
    results = map_in_threads(lambda i: fn(own[i], items[i]), range(len(items)), workers)
    for c in own:
        ctx.errors.extend(c.errors)
    return results
