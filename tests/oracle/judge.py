"""Compare the exporter's verdict per module with what the booted kernel did.

The exporter says, per kernel K and needed module, ``working`` or its problem reasons (the
`check --json` document).  The kernel's answer comes from :class:`harness.KernelView`: could the
initramfs' modprobe find the module, did it load early, does the tree's modules.dep resolve it,
and the errno of finit_module plus the kernel's log line for the refusal.  Each reason names what
the kernel must have done (:data:`EXPECT`); anything else is a disagreement, shown with both sides.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import re

from .harness import BootResult, ModuleOutcome, extra_payload_path

# Reasons that mean "there is no file for the kernel to load": modprobe cannot find it.
ABSENT = {"not_built", "build_failed", "built_not_installed", "file_missing", "not_in_depmod"}


@dataclass(frozen=True)
class Refusal:
    """A refusal the kernel can give: the errnos finit_module returns and a phrase of its log
    (any one of them), from kernel/module/{signing,main,version}.c of Linux 6.1."""

    errnos: frozenset[int]
    log: tuple[str, ...]


EXPECT: dict[str, Refusal] = {
    # sig_enforce=Y (Debian sets it under Secure Boot): -EKEYREJECTED and "Loading of ... rejected";
    # lockdown alone: security_locked_down() -> -EPERM and "Lockdown: ...: unsigned module loading".
    "unsigned": Refusal(frozenset({errno.EKEYREJECTED, errno.EPERM}),
                        ("Loading of unsigned module is rejected", "unsigned module loading is restricted")),
    "untrusted_key": Refusal(frozenset({errno.EKEYREJECTED, errno.ENOKEY, errno.EPERM}),
                             ("Loading of module with unavailable key is rejected", "Key was rejected",
                              "unsigned module loading is restricted")),
    "vermagic_mismatch": Refusal(frozenset({errno.ENOEXEC}), ("version magic",)),
    # load_module checks module_layout's CRC first (check_modstruct_version: -ENOEXEC), every other
    # symbol later (resolve_symbol: -EINVAL, logged with "Unknown symbol ... (err -22)" too).
    "symbol_version_mismatch": Refusal(frozenset({errno.EINVAL, errno.ENOEXEC}),
                                       ("disagrees about version of symbol",)),
    "unknown_symbol": Refusal(frozenset({errno.ENOENT}), ("Unknown symbol",)),
    # a module K lacks (modprobe cannot load it first, or depmod no longer lists it): the module
    # itself is then refused by simplify_symbols() for the symbols it would have exported
    "dependency_missing": Refusal(frozenset({errno.ENOENT}), ("Unknown symbol",)),
    "module_unreadable": Refusal(frozenset({errno.ENOEXEC, errno.EINVAL, errno.EBADMSG}), ()),
    # module_sig_check(): every error but ENODATA/ENOPKG/ENOKEY is returned as it is, with no log
    # line (the PKCS#7 code only pr_devel()s a digest mismatch or a revoked key)
    "signature_invalid": Refusal(frozenset({errno.EKEYREJECTED, errno.EBADMSG}), ()),
    "signature_revoked": Refusal(frozenset({errno.EKEYREJECTED}), ()),
}


@dataclass(frozen=True)
class Row:
    """One module of one kernel: both sides and whether they agree."""

    kernel: str
    module: str
    exporter: str          # "working" or the error reasons, comma-separated
    kernel_did: str        # what the kernel did, in words
    agree: bool
    why: str = ""

    def line(self) -> str:
        mark = "ok  " if self.agree else "DIFF"
        why = f"  <- {self.why}" if self.why else ""
        return f"{mark} {self.kernel:<16} {self.module:<14} exporter: {self.exporter:<28} kernel: {self.kernel_did}{why}"


def kernel_did(m: ModuleOutcome, result: BootResult) -> str:
    """The kernel's side of one module, in a few words (with the log line of a refusal)."""
    parts = []
    if m.in_initramfs is not None:
        parts.append("in initramfs" if m.in_initramfs else "not in initramfs")
    if m.in_initramfs and m.initramfs_sha256 and m.tree_sha256:
        parts.append("same build as the tree's" if m.initramfs_sha256 == m.tree_sha256
                     else f"another build than the tree's ({m.initramfs_sha256[:8]} vs {m.tree_sha256[:8]})")
    if m.early_loaded:
        parts.append("loaded early")
    if m.resolved is False:
        parts.append("modprobe: not found")
    elif m.resolved and m.tree_sha256 == "none":
        parts.append("modprobe: its file is gone")
    elif m.errno not in (None, errno.EEXIST):
        said = [line.split("] ", 1)[-1] for line in result.view.dmesg_about(m.name)
                if _refusal_line(line)]
        parts.append(f"refused {errno.errorcode.get(m.errno, m.errno)}" + (f" ({said[-1]})" if said else ""))
    elif m.loaded:
        parts.append("loaded")
    elif m.resolved:
        parts.append("not loaded")
    return ", ".join(parts) or "no answer"


def _refusal_line(line: str) -> bool:
    return any(p in line for r in EXPECT.values() for p in r.log) or "module verification failed" in line


def judge_module(kernel: str, module: dict, result: BootResult) -> Row:
    """Does the kernel's treatment of one module match the exporter's verdict for it?"""
    name = module["module"].replace("-", "_")
    errors = [p["reason"] for p in module["problems"] if p.get("severity", "error") == "error"]
    said = "working" if module["working"] else ",".join(errors) or "not working (no reason)"
    m = result.view.modules.get(name)
    if m is None:
        return Row(kernel, name, said, "never tried", False, "the oracle init printed nothing for it")
    did = kernel_did(m, result)
    loaded = bool(m.loaded or m.early_loaded)
    if module["working"]:
        if not loaded:
            return Row(kernel, name, said, did, False, "the exporter says it works; the kernel did not load it")
        if module.get("early_boot") and not m.in_initramfs:
            return Row(kernel, name, said, did, False, "needed early, but the initramfs cannot provide it")
        return Row(kernel, name, said, did, True)
    if not errors:
        return Row(kernel, name, said, did, False, "not working without an error reason")
    details = {p["reason"]: p.get("detail", "") for p in module["problems"]}
    for detail in details.values():
        candidate = candidate_file(detail)
        if candidate is not None:
            outcome = result.view.extra.get(extra_payload_path(candidate), "absent")
            did += f"; {candidate} loaded as it is: " + ("ok" if outcome is None else "not tried" if outcome == "absent"
                                                          else f"refused {errno.errorcode.get(outcome, outcome)}")
    wrong = [reason for reason in errors if not _kernel_agrees(reason, m, result, loaded, details.get(reason, ""))]
    if len(wrong) == len(errors):
        return Row(kernel, name, said, did, False, f"the kernel did not do what {', '.join(errors)} means")
    return Row(kernel, name, said, did, True)


def candidate_file(detail: str) -> str | None:
    """The other kernel's module file a weak-modules reason names (its detail starts with it)."""
    m = re.match(r"^(/\S+\.ko\S*) \(built for ", detail)
    return m.group(1) if m else None


def _kernel_agrees(reason: str, m: ModuleOutcome, result: BootResult, loaded: bool, detail: str = "") -> bool:
    """Whether the kernel's outcome is the one ``reason`` predicts."""
    if reason in ("weak_update_missing", "kabi_mismatch"):
        # K cannot find the module in its tree, and the other kernel's file, loaded as it is, is
        # accepted (weak_update_missing: it fits) or refused for its symbol versions (kabi_mismatch)
        candidate = candidate_file(detail)
        if loaded or m.resolved is not False or candidate is None:
            return False
        outcome = result.view.extra.get(extra_payload_path(candidate), "absent")
        if reason == "weak_update_missing":
            return outcome is None
        return outcome in (errno.ENOEXEC, errno.EINVAL) and any(
            "disagrees about version of symbol" in line for line in result.view.dmesg)
    if reason in ABSENT:
        # modprobe does not find it, or modules.dep names a file that is not there
        return not loaded and (m.resolved is False or (m.resolved is True and m.tree_sha256 == "none"))
    if reason == "missing_from_initramfs":
        return m.in_initramfs is False and not m.early_loaded
    if reason == "initramfs_stale":
        # the image holds another build than the file the tree resolves the module to
        return bool(m.in_initramfs and m.initramfs_sha256 and m.tree_sha256 not in (None, "none")
                    and m.initramfs_sha256 != m.tree_sha256)
    refusal = EXPECT.get(reason)
    if refusal is None:
        return False
    if loaded or m.errno not in refusal.errnos:
        return False
    if not refusal.log:
        return True
    return any(p in line for line in result.view.dmesg for p in refusal.log)


def judge_kernel(kernel: str, doc: dict, result: BootResult) -> list[Row]:
    """All rows of one kernel: its boot (initramfs problems) and each needed module."""
    kernels = [k for k in doc.get("kernels", []) if k["kernel"] == kernel]
    if not kernels:
        return [Row(kernel, "-", "no verdict", result.status, False, "the exporter has no verdict for this kernel")]
    kv = kernels[0]
    rows = [_judge_boot(kernel, kv, result)]
    if result.status != "ok":
        return rows  # no init ran: the modules were never tried, the boot row says why
    rows += [judge_module(kernel, m, result) for m in kv["modules"]]
    return rows


BROKEN_IMAGE = {"initramfs_unreadable", "initramfs_missing"}


def _judge_boot(kernel: str, kv: dict, result: BootResult) -> Row:
    """A broken initramfs must make the boot fail; a good one must boot to the oracle's init."""
    broken = sorted({p["reason"] for p in kv["problems"]} & BROKEN_IMAGE)
    said = ",".join(broken) if broken else "initramfs ok"
    if result.status == "ok":
        did = f"booted, init ran at {result.view.began_at:.1f}s"
    else:
        reason = result.unpack_error() or result.panic() or result.detail
        did = f"boot failed: {result.status}" + (f" ({reason})" if reason else "")
    if broken:
        ok = result.status != "ok" or result.unpack_error() is not None
        return Row(kernel, "(boot)", said, did, ok, "" if ok else "the exporter calls the image broken; it booted")
    ok = result.status == "ok" and result.unpack_error() is None
    return Row(kernel, "(boot)", said, did, ok, "" if ok else "the exporter finds no image problem; the boot failed")
