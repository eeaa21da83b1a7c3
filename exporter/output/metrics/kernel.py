"""Metrics of --collector.kernel and bootloader: installed kernels and their roles, headers, depmod, next boot."""

from __future__ import annotations

from ...facts.bootloader import BootFacts
from ...facts.kernel import KernelFacts
from ...facts.os import OsFacts
from ...facts.packages import PackageFacts
from ...distro import for_family
from ...scrape import Scrape
from .families import Families, b


def section(out: Families, scrape: Scrape) -> None:
    kernels = scrape.facts.get(KernelFacts)
    r = scrape.readiness
    if kernels is None:
        return
    info = out.gauge("dkms_kernel_info", "1 for every installed kernel (an image is present), with its "
                     "role: running, newest, next_boot (the bootloader's choice), boot_target.",
                     ["kernel", "running", "newest", "next_boot", "boot_target"])
    headers = out.gauge("dkms_kernel_headers_present", "1 when the kernel's headers are installed "
                        "(/lib/modules/K/build resolves to a tree with include/ and a Makefile).", ["kernel"])
    depmod = out.gauge("dkms_kernel_modules_dep_present", "1 when depmod data (modules.dep or "
                       "modules.dep.bin) exists and parses for the kernel.", ["kernel"])
    packages = scrape.facts.get(PackageFacts)
    os_facts = scrape.facts.get(OsFacts)
    distro = for_family(os_facts.family if os_facts else None).for_host(scrape.facts)
    hpkg = out.gauge("dkms_kernel_headers_package_installed", "Where the distribution names "
                     "the headers package after the kernel (Debian: linux-headers-K): 1 when it is installed, 0 "
                     "when it is not.", ["kernel", "package"])
    for k in kernels.kernels:
        info.add_metric([k.release, b(k.release == kernels.running), b(k.release == kernels.newest),
                         b(k.release == r.next_boot), b(k.release in r.targets)], 1)
        headers.add_metric([k.release], 1 if k.headers else 0)
        name = distro.headers_package(k.release)
        if packages is not None and packages.present and name:
            hpkg.add_metric([k.release, name], 1 if packages.installed(name) else 0)
        depmod.add_metric([k.release], 1 if k.modules_dep is not None else 0)
    orphans = out.gauge("dkms_kernel_orphaned_modules_dir", "1 for a /lib/modules/K directory whose kernel "
                        "image is gone (never a boot target; often DKMS leftovers).", ["kernel"])
    for release in kernels.orphans:
        orphans.add_metric([release], 1)
    running = out.gauge("dkms_running_kernel_info", "1, labeled by the running kernel's release.", ["kernel"])
    if kernels.running:
        running.add_metric([kernels.running], 1)
    boot = scrape.facts.get(BootFacts)
    known = out.gauge("dkms_next_boot_known", "1 when the bootloader configuration names the kernel it boots "
                      "next; 0 when it cannot be read and the newest kernel is assumed.")
    known.add_metric([], 1 if r.next_boot else 0)
    nb = out.gauge("dkms_next_boot_kernel_info", "1, labeled by the kernel the bootloader boots next and the "
                   "bootloader that was read.", ["kernel", "loader"])
    if r.next_boot:
        nb.add_metric([r.next_boot, boot.loader if boot else "unknown"], 1)
    newest = out.gauge("dkms_next_boot_is_newest", "1 when the bootloader boots the newest installed kernel "
                       "next (0 often means GRUB_DEFAULT or a saved entry pins an older one).")
    if r.next_boot and kernels.newest:
        newest.add_metric([], 1 if r.next_boot == kernels.newest else 0)
