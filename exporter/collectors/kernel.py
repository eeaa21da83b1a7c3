"""--collector.kernel: installed kernels, the running one, the newest, and per kernel its headers,
depmod data, config and out-of-tree module files."""

from __future__ import annotations

import os
import re

from ..facts.kernel import MODULES_ROOT, OUT_OF_TREE_DIRS, Kernel, KernelFacts
from ..formats import depmod, kconfig
from ..formats.depmod import ModulesDep, modname_of_path, parse_modules_builtin, parse_modules_dep, parse_modules_dep_bin
from ..formats.kconfig import parse_kernel_config
from ..distro import detect
from ..distro.pkgbase import read_pkgbase
from ..host.context import Context, Unreadable
from . import register

_IMAGE = re.compile(r"^(?:vmlinuz|vmlinux|Image|bzImage)-(.+)$")
_NOT_A_KERNEL = re.compile(r"(\.old|\.bak|\.efi\.signed|\.dpkg-\w+|\.sig|~)$")
MAX_WALK_ENTRIES = 20000
# RHEL's kmod package, SUSE's suse-module-tools
WEAK_MODULES = ("/usr/sbin/weak-modules", "/sbin/weak-modules", "/usr/lib/module-init-tools/weak-modules2")


@register("kernel", KernelFacts, readiness=True)
def collect_kernels(ctx: Context) -> KernelFacts:
    images = _boot_images(ctx)
    module_dirs = [d for d in (ctx.listdir(MODULES_ROOT, must_be_dir=True) or []) if ctx.is_dir(f"{MODULES_ROOT}/{d}")]
    for release in module_dirs:
        if release not in images and ctx.exists(f"{MODULES_ROOT}/{release}/vmlinuz"):
            images[release] = f"{MODULES_ROOT}/{release}/vmlinuz"  # Fedora/Arch keep it here
    key = detect(ctx)[0].release_key        # dpkg's order on Debian, rpm's on RHEL
    kernels = [_kernel(ctx, release, images[release], release in module_dirs)
               for release in sorted(images, key=key)]
    orphans = tuple(sorted((d for d in module_dirs if d not in images), key=key))
    running = _running(ctx)
    weak = next((p for p in WEAK_MODULES if ctx.exists(p)), None)
    return KernelFacts(tuple(kernels), orphans, running, max(images, key=key) if images else None,
                       os.uname().machine, weak)


def _boot_images(ctx: Context) -> dict[str, str]:
    images: dict[str, str] = {}
    for name in ctx.listdir("/boot", must_be_dir=True) or []:
        m = _IMAGE.match(name)
        if not m or _NOT_A_KERNEL.search(name) or not m.group(1)[:1].isdigit():
            continue
        path = f"/boot/{name}"
        if ctx.exists(path):   # a dangling link is not an installed kernel
            images.setdefault(m.group(1), path)
    return images


RELEASE = re.compile(r"[0-9][\x21-\x2e\x30-\x7e]{0,63}")
"""A kernel release as uname -r prints it: KERNELRELEASE starts with VERSION, Kbuild refuses one
over 64 characters (__NEW_UTS_LEN), and it names /lib/modules/K, so it has no space or '/'."""


def _kernel(ctx: Context, release: str, image: str, has_modules_dir: bool) -> Kernel:
    base = f"{MODULES_ROOT}/{release}"
    return Kernel(release=release, image=image, has_modules_dir=has_modules_dir,
                  modules_dep=load_modules_dep(ctx, release) if has_modules_dir else None,
                  headers_dir=_headers(ctx, base), config=_config(ctx, release),
                  builtin=_builtin(ctx, base) if has_modules_dir else None,
                  pkgbase=read_pkgbase(ctx, release) if has_modules_dir else None,
                  **_out_of_tree(ctx, base) if has_modules_dir else {})


def load_modules_dep(ctx: Context, release: str) -> ModulesDep | None:
    base = f"{MODULES_ROOT}/{release}"
    try:
        dep = ctx.load(f"{base}/modules.dep", parse_modules_dep, purpose="modules.dep", persist=depmod.CODEC)
        if dep is None:
            dep = ctx.load(f"{base}/modules.dep.bin", parse_modules_dep_bin, purpose="modules.dep.bin",
                           persist=depmod.CODEC)
        return dep
    except Unreadable:
        return None


def _builtin(ctx: Context, base: str) -> frozenset[str] | None:
    """The modules built into K's image (modules.builtin): present without a file."""
    try:
        return ctx.load(f"{base}/modules.builtin", parse_modules_builtin, limit=4 * 1024 * 1024,
                        purpose="modules.builtin", persist=depmod.BUILTIN_CODEC)
    except Unreadable:
        return None


def _headers(ctx: Context, base: str) -> str | None:
    """Headers usable by dkms: build/ resolves to a tree with include/ and a Makefile."""
    build = f"{base}/build"
    if ctx.is_dir(f"{build}/include") and ctx.exists(f"{build}/Makefile"):
        return ctx.fs.realpath(build)
    return None


CONFIG_PLACES = ("/boot/config-{k}", MODULES_ROOT + "/{k}/config", MODULES_ROOT + "/{k}/build/.config")
"""Where K's configuration is, first found first: Debian, Ubuntu, RHEL and SUSE copy it to /boot;
Fedora's kernel-core ships /lib/modules/K/config (its /boot copy is kernel-install's); Arch
ships none outside its linux-headers, whose build/.config is the config K was built with (and
every DKMS host has its headers).  Without one, whether K enforces signatures is unknown."""


def _config(ctx: Context, release: str) -> dict[str, str]:
    for place in CONFIG_PLACES:
        try:
            config = ctx.load(place.format(k=release), parse_kernel_config, limit=4 * 1024 * 1024,
                              purpose="kconfig", persist=kconfig.CODEC)
        except Unreadable:
            return {}   # recorded: a damaged config is an error, not a reason to look elsewhere
        if config is not None:
            return config
    return {}


def _out_of_tree(ctx: Context, base: str) -> dict:
    """modname -> module files under updates/, extra/, weak-updates/ (bounded walk), and their mtimes."""
    found: dict[str, list[str]] = {}
    mtimes: dict[str, float] = {}
    seen = 0
    for top in OUT_OF_TREE_DIRS:
        stack = [top]
        while stack:
            rel = stack.pop()
            try:
                names = ctx.listdir(f"{base}/{rel}", must_be_dir=rel in OUT_OF_TREE_DIRS)
            except Unreadable:
                continue
            for name in names or []:
                seen += 1
                if seen > MAX_WALK_ENTRIES:
                    ctx.error(base, f"more than {MAX_WALK_ENTRIES} entries under out-of-tree dirs; stopped")
                    return {"out_of_tree": {k: tuple(v) for k, v in found.items()}, "mtimes": mtimes}
                child = f"{rel}/{name}"
                if ".ko" in name and not name.endswith((".sig", ".origin")):
                    st = ctx.stat(f"{base}/{child}")
                    if st is None:
                        continue
                    found.setdefault(modname_of_path(name), []).append(child)
                    mtimes[child] = st.st_mtime
                elif ctx.is_dir(f"{base}/{child}") and not ctx.fs.readlink_host(f"{base}/{child}"):
                    stack.append(child)
    return {"out_of_tree": {k: tuple(sorted(v)) for k, v in found.items()}, "mtimes": mtimes}


def _running(ctx: Context) -> str | None:
    """uname -r, from procfs; a value no kernel prints is a read error, not a kernel (the running
    kernel decides which packaged modules are needed: a garbled one would drop them)."""
    path = ctx.fs.proc("sys/kernel/osrelease")
    try:
        raw = ctx.load_local(path, bytes, limit=4096, purpose="raw")
    except Unreadable:
        return None
    if raw is None:
        return None
    release = raw.decode("ascii", "replace").strip()
    if not RELEASE.fullmatch(release):
        ctx.error(str(path), f"not a kernel release: {release[:64]!r}")
        return None
    return release
