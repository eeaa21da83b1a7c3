"""Metrics of the verdict: next boot ready, per kernel and per needed module, with problem reasons."""

from __future__ import annotations

from ...scrape import Scrape
from ...verdict.fixes import REASONS
from .families import Families


def section(out: Families, scrape: Scrape) -> None:
    r = scrape.readiness
    ready = out.gauge("dkms_next_boot_ready", "1 when every boot target (the next-boot kernel and the newest "
                      "kernel) has every module it needs working; 0 when one does not. Absent when "
                      "undecidable (see dkms_next_boot_readiness_unknown).")
    if r.verdict != "unknown":
        ready.add_metric([], 1 if r.verdict == "ready" else 0)
    out.gauge("dkms_next_boot_readiness_unknown", "1 when readiness could not be decided (a collector it "
              "depends on failed or is disabled, or no boot target is known).").add_metric(
        [], 1 if r.verdict == "unknown" else 0)
    kready = out.gauge("dkms_kernel_ready", "1 when every module the kernel needs works for it, 0 when at "
                       "least one does not. Absent when undecidable.", ["kernel"])
    kunknown = out.gauge("dkms_kernel_readiness_unknown", "1 when the kernel's readiness could not be "
                         "decided.", ["kernel"])
    working = out.gauge("dkms_module_working", "1 when the module works for the kernel, 0 when it does not; "
                        "one series per module the kernel needs. module is the kernel module name "
                        "(as lsmod prints it), dkms the DKMS module/version that provides it, or empty.",
                        ["kernel", "module", "dkms"])
    problem = out.gauge("dkms_module_problem", "1 for each reason a needed module will not work for the "
                        "kernel (reasons: " + ", ".join(sorted(REASONS)) + ").",
                        ["kernel", "module", "dkms", "reason"])
    kproblem = out.gauge("dkms_kernel_problem", "1 for each kernel-level problem: headers_missing (a "
                         "warning), initramfs_missing, initramfs_unreadable, loaded_module_missing (one "
                         "series for all such modules: see dkms_kernel_loaded_module_missing).", ["kernel", "reason"])
    lost = out.gauge("dkms_kernel_loaded_module_missing", "1 for each module loaded now (not out-of-tree) that "
                     "the kernel lacks: not built in, no file where its modules.dep says. severity is error when "
                     "the host loads it at boot (initramfs, modules-load.d, /etc/modules, "
                     "/etc/initramfs-tools/modules, early_boot_modules), else warning.",
                     ["kernel", "module", "severity"])
    for kv in r.kernels:
        if kv.verdict != "unknown":
            kready.add_metric([kv.kernel], 1 if kv.verdict == "ready" else 0)
        kunknown.add_metric([kv.kernel], 1 if kv.verdict == "unknown" else 0)
        for m in kv.modules:
            working.add_metric([kv.kernel, m.module, m.dkms], 1 if m.working else 0)
            for p in m.problems:
                problem.add_metric([kv.kernel, m.module, m.dkms, p.reason], 1)
        for reason in dict.fromkeys(p.reason for p in kv.kernel_problems):
            kproblem.add_metric([kv.kernel, reason], 1)
        for name, severity in kv.loaded_missing:
            lost.add_metric([kv.kernel, name, severity], 1)
    out.gauge("dkms_rollback_kernels", "Installed kernels other than the boot targets that are ready: "
              "what you can fall back to.").add_metric([], r.rollback_ready)
