"""Why a DKMS build failed, from the make.log dkms leaves behind.

dkms keeps no failure database: a failed build leaves ``<tree>/<m>/<v>/build/make.log``
(shared by all kernels, so it describes the last attempt; its first line names the kernel).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LOG_BYTES = 4 * 1024 * 1024  # we read the tail of larger logs

_HEADER = re.compile(r"^DKMS (?:\(dkms-\S+\) )?make\.log for (?:(\S+)/(\S+)|(\S+?)-([0-9]\S*)) "
                     r"for kernel (\S+) \((\S+)\)")

# Ordered: the first cause whose pattern matches any line wins.
_CAUSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("headers_missing", re.compile(
        r"(/lib/modules/\S+/build|kernel headers|linux-headers).*(No such file or directory|cannot be found)"
        r"|No rule to make target '?modules_prepare"
        r"|include/(generated/autoconf|linux/kconfig|config/auto\.conf).*No such file", re.I)),
    ("compiler_missing", re.compile(
        r"\b(gcc|cc|clang|ld)(-[0-9.]+)?: (command )?not found"
        r"|(gcc|cc|clang)(-[0-9.]+)?: No such file or directory"
        r"|unable to execute .*(cc1|gcc|clang)"
        r"|make: \S*(gcc|cc|clang)(-[0-9.]+)?: (No such file|Command not found)", re.I)),
    ("kernel_api_mismatch", re.compile(
        r"error: implicit declaration of function"
        r"|error: unknown type name"
        r"|error: .* has no member named"
        r"|error: too (few|many) arguments to function"
        r"|error: .* undeclared"
        r"|error: conflicting types for"
        r"|error: passing argument .* from incompatible pointer type"
        r"|error: initialization of .* from incompatible pointer type"
        r"|error: incompatible (type|types|pointer)"
        r"|error: field .* has incomplete type"
        r"|error: invalid use of undefined type"
        r"|error: storage size of .* isn't known"
        r"|error: .* was not declared"
        r"|ERROR: modpost: \"[^\"]+\" \[.*\] undefined!"
        r"|fatal error: [^:]+\.h: No such file or directory")),
)
_ERROR_LINE = re.compile(r"(\berror:|\bERROR:|fatal error)", re.I)
_MAKE_ERROR = re.compile(r"Error \d+|\*\*\*")


@dataclass(frozen=True)
class MakeLog:
    module: str | None
    version: str | None
    kernel: str | None
    arch: str | None
    cause: str           # headers_missing | compiler_missing | kernel_api_mismatch | other
    detail: str          # the most telling error line, for `check`


def classify_make_log(data: bytes) -> MakeLog:
    """Kernel named in the header, the failure cause, and the error line that explains it."""
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    module = version = kernel = arch = None
    if lines:
        m = _HEADER.match(lines[0])
        if m:
            module, version = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            kernel, arch = m.group(5), m.group(6)
    cause, telling = "other", None
    for name, pattern in _CAUSES:
        hits = [line for line in lines if pattern.search(line)]
        if hits:
            cause, telling = name, hits[-1].strip()[:300]
            break
    # the line that shows the cause, not a later summary ("error: Bad exit status from ... (%build)")
    return MakeLog(module, version, kernel, arch, cause, telling or _detail(lines))


def _detail(lines: list[str]) -> str:
    errors = [l.strip() for l in lines if _ERROR_LINE.search(l)]
    if errors:
        return errors[-1][:300]
    makes = [l.strip() for l in lines if _MAKE_ERROR.search(l)]
    if makes:
        return makes[-1][:300]
    tail = [l.strip() for l in lines if l.strip()]
    return tail[-1][:300] if tail else ""
