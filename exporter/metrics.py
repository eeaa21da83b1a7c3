"""Facts and verdicts -> Prometheus metric families, fresh every scrape.

client_python's custom-collector pattern: nothing is kept between scrapes except the
file cache, so a module that disappears from the host disappears from /metrics too.
Every name here is documented in docs/metrics.md (a test keeps the two in step).
"""

from __future__ import annotations

import platform
from typing import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .remedies import REASONS
from .scrape import Scrape, Scraper


def _b(value: bool) -> str:
    return "true" if value else "false"


def clean(value: str) -> str:
    """Label values must be UTF-8: file names that are not become U+FFFD, never a failed scrape."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Gauge(GaugeMetricFamily):
    def add_metric(self, labels, value, timestamp=None):  # type: ignore[override]
        super().add_metric([clean(v) for v in labels], value, timestamp)


class _Counter(CounterMetricFamily):
    def add_metric(self, labels, value, created=None, timestamp=None):  # type: ignore[override]
        super().add_metric([clean(v) for v in labels], value, created, timestamp)


class Families:
    """Builds gauges with a fixed label set, samples kept in insertion order."""

    def __init__(self) -> None:
        self._families: list[Metric] = []

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        fam = _Gauge(name, doc, labels=list(labels))
        self._families.append(fam)
        return fam

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        fam = _Counter(name, doc, labels=list(labels))
        self._families.append(fam)
        return fam

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families)


def families(scrape: Scrape, cache_hits: int = 0, cache_misses: int = 0) -> list[Metric]:
    out = Families()
    _exporter(out, scrape, cache_hits, cache_misses)
    _kernels(out, scrape)
    _readiness(out, scrape)
    _dkms(out, scrape)
    _module_truth(out, scrape)
    _secure_boot(out, scrape)
    _initramfs(out, scrape)
    _packages(out, scrape)
    _system(out, scrape)
    return list(out)


def _exporter(out: Families, scrape: Scrape, hits: int, misses: int) -> None:
    out.gauge("dkms_exporter_build_info", "A metric with a constant '1' value labeled by the exporter's "
              "version and the Python it runs on.", ["version", "python_version"]) \
        .add_metric([__version__, platform.python_version()], 1)
    success = out.gauge("dkms_scrape_collector_success", "Whether a collector succeeded: 1 when it ran "
                        "and could read everything it needed.", ["collector"])
    duration = out.gauge("dkms_scrape_collector_duration_seconds", "How long a collector took.", ["collector"])
    errors = out.gauge("dkms_scrape_collector_errors", "Files a collector could not read or parse in this "
                       "scrape (see the exporter's log for which).", ["collector"])
    for name, run in scrape.facts.runs.items():
        success.add_metric([name], 1 if run.success else 0)
        duration.add_metric([name], run.duration)
        errors.add_metric([name], len(run.errors) + (1 if run.crashed else 0))
    out.counter("dkms_exporter_file_cache_hits", "Files whose parse was reused because their identity "
                "(device, inode, size, mtime) did not change.").add_metric([], hits)
    out.counter("dkms_exporter_file_cache_misses", "Files read and parsed because they were new or "
                "changed.").add_metric([], misses)


def _kernels(out: Families, scrape: Scrape) -> None:
    kernels = scrape.facts.kernels
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
    dpkg = scrape.facts.dpkg
    hpkg = out.gauge("dkms_kernel_headers_package_installed", "On dpkg hosts: 1 when the package "
                     "linux-headers-K is installed (state installed), 0 when it is not.", ["kernel", "package"])
    for k in kernels.kernels:
        info.add_metric([k.release, _b(k.release == kernels.running), _b(k.release == kernels.newest),
                         _b(k.release == r.next_boot), _b(k.release in r.targets)], 1)
        headers.add_metric([k.release], 1 if k.headers else 0)
        if dpkg is not None and dpkg.present:
            name = f"linux-headers-{k.release}"
            hpkg.add_metric([k.release, name], 1 if dpkg.installed(name) else 0)
        depmod.add_metric([k.release], 1 if k.modules_dep is not None else 0)
    orphans = out.gauge("dkms_kernel_orphaned_modules_dir", "1 for a /lib/modules/K directory whose kernel "
                        "image is gone (never a boot target; often DKMS leftovers).", ["kernel"])
    for release in kernels.orphans:
        orphans.add_metric([release], 1)
    running = out.gauge("dkms_running_kernel_info", "1, labeled by the running kernel's release.", ["kernel"])
    if kernels.running:
        running.add_metric([kernels.running], 1)
    boot = scrape.facts.boot
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


def _readiness(out: Families, scrape: Scrape) -> None:
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
                         "warning), initramfs_missing, initramfs_unreadable.", ["kernel", "reason"])
    for kv in r.kernels:
        if kv.verdict != "unknown":
            kready.add_metric([kv.kernel], 1 if kv.verdict == "ready" else 0)
        kunknown.add_metric([kv.kernel], 1 if kv.verdict == "unknown" else 0)
        for m in kv.modules:
            working.add_metric([kv.kernel, m.module, m.dkms], 1 if m.working else 0)
            for p in m.problems:
                problem.add_metric([kv.kernel, m.module, m.dkms, p.reason], 1)
        for p in kv.kernel_problems:
            kproblem.add_metric([kv.kernel, p.reason], 1)
    out.gauge("dkms_rollback_kernels", "Installed kernels other than the boot targets that are ready: "
              "what you can fall back to.").add_metric([], r.rollback_ready)


def _module_truth(out: Families, scrape: Scrape) -> None:
    r = scrape.readiness
    signed = out.gauge("dkms_module_signed", "1 when the module file a kernel would load carries a "
                       "signature, 0 when it does not (absent when the file could not be read).",
                       ["kernel", "module", "dkms"])
    info = out.gauge("dkms_module_signature_info", "1 for a signed module, labeled with what `modinfo` "
                     "prints: signer, sig_key (key_id) and sig_hashalgo.",
                     ["kernel", "module", "signer", "key_id", "hash_algo"])
    for kv in r.kernels:
        for m in kv.modules:
            if m.signed is not None:
                signed.add_metric([kv.kernel, m.module, m.dkms], 1 if m.signed else 0)
            if m.signature is not None:
                s = m.signature
                info.add_metric([kv.kernel, m.module, s.signer, s.key_id, s.hash_algo], 1)
    facts = scrape.facts
    enforced = out.gauge("dkms_kernel_signature_enforced", "1 when the kernel will refuse unsigned modules "
                         "and modules signed by untrusted keys after the next boot (module.sig_enforce, "
                         "CONFIG_MODULE_SIG_FORCE, or lockdown raised by Secure Boot); absent when unknown.",
                         ["kernel"])
    source = out.gauge("dkms_kernel_symbol_versions_source", "1, labeled by where the kernel's exported "
                       "symbol CRCs were read from (module_symvers, symvers_file) or none: without them "
                       "symbol_version_mismatch and unknown_symbol cannot be checked.", ["kernel", "source"])
    kernels = facts.kernels
    trust = facts.trust
    mods = facts.modules
    for k in (kernels.kernels if kernels else ()):
        if trust is not None:
            value = trust.enforced_for(k.config or None, k.release == kernels.running)
            if value is not None:
                enforced.add_metric([k.release], 1 if value else 0)
        if mods is not None and k.release in mods.kernels:
            src = mods.kernels[k.release].exports_source
            kind = "none" if src == "none" else "module_symvers" if src.endswith("Module.symvers") else "symvers_file"
            source.add_metric([k.release, kind], 1)
    loaded = facts.loaded
    oot = out.gauge("dkms_loaded_out_of_tree_module", "1 for each out-of-tree module loaded now (taint O): "
                    "each must keep working after the reboot.", ["module", "taint"])
    for m in (loaded.modules if loaded else ()):
        if m.out_of_tree:
            oot.add_metric([m.name, m.taint], 1)


def _initramfs(out: Families, scrape: Scrape) -> None:
    facts = scrape.facts.initramfs
    if facts is None:
        return
    present = out.gauge("dkms_kernel_initramfs_present", "1 when the kernel has an initramfs image "
                        "(initrd.img-K, initramfs-K.img, ...).", ["kernel"])
    mtime = out.gauge("dkms_kernel_initramfs_modified_timestamp_seconds", "When the kernel's initramfs image "
                      "was last written.", ["kernel"])
    size = out.gauge("dkms_kernel_initramfs_size_bytes", "Size of the kernel's initramfs image.", ["kernel"])
    info = out.gauge("dkms_kernel_initramfs_info", "1 per readable image, labeled by the compression of its "
                     "main archive (zstd, gzip, xz, lz4, lzma, bzip2, none).", ["kernel", "compression"])
    took = out.gauge("dkms_kernel_initramfs_listing_duration_seconds", "How long listing the image took when "
                     "it was last read (an unchanged image is not read again).", ["kernel"])
    for kernel, image in facts.images.items():
        present.add_metric([kernel], 1 if image.present else 0)
        if image.mtime is not None:
            mtime.add_metric([kernel], image.mtime)
        if image.size is not None:
            size.add_metric([kernel], image.size)
        if image.listing is not None:
            info.add_metric([kernel, image.listing.compression], 1)
            took.add_metric([kernel], image.listing.seconds)
    inside = out.gauge("dkms_module_in_initramfs", "For each module a kernel needs, when that kernel's "
                       "initramfs could be read: 1 when the image holds it.", ["kernel", "module"])
    early = out.gauge("dkms_module_early_boot", "1 for each needed module that must be in the initramfs "
                      "(it is in the running kernel's image, or the config names it).", ["kernel", "module"])
    for kv in scrape.readiness.kernels:
        for m in kv.modules:
            if m.in_initramfs is not None:
                inside.add_metric([kv.kernel, m.module], 1 if m.in_initramfs else 0)
            if m.early_boot:
                early.add_metric([kv.kernel, m.module], 1)


def _secure_boot(out: Families, scrape: Scrape) -> None:
    t = scrape.facts.trust
    if t is None:
        return
    sb = t.secure_boot
    out.gauge("dkms_secure_boot_supported", "1 on an EFI boot (Secure Boot possible), 0 on BIOS/non-EFI.") \
        .add_metric([], 1 if sb.supported else 0)
    enabled = out.gauge("dkms_secure_boot_enabled", "1 when Secure Boot is on (SecureBoot=1 and SetupMode=0, "
                        "as mokutil --sb-state); absent on non-EFI hosts or when undecidable.")
    if sb.supported and sb.enabled is not None:
        enabled.add_metric([], 1 if sb.enabled else 0)
    setup = out.gauge("dkms_secure_boot_setup_mode", "1 when the firmware is in Setup Mode.")
    if sb.setup_mode is not None:
        setup.add_metric([], 1 if sb.setup_mode else 0)
    shim = out.gauge("dkms_shim_validation_disabled", "1 when shim's validation is disabled (MokSBStateRT, "
                     "`mokutil --disable-validation`): the kernel then does not lock down.")
    if sb.supported and sb.shim_validation_disabled is not None:
        shim.add_metric([], 1 if sb.shim_validation_disabled else 0)
    lock = out.gauge("dkms_kernel_lockdown", "1, labeled by the running kernel's active lockdown mode "
                     "(none, integrity, confidentiality).", ["mode"])
    if t.lockdown:
        lock.add_metric([t.lockdown], 1)
    enforce = out.gauge("dkms_module_sig_enforce", "The running kernel's module.sig_enforce (1 = Y).")
    if t.sig_enforce is not None:
        enforce.add_metric([], 1 if t.sig_enforce else 0)
    mok = out.gauge("dkms_mok_certificates", "X.509 certificates enrolled in MokListRT (shim's machine owner "
                    "keys); absent when the list could not be read.")
    if sb.supported and t.keys_known:
        mok.add_metric([], len(t.mok.certificates) if t.mok else 0)
    enrolled = out.gauge("dkms_signing_certificate_enrolled", "For each module-signing certificate on disk "
                         "(/var/lib/dkms/mok.pub, /var/lib/shim-signed/mok/MOK.der): 1 when it is enrolled "
                         "(MokListRT or db), 0 when not. Absent when the key lists could not be read.",
                         ["path", "signer", "key_id"])
    if sb.supported and t.keys_known:
        for path, cert in t.signing_certs:
            enrolled.add_metric([path, cert.issuer_cn, cert.serial], 1 if t.enrolled(cert) else 0)


def _dkms(out: Families, scrape: Scrape) -> None:
    d = scrape.facts.dkms
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


def _packages(out: Families, scrape: Scrape) -> None:
    p = scrape.facts.dpkg
    if p is None or not p.present:
        return
    held = out.gauge("dkms_package_held", "1 for each package on hold (apt-mark hold); kind is kernel-image, "
                     "kernel-headers, kernel-meta, dkms, boot or other.", ["package", "kind"])
    for pkg in p.held:
        held.add_metric([pkg.name, pkg.kind], 1)
    unconf = out.gauge("dkms_package_unconfigured", "1 for each package `dpkg --audit` lists; state is the "
                       "audit heading (half-configured, unpacked, half-installed, triggers-awaited, "
                       "triggers-pending, reinstreq, missing-list, missing-md5sums, no-arch, unknown-arch).",
                       ["package", "state"])
    for finding in p.findings:
        unconf.add_metric([finding.package, finding.problem], 1)
    out.gauge("dkms_packages_unconfigured", "How many packages `dpkg --audit` lists.").add_metric(
        [], len({f.package for f in p.findings}))


def _system(out: Families, scrape: Scrape) -> None:
    s = scrape.facts.system
    if s is None:
        return
    out.gauge("dkms_reboot_required", "1 when the distribution flags a pending reboot "
              "(/run/reboot-required).").add_metric([], 1 if s.reboot_required else 0)
    since = out.gauge("dkms_reboot_required_since_timestamp_seconds", "When the reboot-required flag was "
                      "set (its mtime).")
    if s.reboot_required_since is not None:
        since.add_metric([], s.reboot_required_since)
    pkgs = out.gauge("dkms_reboot_required_package", "1 for each package that asked for the pending reboot "
                     "(/run/reboot-required.pkgs).", ["package"])
    for name in s.reboot_required_packages:
        pkgs.add_metric([name], 1)
    if s.boot_free_bytes is not None:
        out.gauge("dkms_boot_free_bytes", "Free space on the filesystem holding /boot.").add_metric(
            [], s.boot_free_bytes)
        out.gauge("dkms_boot_size_bytes", "Size of the filesystem holding /boot.").add_metric(
            [], s.boot_size_bytes or 0)


class DkmsCollector(Collector):
    """A client_python custom collector: every collect() is one fresh scrape."""

    def __init__(self, scraper: Scraper) -> None:
        self.scraper = scraper
        self.last: Scrape | None = None

    def collect(self) -> Iterator[Metric]:
        scrape = self.scraper.scrape()
        self.last = scrape
        yield from families(scrape, self.scraper.cache.hits, self.scraper.cache.misses)

    def describe(self) -> list[Metric]:
        return []  # names depend on the host; don't scrape at registration
