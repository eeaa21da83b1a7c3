"""Metrics of --collector.dkms: `dkms status` lines, unregistered source trees, failed builds."""

from __future__ import annotations

from ...facts.dkms import DkmsFacts
from ...scrape import Scrape
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    d = scrape.facts.get(DkmsFacts)
    if d is None:
        return
    info = out.gauge("dkms_info", "1, labeled by the installed dkms version (read from the dkms script).",
                     ["version"])
    info.add_metric([d.dkms_version or "unknown"], 1)
    state = out.gauge("dkms_module_state", "1 per line `dkms status` prints: module and version as DKMS "
                      "names them; kernel and arch empty for module-level states (added, broken).",
                      ["module", "version", "kernel", "arch", "state"])
    flags = out.gauge("dkms_module_state_flag", "1 per warning `dkms status` appends to a line "
                      "(original_module_exists, missing_built_modules, built_installed_differ).",
                      ["module", "version", "kernel", "arch", "flag"])
    for line in d.status_lines():
        state.add_metric([line.module, line.version, line.kernel, line.arch, line.state], 1)
        for flag in line.decorations:
            flags.add_metric([line.module, line.version, line.kernel, line.arch, flag], 1)
    unreg = out.gauge("dkms_module_unregistered", "1 for a DKMS source tree (/usr/src/M-V/dkms.conf) that DKMS "
                      "does not know (no /var/lib/dkms/M/V): it is never built for a new kernel. Fix: dkms add "
                      "M/V, or reinstall its package.", ["module", "version"])
    for module, version, _path in d.unregistered:
        unreg.add_metric([module, version], 1)
    failed = out.gauge("dkms_build_failed", "1 when DKMS's last build of the module for the kernel failed "
                       "(a make.log was left behind); cause is headers_missing, compiler_missing, "
                       "kernel_api_mismatch or other.", ["module", "version", "kernel", "arch", "cause"])
    when = out.gauge("dkms_build_failure_timestamp_seconds", "When that failed build's make.log was last "
                     "written.", ["module", "version", "kernel"])
    for e in d.entries:
        if e.failure is not None:
            f = e.failure
            failed.add_metric([e.module, e.version, f.kernel, f.arch, f.cause], 1)
            when.add_metric([e.module, e.version, f.kernel], f.mtime)
