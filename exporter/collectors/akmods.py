"""--collector.akmods: akmods' sources and logs (Fedora, RPM Fusion): which kmods it builds for
every new kernel, and which builds failed.

Rules (rpmfusion akmods script, check_kmods / buildinstall_kmod): an akmod is
``/usr/src/akmods/NAME-kmod.latest`` (the source rpm, or a link to it); its kmod for kernel K is
present when ``/usr/lib/modules/K/extra/NAME/`` exists; a failed build leaves
``/var/cache/akmods/NAME/VERREL-for-K.failed.log``, a successful one ``VERREL-for-K.log`` (the
failed log stays behind), VERREL being the source's VERSION-RELEASE with ``.fcNN``/``.lvnNN``
removed.  Sources: docs/formats.md, "akmods".
"""

from __future__ import annotations

import logging
import re

from ..facts.akmods import AkmodBuild, AkmodEntry, AkmodsFacts
from ..formats.makelog import MAX_LOG_BYTES, MakeLog, classify_make_log
from ..formats.rpmheader import RPMTAG_RELEASE, RPMTAG_VERSION, RpmHeaderError, parse_package_header
from ..host.context import Context, Unreadable
from ..host.reader import open_regular, read_ends
from . import register

log = logging.getLogger("dkms_exporter")
SOURCES = "/usr/src/akmods"
CACHE = "/var/cache/akmods"
MAX_HEADER_BYTES = 4 * 1024 * 1024
_DIST_TAG = re.compile(r"\.(fc|lvn)[0-9]*")
_LOG = re.compile(r"^(?P<verrel>.+?)-for-(?P<kernel>.+?)(?P<failed>\.failed)?\.log$")


@register("akmods", AkmodsFacts, readiness=True)
def collect_akmods(ctx: Context) -> AkmodsFacts:
    entries = []
    for fname in ctx.listdir(SOURCES) or []:
        if not fname.endswith("-kmod.latest"):
            continue
        name = fname[: -len("-kmod.latest")]
        version = _version(ctx, f"{SOURCES}/{fname}")
        if version is None:
            continue
        verrel = _DIST_TAG.sub("", version)
        entries.append(AkmodEntry(name, version, verrel, f"{SOURCES}/{fname}", tuple(_builds(ctx, name))))
    return AkmodsFacts(tuple(entries))


def _version(ctx: Context, path: str) -> str | None:
    """VERSION-RELEASE of the source rpm (`rpm -qp --qf '%{VERSION}-%{RELEASE}'`, as akmods asks)."""
    try:
        found = ctx.compute(path, "akmod-srpm", _read_srpm_version)
    except Unreadable:
        return None
    if found is None:          # a dangling .latest link: akmods cannot build it either, and says so
        log.warning("akmods: %s points to no source rpm; akmods will not build it", path)
    return found


def _read_srpm_version(local, _st) -> str:
    with open_regular(local) as f:
        head = f.read(MAX_HEADER_BYTES)
    try:
        h = parse_package_header(head)
    except RpmHeaderError as exc:
        raise ValueError(f"not a readable source rpm: {exc}") from None
    version, release = h.string(RPMTAG_VERSION), h.string(RPMTAG_RELEASE)
    if version is None or release is None:
        raise ValueError("source rpm without VERSION or RELEASE")
    return f"{version}-{release}"


def _builds(ctx: Context, name: str):
    directory = f"{CACHE}/{name}"
    try:
        names = ctx.listdir(directory) or []
    except Unreadable:
        return
    for fname in names:
        m = _LOG.match(fname)
        if m is None:
            continue
        path = f"{directory}/{fname}"
        st = ctx.stat(path)
        if st is None:
            continue
        failed = m["failed"] is not None
        cause = detail = ""
        if failed:
            try:
                log = ctx.compute(path, "akmods-log", _read_log)
            except Unreadable:
                continue
            if log is not None:
                cause, detail = log.cause, log.detail
        yield AkmodBuild(m["kernel"], m["verrel"], failed, path, st.st_mtime, cause, detail)


def _read_log(path, _st) -> MakeLog:
    head, tail = read_ends(path, 4096, MAX_LOG_BYTES)
    return classify_make_log(head + b"\n" + tail if tail else head)
