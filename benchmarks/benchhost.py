"""The benchmark's fixture hosts: big, realistic, built once and cached.

    from benchhost import Shape, build
    root = build(Shape(kernels=6, modules=12, image="most"))

A host of ``kernels`` installed kernels (one running, the newest booted next) with ``modules``
DKMS modules in mixed states (see MODULES), on Debian 12's layout (tests/hostbuilder.py):

- module files are real gcc-built ELF objects of realistic size (a few thousand functions and
  symbols, real kernel-module bytes as data), signed like sign-file, and compressed the way the
  kernel's build would (none / xz / zstd by kernel generation, as modules.dep then says);
- every kernel has ~4,000 in-tree modules (hard links of one module, under the paths of a real
  Debian 6.1 kernel) and modules.dep/.bin written by the real ``depmod -b``;
- each kernel's initramfs is the real Debian ``mkinitramfs MODULES=most`` image's content
  (~125 MB of cpio, 1,200 entries; ``image="list"``: the small MODULES=list image, ``"none"``: no
  images), re-rooted at that kernel's /usr/lib/modules/K, plus the early-boot DKMS modules a
  hook adds, packed as mkinitramfs does (``find | sort | cpio -H newc``, ``zstd -9 -T0``);
- each kernel's /boot/config and modules.builtin are the real Debian kernel's (~10,600 config
  lines, as a real host has them), with the options the exporter reads set as the fixture
  says, so that the verdicts are the fixture's;
- each kernel's /boot/vmlinuz is the real Debian image (8 MB of xz, Debian's certificates built
  in); Secure Boot is on and every signer is enrolled, so a run needs none of them;
- /var/lib/dpkg/status holds this machine's real package stanzas plus the fixture's own.

Hosts are cached under ``$DKMS_EXPORTER_TEST_CACHE/bench/`` keyed by their shape and the recipe
(this file and tests/hostbuilder.py), so a stale cache is rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import initramfs_build  # noqa: E402
import modbuild  # noqa: E402
from hostbuilder import SYMBOLS, Host, kernel_crc, signing_key, vermagic  # noqa: E402

RECIPE = "3"   # 2: the real kernel config and modules.builtin; 3: the real vmlinuz
COMPRESSIONS = ("none", "xz", "zstd")  # by kernel index: older kernels plain, newer compressed
IN_TREE_FILLER = 4000

API_MISMATCH_LOG = """\
make -C /lib/modules/{k}/build M=/var/lib/dkms/nvfake/535.1/build modules
/var/lib/dkms/nvfake/535.1/build/nv.c:212:9: error: implicit declaration of function 'pci_enable_pcie_error_reporting' [-Werror=implicit-function-declaration]
cc1: some warnings being treated as errors
make: *** [Makefile:234: __sub-make] Error 2
"""


@dataclass(frozen=True)
class DkmsModule:
    name: str
    version: str
    dest: tuple[str, ...]
    size: int = 1           # functions in its main .ko, in thousands (real: e1000e 1.3k symbols, xfs 8.6k)
    role: str = "installed"  # see _place


# Twelve DKMS modules in the states a fleet shows; a shape with N modules takes the first N
# (past twelve: more plain installed ones).
MODULES = (
    DkmsModule("zfake", "2.1.11", ("zfake", "spl"), size=4, role="early_boot"),
    DkmsModule("nvfake", "535.1", ("nvfake", "nvfake-drm", "nvfake-modeset"), size=6, role="failed_newest"),
    DkmsModule("acpi-call", "1.2.2", ("acpi_call",)),
    DkmsModule("v4l2loopback", "0.12.7", ("v4l2loopback",), role="built_not_installed_newest"),
    DkmsModule("vboxfake", "7.0.6", ("vboxdrv", "vboxnetflt", "vboxnetadp"), size=2),
    DkmsModule("wgfake", "1.0.2", ("wgfake",), role="not_built_headerless"),
    DkmsModule("ddcci", "0.4.2", ("ddcci", "ddcci-backlight"), role="unsigned_newest"),
    DkmsModule("r8168", "8.052", ("r8168",), role="two_versions"),
    DkmsModule("evdi", "1.14.1", ("evdi",), role="added_only"),
    DkmsModule("broadcom-sta", "6.30", ("wl",), role="excluded_old"),
    DkmsModule("openrazer", "3.5.1", ("razerkbd", "razermouse"), role="file_missing_running"),
    DkmsModule("sysdig", "0.29", ("scap",), role="not_in_depmod_newest"),
)


@dataclass(frozen=True)
class Shape:
    kernels: int = 6
    modules: int = 12
    image: str = "most"      # most | list | none
    exports: int = 0         # kernel exports in each Module.symvers (0: the handful the test modules use)

    @property
    def label(self) -> str:
        return f"k{self.kernels}-m{self.modules}-{self.image}" + (f"-e{self.exports}" if self.exports else "")


def kernel_releases(n: int) -> list[str]:
    return [f"6.1.0-{21 + i}-amd64" for i in range(n)]


def dkms_modules(n: int) -> list[DkmsModule]:
    extra = [DkmsModule(f"extra{i}", "1.0", (f"extra{i}",)) for i in range(max(0, n - len(MODULES)))]
    return list(MODULES[:n]) + extra


def cache_root() -> Path:
    return initramfs_build.cache_dir() / "bench"


def _recipe_key(*parts: str) -> str:
    h = hashlib.sha256(RECIPE.encode())
    for path in (Path(__file__), REPO / "tests" / "hostbuilder.py", REPO / "tests" / "modbuild.py"):
        h.update(path.read_bytes())
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# module files


def _blob() -> Path:
    """Real kernel-module bytes (a slice of the cached Debian kernel's drivers) as module data, so
    that module files compress like real ones, not like zeros."""
    out = cache_root() / "blob.bin"
    if out.exists():
        return out
    kernel = _debian_kernel()
    data = b""
    for path in sorted((kernel.modules_dir / "kernel" / "drivers" / "net").rglob("*.ko")):
        data += path.read_bytes()
        if len(data) > 4 << 20:
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def module_file(name: str, kernel: str, *, kilo_functions: int, compression: str, key: str | None = "dkms-mok",
                intree: bool = False) -> bytes:
    """A realistic module: kilo_functions thousand functions (symbols), data from real modules,
    .modinfo/__versions for ``kernel``, signed, compressed. Cached by its description."""
    spec_key = repr((_recipe_key("module"), name, kernel, kilo_functions, compression, key, intree))
    cached = cache_root() / "modules" / (hashlib.sha256(spec_key.encode()).hexdigest()[:24] + ".ko")
    if cached.exists():
        return cached.read_bytes()
    cname = name.replace("-", "_")
    blob = _blob()
    data_bytes = min(blob.stat().st_size, kilo_functions * 256 * 1024)
    extra_c = _asm_body(cname, kilo_functions * 1000, blob, data_bytes)
    spec = modbuild.ModSpec(name=cname, vermagic=vermagic(kernel), intree=intree, version="1.0",
                            versions=tuple((s, kernel_crc(kernel, s)) for s in SYMBOLS),
                            undefined=tuple(s for s in SYMBOLS if s != "module_layout"), extra_c=extra_c)
    with tempfile.TemporaryDirectory() as tmp:
        data = modbuild.build_module(spec, Path(tmp) / "m.ko").read_bytes()
    if key is not None:
        data = modbuild.sign_module_cryptography(data, signing_key(key))
    if compression != "none":
        data = modbuild.compress(data, compression)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp_path.write_bytes(data)
    os.replace(tmp_path, cached)
    return data


def _asm_body(cname: str, functions: int, blob: Path, data_bytes: int) -> str:
    """Top-level asm (fast to assemble, unlike as many C functions): global functions, each a
    symbol in .symtab, and ``data_bytes`` of real module bytes in .rodata."""
    lines = [".text"]
    for i in range(functions):
        f = f"{cname}_fn{i}"
        lines += [f".globl {f}", f".type {f},@function", f"{f}:", f"lea {i + 3}(%rdi),%eax", "ret",
                  f".size {f},.-{f}"]
    lines += ['.section .rodata.fw,"a"', f'.incbin "{blob}", 0, {data_bytes}', ".previous"]
    body = "\\n".join(l.replace("\\", "\\\\").replace('"', '\\"') for l in lines)
    return f'__asm__("{body}\\n");\n'


# ------------------------------------------------------------------------------------------------
# the host


def build(shape: Shape, *, log=print) -> Path:
    """The host tree for ``shape`` (built on first use, then reused)."""
    final = cache_root() / "hosts" / f"{shape.label}-{_recipe_key(shape.label)}"
    if (final / ".complete").exists():
        return final / "root"
    log(f"building benchmark host {shape.label} in {final} (once; cached) ...")
    for stale in final.parent.glob(f"{shape.label}-*"):   # built by an older recipe
        shutil.rmtree(stale, ignore_errors=True)
    final.mkdir(parents=True)
    _build(final / "root", shape, log)
    (final / ".complete").write_text("ok\n")
    return final / "root"


def _build(root: Path, shape: Shape, log) -> None:
    releases = kernel_releases(shape.kernels)
    running = releases[max(0, len(releases) - 3)]  # two newer kernels installed since the last boot
    newest = releases[-1]
    h = Host(root, absolute_source_links=False)   # dkms resolves `source` outside the root
    for i, k in enumerate(releases):
        h.kernel(k, running=(k == running), headers=True, in_tree=[])
        if shape.exports:
            _big_symvers(h, k, shape.exports)
    modules = dkms_modules(shape.modules)
    late: list[tuple[str, bytes]] = []   # files installed after depmod ran
    for m in modules:
        _place(h, m, releases, running, newest, late)
    h.secure_boot(True)
    h.loaded(*[(d.replace("-", "_"), "OE") for m in modules[:4] for d in m.dest if m.role != "failed_newest"],
             ("e1000e", ""))
    h.package("linux-headers-amd64", "6.1.106-3", want="hold")
    h.package("broken-postinst", "1.0", state="half-configured")
    _real_packages(h)
    h.grub()
    h.reboot_required(f"linux-image-{newest}")
    for i, k in enumerate(releases):
        _in_tree(h, k, COMPRESSIONS[i % len(COMPRESSIONS)], log)
        _real_config(h, k)
    h.finish(depmod=False)
    for i, k in enumerate(releases):
        subprocess.run(["depmod", "-b", str(root), k], check=True, capture_output=True)
    for rel, data in late:
        h.write(rel, data)
    for k in releases:
        _real_image(h, k)
    if shape.image != "none":
        stage = _image_stage(shape.image, log)
        for i, k in enumerate(releases):
            log(f"  initramfs for {k} ({shape.image}) ...")
            _image(h, stage, k, [d for m in modules if m.role == "early_boot" for d in m.dest])


def _suffix(h: Host, k: str) -> str:
    comp = COMPRESSIONS[sorted(h.kernels).index(k) % len(COMPRESSIONS)]
    return modbuild.SUFFIX[comp], comp


def _dkms_files(h: Host, m: DkmsModule, k: str, *, key: str | None = "dkms-mok") -> dict[str, bytes]:
    suffix, comp = _suffix(h, k)
    return {d: module_file(d, k, kilo_functions=m.size if i == 0 else 1, compression=comp, key=key)
            for i, d in enumerate(m.dest)}  # the main .ko is the big one (nvidia vs nvidia-drm)


def _build_for(h: Host, m: DkmsModule, k: str, *, installed: bool = True, key: str | None = "dkms-mok",
               version: str | None = None, late: list | None = None) -> None:
    """``dkms build`` (+ ``dkms install``): module/<d>.ko<suffix> and updates/dkms/<d>.ko<suffix>."""
    version = version or m.version
    suffix, _ = _suffix(h, k)
    kdir = f"var/lib/dkms/{m.name}/{version}/{k}/{h.arch}"
    h.write(f"{kdir}/log/make.log", f"DKMS make.log for {m.name}-{version} for kernel {k} ({h.arch})\n"
                                    "Tue Nov 14 22:13:20 UTC 2023\nmake: Leaving directory\n")
    for d, data in _dkms_files(h, m, k, key=key).items():
        h.write(f"{kdir}/module/{d}{suffix}", data)
        if installed:
            target = f"usr/lib/modules/{k}/updates/dkms/{d}{suffix}"
            if late is not None:
                late.append((target, data))
            else:
                h.write(target, data)
    if installed:
        h.symlink(f"var/lib/dkms/{m.name}/kernel-{k}-{h.arch}", f"{version}/{k}/{h.arch}")


def _place(h: Host, m: DkmsModule, releases: list[str], running: str, newest: str, late: list) -> None:
    """Register the module and build it per its role."""
    extra = ""
    if m.role == "excluded_old":
        extra = f'BUILD_EXCLUSIVE_KERNEL="^6\\.1\\.0-(2[4-9]|[3-9][0-9])-"\n'
    h.dkms(m.name, m.version, dest=list(m.dest), extra_conf=extra)
    h.package(f"{m.name}-dkms", f"{m.version}-1", arch="all")
    for k in releases:
        if m.role == "added_only":
            continue
        if m.role == "excluded_old" and releases.index(k) < 3:
            continue
        if m.role == "not_built_headerless" and k == newest:
            continue
        if m.role == "failed_newest" and k == newest:
            h.dkms_failed_build(m.name, m.version, k, API_MISMATCH_LOG.format(k=k))
            continue
        if m.role == "built_not_installed_newest" and k == newest:
            _build_for(h, m, k, installed=False)
            continue
        if m.role == "unsigned_newest" and k == newest:
            _build_for(h, m, k, key=None)
            continue
        if m.role == "not_in_depmod_newest" and k == newest:
            _build_for(h, m, k, late=late)
            continue
        _build_for(h, m, k)
        if m.role == "file_missing_running" and k == running:
            suffix, _ = _suffix(h, k)
            os.unlink(h.path(f"usr/lib/modules/{k}/updates/dkms/{m.dest[0]}{suffix}"))
    if m.role == "two_versions":
        h.dkms(m.name, "8.051", dest=list(m.dest))
        _build_for(h, m, releases[0], installed=False, version="8.051")


def _in_tree(h: Host, k: str, comp: str, log) -> None:
    """~4,000 in-tree modules (hard links of one signed in-tree module) at real Debian paths."""
    data = module_file("e1000e", k, kilo_functions=1, compression=comp, key="kernel-build", intree=True)
    suffix = modbuild.SUFFIX[comp]
    first = h.write(f"usr/lib/modules/{k}/kernel/drivers/net/ethernet/intel/e1000e/e1000e{suffix}", data)
    for rel in _real_module_paths()[:IN_TREE_FILLER]:
        target = h.path(f"usr/lib/modules/{k}/{rel}{suffix}")
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(first, target)


def _real_config(h: Host, k: str) -> None:
    """The real Debian kernel's config and modules.builtin, for the size of what a run reads (an
    earlier fixture had a 10-line config: it hid each real config's parse, and ~2.5 MiB of six
    kernels' options).  The options the exporter reads are left out of the real file and
    written as the fixture set them."""
    real_lines, builtin = _real_kernel_files()
    own = h.path(f"boot/config-{k}").read_text()
    set_here = {line.split("=", 1)[0] for line in own.splitlines()}
    kept = [line for name, line in real_lines if name not in set_here]
    h.write(f"boot/config-{k}", "".join(kept) + own)
    h.write(f"usr/lib/modules/{k}/modules.builtin", builtin)


@functools.cache
def _debian_kernel() -> initramfs_build.Kernel:
    """The cached real Debian kernel, looked up once per build (each lookup scans the .deb cache)."""
    return initramfs_build.debian_kernel()


def _real_image(h: Host, k: str) -> None:
    """The real Debian vmlinuz (8 MB, xz, Debian's certificates built in) as /boot/vmlinuz-K: a
    run that decompressed kernel images for their certificates (~0.6 s and liblzma's 32 MiB
    dictionary each) would show here.  Every signer on this host is enrolled, so none should.
    A copy, not a link: the finished host's timestamps must not reach the shared kernel cache."""
    kernel = _debian_kernel()
    shutil.copyfile(kernel.root / f"boot/vmlinuz-{kernel.release}", h.path(f"boot/vmlinuz-{k}"))


@functools.cache
def _real_kernel_files() -> tuple[tuple[tuple[str | None, str], ...], bytes]:
    """Once per build: the real config's lines without the options the exporter reads (each
    with its option name, None for comments), and the real modules.builtin."""
    kernel = _debian_kernel()
    read = set(re.findall(r"CONFIG_[A-Z0-9_]+", "".join(p.read_text() for p in (REPO / "exporter").rglob("*.py"))))
    option = re.compile(r"(?:# )?(CONFIG_[A-Za-z0-9_]+)")
    lines = []
    for line in (kernel.root / f"boot/config-{kernel.release}").read_text().splitlines(keepends=True):
        m = option.match(line)
        if m is None or m.group(1) not in read:
            lines.append((m.group(1) if m else None, line))
    return tuple(lines), (kernel.root / f"lib/modules/{kernel.release}/modules.builtin").read_bytes()


def _big_symvers(h: Host, k: str, n: int) -> None:
    """A Module.symvers the size of a real distribution kernel's (Debian 12's 6.1: 24,683
    exports from vmlinux and ~1,500 modules): the symbols the test modules use, with the CRCs
    hostbuilder gives them, then filler exports spread over the real kernel's module paths, in
    modpost's 5-column format with GPL-only and namespaced ones mixed in."""
    paths = [p.split("/", 1)[1] for p in _real_module_paths()[:1500]]
    lines = [f"0x{kernel_crc(k, sym):08x}\t{sym}\tvmlinux\tEXPORT_SYMBOL\t\n" for sym in SYMBOLS]
    for i in range(max(0, n - len(SYMBOLS))):
        module = "vmlinux" if i % 3 else paths[i % len(paths)]
        kind = "EXPORT_SYMBOL_GPL" if i % 2 else "EXPORT_SYMBOL"
        ns = "CXL" if i % 97 == 0 else ""
        lines.append(f"0x{kernel_crc(k, f'filler_{i}'):08x}\tfiller_export_{i}\t{module}\t{kind}\t{ns}\n")
    h.write(f"usr/src/linux-headers-{k}/Module.symvers", "".join(lines))


def _real_module_paths() -> list[str]:
    """kernel/.../name (without .ko) of every module in the cached real Debian kernel."""
    kernel = _debian_kernel()
    dep = (kernel.modules_dir / "modules.dep").read_text()
    return sorted(line.split(":", 1)[0].split(".ko", 1)[0] for line in dep.splitlines() if line.strip())


def _real_packages(h: Host) -> None:
    """This machine's dpkg status stanzas (realistic size and fields), with their info files."""
    text = Path("/var/lib/dpkg/status").read_text(errors="replace")
    have = {p.split("\n", 1)[0] for p in h.packages}
    for stanza in text.split("\n\n"):
        stanza = stanza.strip("\n")
        if not stanza.startswith("Package: "):
            continue
        head = stanza.split("\n", 1)[0]
        name = head[len("Package: "):]
        if head in have or name.startswith(("linux-image", "linux-headers", "dkms")):
            continue
        h.packages.append(stanza + "\n")
        if " installed" in stanza.split("Status:", 1)[-1].split("\n", 1)[0]:
            arch = next((l.split(": ", 1)[1] for l in stanza.splitlines() if l.startswith("Architecture: ")), "")
            info = name if arch in ("all", "amd64", "") else f"{name}:{arch}"
            h.write(f"var/lib/dpkg/info/{info}.list", f"/usr/share/doc/{name}\n")
            h.write(f"var/lib/dpkg/info/{info}.md5sums", "")


# ------------------------------------------------------------------------------------------------
# initramfs images


def _image_stage(kind: str, log) -> Path:
    """The real Debian mkinitramfs image's main archive, unpacked once (cpio -i as root)."""
    src = initramfs_build.mkinitramfs_image("zstd", modules=kind)
    stage = cache_root() / f"stage-{kind}-{hashlib.sha256(str(src).encode()).hexdigest()[:8]}"
    if (stage / ".complete").exists():
        return stage / "root"
    log(f"  unpacking {src} ...")
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "root").mkdir(parents=True)
    from exporter.collectors.initramfs import list_image_file
    main = [s for s in list_image_file(src).segments if s.compression != "none"][-1]
    subprocess.run(f"tail -c +{main.offset + 1} '{src}' | zstd -dcq | cpio -idm --quiet --no-absolute-filenames",
                   shell=True, check=True, cwd=stage / "root")
    (stage / ".complete").write_text("ok\n")
    return stage / "root"


def _image(h: Host, stage: Path, kernel: str, early: list[str]) -> None:
    """/boot/initrd.img-K, hard-linked from a cache keyed by what goes in (hosts of different
    shapes share their kernels' images)."""
    files = sorted(p for d in early for p in h.path(f"usr/lib/modules/{kernel}/updates/dkms").glob(f"{d}.ko*"))
    key = hashlib.sha256(repr((RECIPE, str(stage), kernel)).encode() + b"".join(p.read_bytes() for p in files))
    cached = cache_root() / "images" / f"{key.hexdigest()[:24]}.img"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        _pack_image(h, stage, kernel, early, tmp)
        os.replace(tmp, cached)
    out = h.path(f"boot/initrd.img-{kernel}")
    out.unlink(missing_ok=True)
    os.link(cached, out)
    os.utime(out, (1_700_000_100, 1_700_000_100))  # newer than the modules it holds


def _pack_image(h: Host, stage: Path, kernel: str, early: list[str], out: Path) -> None:
    """The stage re-rooted at usr/lib/modules/K plus the early-boot DKMS modules (decompressed,
    as mkinitramfs copies them), packed like mkinitramfs."""
    mods = stage / "usr" / "lib" / "modules"
    (orig,) = [p for p in mods.iterdir() if p.is_dir()]
    target = mods / kernel
    orig.rename(target)
    added: list[Path] = []
    try:
        for d in early:
            found = sorted(h.path(f"usr/lib/modules/{kernel}/updates/dkms").glob(f"{d}.ko*"))
            if not found:
                continue
            raw = found[0].read_bytes()
            dest = target / "updates" / "dkms" / f"{d}.ko"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(_decompress_module(raw))
            added.append(dest)
        cmd = ("find . | LC_ALL=C sort | cpio --quiet --reproducible -o -H newc -R 0:0 | zstd -q -9 -T0 > "
               f"'{out}'")
        subprocess.run(cmd, shell=True, check=True, cwd=stage)
    finally:
        for p in added:
            p.unlink()
        target.rename(orig)


def _decompress_module(raw: bytes) -> bytes:
    from exporter.formats.module import decompress_module
    return decompress_module(raw)[1]
