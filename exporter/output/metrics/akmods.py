"""Metrics of --collector.akmods: the akmods akmods builds for every kernel, and its failed builds."""

from __future__ import annotations

from ...facts.akmods import AkmodsFacts
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    a = scrape.facts.get(AkmodsFacts)
    if a is None or not a.entries:
        return
    info = out.gauge("dkms_akmod_info", "1 per akmod source package (/usr/src/akmods/NAME-kmod.latest): akmods "
                     "builds a kmod-NAME package from it for every new kernel.", ["akmod", "version"])
    failed = out.gauge("dkms_akmod_build_failed", "1 when akmods' build of the akmod's current version for the "
                       "kernel failed (VERREL-for-K.failed.log and no later success); cause is headers_missing, "
                       "compiler_missing, kernel_api_mismatch or other.", ["akmod", "version", "kernel", "cause"])
    when = out.gauge("dkms_akmod_build_failure_timestamp_seconds", "When that failed build's log was written.",
                     ["akmod", "version", "kernel"])
    for e in a.entries:
        info.add_metric([e.name, e.version], 1)
        for kernel in sorted({b.kernel for b in e.builds}):
            f = e.failure_for(kernel)
            if f is not None:
                failed.add_metric([e.name, e.version, kernel, f.cause or "other"], 1)
                when.add_metric([e.name, e.version, kernel], f.mtime)
