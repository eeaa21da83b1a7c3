"""--collector.dkms: the DKMS tree, read the way ``dkms status`` reads it (dkms 3.0.x, as in Debian 12 and
Ubuntu 24.04, and the ``broken`` state of >= 3.0.13), plus failed builds.

Rules (dkms.in: module_status, is_module_added, is_module_built, _is_module_installed,
module_status_built_extra):
- ``<tree>/<m>/<v>`` is listed when it is a directory and ``source`` is a link (even a
  dangling one) or a directory; from 3.0.13 only when ``source`` is a link to a directory
  (added) or the version is *broken* (a dangling link, or a plain directory while
  ``/usr/src/<m>-<v>`` exists); a plain directory without that source is not listed;
- ``<v>/<k>/<a>`` (k must match ``+([0-9]).*``) is *built* when ``module/`` exists and every
  DEST_MODULE_NAME has ``module/<name>.ko`` or ``.ko<suffix>`` (suffix from the kernel's
  modules.dep); dkms >= 3.1.8 only needs ``module/``
  (docs/formats.md, "The DKMS tree and `dkms status`");
- *installed* when ``<m>/kernel-<k>-<a>`` resolves to ``<m>/<v>/<k>/<a>``;
- a failed build is a leftover ``<m>/<v>/build/make.log`` with no ``<k>/<a>/module``.
"""

from __future__ import annotations

import functools
import os
import re

from ..distro import detect
from ..facts.dkms import BROKEN_STATE_FROM, RELAXED_BUILT_FROM, BuildFailure, DkmsBuild, DkmsEntry, DkmsFacts, at_least
from ..formats.depmod import modules_dep_suffix
from ..formats.jsoncodec import Codec
from ..formats.dkmsconf import (MAX_CONF_BYTES, SOURCE_TREE, DkmsConfError, conf_refusal, evaluate_conf,
                                parse_dkms_conf)
from ..formats.makelog import MAX_LOG_BYTES, MakeLog, classify_make_log
from ..formats.versions import compare
from ..host.context import Context, Unreadable
from ..host.reader import FileTooLarge, open_regular, read_ends
from . import register

_KERNEL_DIR = re.compile(r"^[0-9]+\..*")
_DKMS_VERSION = re.compile(rb'echo \$?"dkms-([0-9][^"\s]*)"')
_FRAMEWORK_VAR = re.compile(r'^\s*(dkms_tree|source_tree|install_tree)\s*=\s*["\']?([^"\'#\s]+)')

DEFAULT_TREE = "/var/lib/dkms"
DEFAULT_INSTALL_TREE = "/lib/modules"

# a module file's SHA-256 (built vs installed copy) as the persistent cache keeps it: a str
SAME_CODEC = Codec("same-bytes")
# the compression suffix dkms reads from a kernel's modules.dep, as the persistent cache keeps it
SUFFIX_CODEC = Codec("modules-dep-suffix")
DIGEST_LIMIT = 256 * 1024 * 1024   # a module file to compare; the module parser's bound too
_COMPARE_CHUNK = 1 << 20


@register("dkms", DkmsFacts, readiness=True)
def collect_dkms(ctx: Context) -> DkmsFacts:
    tree, install_tree = _framework(ctx)
    version = _dkms_version(ctx)
    distro_dest = _distro_dest(ctx)
    facts_entries: list[DkmsEntry] = []
    modern = at_least(version, BROKEN_STATE_FROM)
    relaxed = at_least(version, RELAXED_BUILT_FROM)
    for module in ctx.listdir(tree, must_be_dir=True) or []:
        mdir = f"{tree}/{module}"
        try:
            if not ctx.is_dir(mdir):
                continue
            for ver in ctx.listdir(mdir) or []:
                entry = _entry(ctx, tree, install_tree, module, ver, modern, relaxed, distro_dest)
                if entry is not None:
                    facts_entries.append(entry)
        except Unreadable:
            continue
    registered = {(e.module, e.version) for e in facts_entries}
    return DkmsFacts(tree, install_tree, version, tuple(facts_entries), distro_dest,
                     tuple(_unregistered(ctx, registered)))


def _unregistered(ctx: Context, registered: set[tuple[str, str]]):
    """Source trees with a dkms.conf that the DKMS tree does not know."""
    for name in ctx.listdir(SOURCE_TREE, must_be_dir=True) or []:
        conf_path = f"{SOURCE_TREE}/{name}/dkms.conf"
        try:
            raw = ctx.load(conf_path, bytes, limit=MAX_CONF_BYTES, purpose="raw")
        except Unreadable:
            continue
        if raw is None:
            continue
        package = _package_of(raw.decode("utf-8", "surrogateescape"))
        if package is None:
            continue
        module, version = package
        if module and version and f"{module}-{version}" == name and (module, version) not in registered:
            yield module, version, f"{SOURCE_TREE}/{name}"


@functools.lru_cache(maxsize=2048)
def _package_of(text: str) -> tuple[str, str] | None:
    """PACKAGE_NAME and PACKAGE_VERSION of a dkms.conf, None when it does not parse; cached like
    evaluate_conf, so a dozen unchanged confs are not parsed again every scrape (~10 ms)."""
    try:
        conf = parse_dkms_conf(text, {})
    except DkmsConfError:
        return None
    return conf.package_name, conf.package_version


def _entry(ctx: Context, tree: str, install_tree: str, module: str, ver: str,
           modern: bool, relaxed: bool, distro_dest: str | None) -> DkmsEntry | None:
    vdir = f"{tree}/{module}/{ver}"
    if not ctx.is_dir(vdir):
        return None
    source = f"{vdir}/source"
    link = ctx.lstat(source)
    if link is None:
        return None
    is_link = (link.st_mode & 0o170000) == 0o120000
    resolves = ctx.is_dir(source)
    if not is_link and not resolves:
        return None
    state = "added"
    if modern and ((is_link and not resolves) or (not is_link and ctx.is_dir(f"/usr/src/{module}-{ver}"))):
        state = "broken"
    elif modern and not is_link:
        return None  # dkms >= 3.0.13 is_module_added: a plain source directory is not added
    conf_text = None
    if resolves:
        try:
            raw = ctx.load(f"{source}/dkms.conf", bytes, limit=MAX_CONF_BYTES, purpose="raw")
            conf_text = raw.decode("utf-8", "surrogateescape") if raw is not None else None
            if raw is None:
                ctx.error(f"{source}/dkms.conf", "dkms.conf missing: dkms cannot evaluate this module")
            elif (refusal := conf_refusal(conf_text)) is not None:
                ctx.error(f"{source}/dkms.conf", f"not a usable dkms.conf: {refusal}")
        except Unreadable:
            conf_text = None
    builds = tuple(_builds(ctx, tree, install_tree, module, ver, conf_text, relaxed, distro_dest))
    if state == "broken":
        builds = ()
    failure = _failure(ctx, vdir, builds)
    return DkmsEntry(module, ver, state, source, conf_text, builds, failure)


def _builds(ctx: Context, tree: str, install_tree: str, module: str, ver: str,
            conf_text: str | None, relaxed: bool, distro_dest: str | None):
    vdir = f"{tree}/{module}/{ver}"
    for kernel in ctx.listdir(vdir) or []:
        if not _KERNEL_DIR.match(kernel):
            continue
        for arch in ctx.listdir(f"{vdir}/{kernel}") or []:
            if arch.startswith("."):
                continue
            build = _build(ctx, tree, install_tree, module, ver, kernel, arch, conf_text, relaxed, distro_dest)
            if build is not None:
                yield build


def _build(ctx: Context, tree: str, install_tree: str, module: str, ver: str, kernel: str,
           arch: str, conf_text: str | None, relaxed: bool, distro_dest: str | None) -> DkmsBuild | None:
    kdir = f"{tree}/{module}/{ver}/{kernel}/{arch}"
    if not ctx.is_dir(f"{kdir}/module"):
        return None
    suffix = _module_suffix(ctx, install_tree, kernel)
    names, conditional = _dest_names(ctx, conf_text, kernel, arch, tree, install_tree, module, ver, kdir)
    files: list[tuple[str, str]] = []
    missing = False
    for name in names:
        found = _compressed_or_uncompressed(ctx, f"{kdir}/module", name, suffix)
        if found is None:
            # a module the conf adds under a condition (a kernel option) dkms may rightly not build
            missing = missing or name not in conditional
        else:
            files.append((name, found))
    if missing and not relaxed:
        return None  # dkms < 3.1.8: not built at all
    installed = ctx.fs.realpath(f"{tree}/{module}/kernel-{kernel}-{arch}") == ctx.fs.realpath(kdir) \
        and ctx.lstat(f"{tree}/{module}/kernel-{kernel}-{arch}") is not None \
        and _is_link(ctx, f"{tree}/{module}/kernel-{kernel}-{arch}")
    decorations: list[str] = []
    if ctx.is_dir(f"{tree}/{module}/original_module/{kernel}/{arch}"):
        decorations.append("original_module_exists")
    if missing:
        decorations.append("missing_built_modules")
    if installed and _differs(ctx, conf_text, files, kernel, arch, tree, install_tree, module, ver, suffix,
                              distro_dest):
        decorations.append("built_installed_differ")
    return DkmsBuild(kernel, arch, "installed" if installed else "built", tuple(decorations), tuple(files))


def _is_link(ctx: Context, hostpath: str) -> bool:
    st = ctx.lstat(hostpath)
    return st is not None and (st.st_mode & 0o170000) == 0o120000


def _dest_names(ctx: Context, conf_text: str | None, kernel: str, arch: str, tree: str,
                install_tree: str, module: str, ver: str, kdir: str) -> tuple[list[str], set[str]]:
    """The module names a build of ``kdir`` holds, and those of them the conf adds under a
    condition (dkms may rightly not have built those)."""
    if conf_text is not None:
        try:
            conf = evaluate_conf(conf_text, kernel, arch, tree, install_tree, module, ver)
            names = conf.dest_module_names()
            if names:
                return names, conf.conditional_module_names()
        except DkmsConfError as exc:
            ctx.error(f"{tree}/{module}/{ver}/source/dkms.conf", exc)
    # without a usable dkms.conf, the built files are the best account of the module's names
    return sorted({n.split(".ko", 1)[0] for n in (ctx.listdir(f"{kdir}/module") or []) if ".ko" in n}), set()


def _compressed_or_uncompressed(ctx: Context, directory: str, name: str, suffix: str) -> str | None:
    for candidate in (f"{directory}/{name}.ko", f"{directory}/{name}.ko{suffix}"):
        if ctx.exists(candidate):
            return candidate
    return None


def _module_suffix(ctx: Context, install_tree: str, kernel: str) -> str:
    """dkms's set_module_suffix for ``kernel``: a byte search of its modules.dep, kept on its own
    (a few bytes in the persistent cache), not the whole parsed table the module collector
    keeps: reading that back only for this was most of a timer run's dkms collector."""
    try:
        suffix = ctx.load(f"{install_tree}/{kernel}/modules.dep", modules_dep_suffix,
                          purpose="modules.dep-suffix", persist=SUFFIX_CODEC)
    except Unreadable:
        return ""
    return suffix or ""   # None: no modules.dep


def _differs(ctx: Context, conf_text: str | None, files: list[tuple[str, str]], kernel: str, arch: str,
             tree: str, install_tree: str, module: str, ver: str, suffix: str, distro: str | None) -> bool:
    """dkms's 'Diff between built and installed module': no identical copy where dkms looks
    (``distro``: the distribution's override_dest_module_location, detected once per scrape)."""
    conf = None
    if conf_text is not None:
        try:
            conf = evaluate_conf(conf_text, kernel, arch, tree, install_tree, module, ver)
        except DkmsConfError:
            conf = None
    for index, (name, built) in enumerate(files):
        locations = []
        raw = conf.dest_module_location(index) if conf else ""
        if distro:
            locations.append(distro)
        if raw and raw not in locations:
            locations.append(raw)
        installed = None
        for loc in locations:
            installed = _compressed_or_uncompressed(ctx, f"{install_tree}/{kernel}{loc}", name, suffix)
            if installed:
                break
        if installed is None or _same_bytes(ctx, installed, built) is not True:
            return True
    return False


def _same_bytes(ctx: Context, installed: str, built: str) -> bool | None:
    """Whether the installed copy holds the built module's bytes, as dkms's ``diff -q`` asks;
    None when either cannot be read (recorded).  Cached by both files' identities, in memory and
    on disk: an unchanged pair costs two stat calls."""
    try:
        return ctx.compute(installed, f"same-bytes-as:{ctx.same_file_key(built)}",
                           lambda path, st: same_bytes(path, st, ctx.fs.local(built)),
                           companions=(built,), persist=SAME_CODEC)
    except Unreadable:
        return None


def same_bytes(path, st, other) -> bool:
    """``cmp`` of two module files in 1 MiB chunks, stopping at the first difference: a vendor
    module is tens of MiB (Debian's nvidia-current.ko 62 MiB), and hashing both copies was most
    of a cold scrape's dkms collector there.  One file (a hard link) or different sizes answer
    without a read; a file past DIGEST_LIMIT is refused unread (by its size) or, if it grows
    while being read, as it is read."""
    other_st = os.stat(other)
    for p, size in ((path, st.st_size), (other, other_st.st_size)):
        if size > DIGEST_LIMIT:
            raise FileTooLarge(f"{p}: {size} bytes, larger than {DIGEST_LIMIT}")
    if (st.st_dev, st.st_ino) == (other_st.st_dev, other_st.st_ino):
        return True
    if st.st_size != other_st.st_size:
        return False
    # read into, not allocated per chunk; no bigger than the file (+1 to see its end in one read):
    # most modules are far smaller than a chunk, and two zeroed 1 MiB buffers per pair were a
    # third of a cold scrape's page faults on the benchmark host (below the mmap threshold,
    # exporter.process, small buffers come from the heap and are reused)
    size = min(_COMPARE_CHUNK, st.st_size + 1)
    total, x, y = 0, bytearray(size), bytearray(size)
    with open_regular(path) as a, open_regular(other) as b:
        while True:
            n, m = a.readinto(x), b.readinto(y)
            total += n
            if total > DIGEST_LIMIT:
                raise FileTooLarge(f"{path}: larger than {DIGEST_LIMIT} bytes")
            if n != m or (x != y if n == len(x) else x[:n] != y[:n]):
                return False
            if not n:
                return True


def _failure(ctx: Context, vdir: str, builds: tuple[DkmsBuild, ...]) -> BuildFailure | None:
    logpath = f"{vdir}/build/make.log"
    st = ctx.stat(logpath)
    if st is None:
        return None
    try:
        parsed = ctx.compute(logpath, "makelog", _read_make_log)
    except Unreadable:
        return None
    if parsed is None or parsed.kernel is None:
        return None
    arch = parsed.arch or ""
    if any(b.kernel == parsed.kernel and (not arch or b.arch == arch) for b in builds):
        return None  # a later successful build for that kernel: the log is stale
    if ctx.is_dir(f"{vdir}/{parsed.kernel}/{arch}/module"):
        return None
    return BuildFailure(parsed.kernel, arch, parsed.cause, parsed.detail, logpath, st.st_mtime)


def _read_make_log(path, st) -> MakeLog:
    """The header line names the kernel; a huge log is read as head + tail only."""
    head, tail = read_ends(path, 4096, MAX_LOG_BYTES)
    return classify_make_log(head + b"\n" + tail if tail else head)


def _framework(ctx: Context) -> tuple[str, str]:
    """dkms_tree/install_tree from /etc/dkms/framework.conf(.d), as dkms reads them."""
    tree, install_tree = DEFAULT_TREE, DEFAULT_INSTALL_TREE
    files = ["/etc/dkms/framework.conf"] + [
        f"/etc/dkms/framework.conf.d/{n}" for n in (ctx.listdir("/etc/dkms/framework.conf.d") or [])
        if n.endswith(".conf")]
    for path in files:
        try:
            text = ctx.load(path, lambda b: b.decode("utf-8", "replace"), limit=MAX_CONF_BYTES, purpose="text")
        except Unreadable:
            continue
        for line in (text or "").splitlines():
            m = _FRAMEWORK_VAR.match(line)
            if m and m.group(1) == "dkms_tree":
                tree = m.group(2)
            elif m and m.group(1) == "install_tree":
                install_tree = m.group(2)
    return tree.rstrip("/") or "/", install_tree.rstrip("/") or "/"


def _dkms_version(ctx: Context) -> str | None:
    """The installed dkms's version, read from the script itself (what `dkms --version` prints)."""
    for path in ("/usr/sbin/dkms", "/usr/bin/dkms", "/sbin/dkms"):
        try:
            found = ctx.load(path, lambda b: (m.group(1).decode() if (m := _DKMS_VERSION.search(b)) else ""),
                             limit=1024 * 1024, purpose="dkms-version")
        except Unreadable:
            continue
        if found:
            return found
    return None


def _distro_dest(ctx: Context) -> str | None:
    """override_dest_module_location: where dkms installs modules on this distribution."""
    distro, release, _ = detect(ctx)
    return distro.dkms_dest_for(release)
