"""Build a host root tree from a few lines of description, for tests and example hosts.

    host = Host(tmp_path)
    host.kernel("6.1.0-27-amd64", running=True)
    host.kernel("6.1.0-28-amd64", headers=False)
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    host.dkms_build("acpi-call", "1.2.2", "6.1.0-27-amd64")          # built + installed + depmod
    host.package("linux-image-6.1.0-28-amd64", "6.1.106-3", want="hold")
    host.grub()                                                      # Debian-style grub.cfg
    host.finish()                                                    # modules.dep, fixed mtimes

The layout is what the real tools produce on Debian 12 (merged /usr, DKMS's relative
kernel-K-arch links, absolute source links, Debian's 10_linux grub.cfg shape), so that the
same trees can be checked with the real dkms, depmod and dpkg.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
import textwrap
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

FIXED_MTIME = 1_700_000_000  # 2023-11-14: golden outputs must not depend on when tests run
ROOT_UUID = "3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c"
KEYS = Path(__file__).parent / "data" / "keys"
# the kernel symbols every test module imports (they are in each kernel's Module.symvers)
SYMBOLS = ("module_layout", "_printk", "__fentry__", "pci_register_driver")
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SHIM_LOCK = "605dab50-e046-4300-abb6-3dd810dd8b23"
EFI_CERT_X509 = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"


def vermagic(release: str) -> str:
    """Debian's vermagic shape (include/linux/vermagic.h), with its trailing space."""
    return f"{release} SMP preempt mod_unload modversions "


# kernels that keep another's symbol versions (RHEL's kABI within a minor release): release -> that one
KABI: dict[str, str] = {}


def kernel_crc(release: str, symbol: str) -> int:
    """Each test kernel exports its symbols with its own CRCs, as an ABI bump does (a kernel
    registered in KABI keeps the CRCs of the one it names)."""
    return zlib.crc32(f"{KABI.get(release, release)}:{symbol}".encode())


@functools.lru_cache(maxsize=None)
def signing_key(stem: str):
    """A committed test key (tests/data/keys) as modbuild.SigningKey."""
    import modbuild
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key((KEYS / f"{stem}.key").read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate((KEYS / f"{stem}.pem").read_bytes())
    return modbuild.SigningKey(key, cert, KEYS / f"{stem}.key", KEYS / f"{stem}.pem", KEYS / f"{stem}.der")


def module_elf(name: str, kernel: str, *, intree: bool = False, key: str | None = "dkms-mok",
               built_against: str | None = None, version: str = "1.0", compression: str = "none") -> bytes:
    """A real relocatable ELF kernel module (gcc), signed like sign-file, compressed by the real tool.

    built_against: the kernel whose vermagic and CRCs the module carries (default: ``kernel``).
    Compiled objects are cached by their description, so building hosts stays fast.
    """
    import modbuild
    against = built_against or kernel
    spec = modbuild.ModSpec(name=name.replace("-", "_"), vermagic=vermagic(against), intree=intree,
                            version=version, versions=tuple((s, kernel_crc(against, s)) for s in SYMBOLS),
                            undefined=tuple(s for s in SYMBOLS if s != "module_layout"))
    digest = hashlib.sha256(repr((spec, key, compression, KABI.get(against))).encode()).hexdigest()[:32]
    cached = modbuild.cache_dir() / "hostbuilder-elf" / f"{digest}.ko"
    if not cached.exists():
        obj = modbuild.build_module(spec, cached.with_suffix(".o"))
        data = obj.read_bytes()
        if key is not None:
            data = modbuild.sign_module_cryptography(data, signing_key(key))
        if compression != "none":
            data = modbuild.compress(data, compression)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
    return cached.read_bytes()


def _cpio(stage: Path) -> bytes:
    """`find . | sort | cpio -o -H newc --reproducible`, with fixed mtimes for stable bytes."""
    import subprocess
    for p in [stage, *stage.rglob("*")]:
        os.utime(p, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    names = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*"))
    out = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"],
                         input=("\n".join([".", *names]) + "\n").encode(), cwd=stage, capture_output=True,
                         check=True)
    return out.stdout


def _compress(data: bytes, fmt: str) -> bytes:
    import subprocess
    cmd = {"zstd": ["zstd", "-q", "-c", "-3"], "gzip": ["gzip", "-n", "-c"], "xz": ["xz", "--check=crc32", "-c"],
           "lzop": ["lzop", "-c"], "none": ["cat"]}[fmt]
    return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout


def signature_lists(ders: list[bytes]) -> bytes:
    """EFI_SIGNATURE_LISTs of X.509 certificates (MokListRT, db), one list per certificate."""
    out = b""
    for der in ders:
        out += uuid.UUID(EFI_CERT_X509).bytes_le + struct.pack("<III", 28 + 16 + len(der), 0, 16 + len(der))
        out += uuid.UUID(SHIM_LOCK).bytes_le + der
    return out


@dataclass
class _Kernel:
    release: str
    headers: bool
    image: bool
    modules_dep: bool
    config: dict[str, str]
    in_tree: list[str]


@dataclass
class Host:
    root: Path
    arch: str = "x86_64"
    absolute_source_links: bool = True
    kernels: dict[str, _Kernel] = field(default_factory=dict)
    packages: list[str] = field(default_factory=list)
    running: str | None = None
    _finished: bool = False
    dkms_dest: str = "updates/dkms"                  # dkms's module location on Debian
    depmod_rank: dict = field(default_factory=lambda: {"updates": 0})   # depmod.d search order

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for d in ("usr/lib", "usr/bin", "usr/sbin", "boot", "etc", "proc/sys/kernel", "sys", "run",
                  "var/lib/dkms", "var/lib/dpkg/info", "usr/src"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for link in ("lib", "bin", "sbin"):
            if not (self.root / link).is_symlink():
                (self.root / link).symlink_to(f"usr/{link}")
        self.write("etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
                   'VERSION_ID="12"\n')
        self.package("dpkg", "1.21.22")
        self.package("dkms", "3.0.10-8+deb12u1", arch="all")
        self.write("usr/sbin/dkms", '#!/bin/bash\n# fixture stand-in\necho $"dkms-3.0.10"\n', mode=0o755)

    # --- files ---------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def write(self, rel: str, content: str | bytes, mode: int | None = None) -> Path:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        if mode is not None:
            p.chmod(mode)
        return p

    def symlink(self, rel: str, target: str) -> Path:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to(target)
        return p

    # --- kernels -------------------------------------------------------------------------
    def kernel(self, release: str, *, running: bool = False, headers: bool = True, image: bool = True,
               modules_dep: bool = True, config: dict[str, str] | None = None,
               in_tree: list[str] | None = None) -> "Host":
        cfg = {"CONFIG_MODULES": "y", "CONFIG_MODULE_SIG": "y", "CONFIG_ACPI": "y", "CONFIG_MODVERSIONS": "y",
               "CONFIG_VIDEO_DEV": "m", "CONFIG_MODULE_SIG_HASH": "sha256", "CONFIG_MODULE_SIG_FORCE": "n",
               "CONFIG_SECURITY_LOCKDOWN_LSM": "y", "CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT": "y",
               "CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE": "y", "CONFIG_CRYPTO": "y"}
        cfg.update(config or {})
        k = _Kernel(release, headers, image, modules_dep, cfg, in_tree if in_tree is not None else ["e1000e"])
        self.kernels[release] = k
        mods = self.path(f"usr/lib/modules/{release}")
        mods.mkdir(parents=True, exist_ok=True)
        if image:
            self.write(f"boot/vmlinuz-{release}", b"MZ fake kernel image " + release.encode())
            self.write(f"boot/System.map-{release}",
                       f"ffffffffffffffff B The real System.map is in the linux-image-{release}-dbg package\n")
        self.write(f"boot/config-{release}", "".join(f"{key}={v}\n" for key, v in sorted(cfg.items())))
        for name in k.in_tree:
            self.write(f"usr/lib/modules/{release}/kernel/drivers/misc/{name}.ko",
                       module_elf(name, release, intree=True, key="kernel-build"))
        if headers:
            self.headers(release)
        if running:
            self.set_running(release)
        self.package(f"linux-image-{release}", "6.1.0-1")
        return self

    def headers(self, release: str) -> None:
        src = f"usr/src/linux-headers-{release}"
        self.write(f"{src}/Makefile", "# kernel headers Makefile\n")
        self.write(f"{src}/include/generated/autoconf.h", "#define CONFIG_MODULES 1\n")
        self.write(f"{src}/.config", self.path(f"boot/config-{release}").read_text()
                   if self.path(f"boot/config-{release}").exists() else "")
        self.write(f"{src}/Module.symvers", "".join(
            f"0x{kernel_crc(release, sym):08x}\t{sym}\tvmlinux\tEXPORT_SYMBOL\t\n" for sym in SYMBOLS))
        self.symlink(f"usr/lib/modules/{release}/build", f"/{src}")
        self.package(f"linux-headers-{release}", "6.1.0-1")
        if release in self.kernels:
            self.kernels[release].headers = True

    def remove_headers(self, release: str) -> None:
        import shutil
        shutil.rmtree(self.path(f"usr/src/linux-headers-{release}"), ignore_errors=True)
        link = self.path(f"usr/lib/modules/{release}/build")
        if link.is_symlink():
            link.unlink()
        self.packages = [p for p in self.packages if f"Package: linux-headers-{release}\n" not in p]
        self.kernels[release].headers = False

    def set_running(self, release: str) -> None:
        self.running = release
        self.write("proc/sys/kernel/osrelease", release + "\n")
        self.write("proc/cmdline", f"BOOT_IMAGE=/boot/vmlinuz-{release} root=UUID={ROOT_UUID} ro quiet\n")
        self.write("sys/module/module/parameters/sig_enforce", "N\n")
        if not self.path("sys/kernel/security/lockdown").exists():
            self.write("sys/kernel/security/lockdown", "[none] integrity confidentiality\n")

    def loaded(self, *modules: tuple[str, str]) -> "Host":
        """/proc/modules with (name, taint) pairs, e.g. ("nvidia", "POE")."""
        lines = [f"{name} 16384 0 - Live 0x0000000000000000" + (f" ({taint})" if taint else "")
                 for name, taint in modules]
        self.write("proc/modules", "".join(l + "\n" for l in lines))
        return self

    def secure_boot(self, enabled: bool = True, *, setup_mode: bool = False, mok: tuple[str, ...] = ("dkms-mok",),
                    shim_validation_disabled: bool = False) -> "Host":
        """efivars as the firmware and shim expose them, and the DKMS key pair on disk."""
        efivars = "sys/firmware/efi/efivars"
        self.write(f"{efivars}/SecureBoot-{EFI_GLOBAL}", b"\x06\x00\x00\x00" + bytes([int(enabled)]))
        self.write(f"{efivars}/SetupMode-{EFI_GLOBAL}", b"\x06\x00\x00\x00" + bytes([int(setup_mode)]))
        if mok:
            ders = [(KEYS / f"{stem}.der").read_bytes() for stem in mok]
            self.write(f"{efivars}/MokListRT-{SHIM_LOCK}", b"\x06\x00\x00\x00" + signature_lists(ders))
        if shim_validation_disabled:
            self.write(f"{efivars}/MokSBStateRT-{SHIM_LOCK}", b"\x06\x00\x00\x00\x01")
        self.write("var/lib/dkms/mok.pub", (KEYS / "dkms-mok.der").read_bytes())
        self.write("var/lib/dkms/mok.key", (KEYS / "dkms-mok.key").read_bytes(), mode=0o600)
        if enabled and not setup_mode and not shim_validation_disabled:
            self.write("sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
        return self

    # --- DKMS ----------------------------------------------------------------------------
    def dkms(self, name: str, version: str, *, dest: list[str] | None = None, autoinstall: bool = True,
             conf: str | None = None, extra_conf: str = "", source: str = "ok") -> "Host":
        """Register a DKMS module (``dkms add``): /usr/src/<m>-<v>/dkms.conf and the source link.

        source: "ok", "dangling" (source link to a missing dir), "no-conf" (dir without dkms.conf).
        """
        dest = dest if dest is not None else [name.replace("-", "_")]
        src = f"usr/src/{name}-{version}"
        if conf is None:
            lines = [f'PACKAGE_NAME="{name}"', f'PACKAGE_VERSION="{version}"',
                     f'MAKE[0]="make -C ${{kernel_source_dir}} M=${{dkms_tree}}/${{PACKAGE_NAME}}/${{PACKAGE_VERSION}}/build"',
                     f'CLEAN="make -C ${{kernel_source_dir}} M=${{dkms_tree}}/${{PACKAGE_NAME}}/${{PACKAGE_VERSION}}/build clean"']
            for i, d in enumerate(dest):
                lines.append(f'BUILT_MODULE_NAME[{i}]="{d}"')
                lines.append(f'DEST_MODULE_LOCATION[{i}]="/extra"')
            if autoinstall:
                lines.append('AUTOINSTALL="yes"')
            conf = "\n".join(lines) + "\n" + extra_conf
        if source == "ok":
            self.write(f"{src}/dkms.conf", conf)
            self.write(f"{src}/Makefile", f"obj-m := {' '.join(d + '.o' for d in dest)}\n")
        elif source == "no-conf":
            self.write(f"{src}/Makefile", "obj-m := x.o\n")
        vdir = self.path(f"var/lib/dkms/{name}/{version}")
        vdir.mkdir(parents=True, exist_ok=True)
        target = f"/{src}" if self.absolute_source_links else os.path.relpath(self.path(src), vdir)
        self.symlink(f"var/lib/dkms/{name}/{version}/source", target)
        if source == "dangling":
            import shutil
            shutil.rmtree(self.path(src), ignore_errors=True)
        return self

    def dkms_build(self, name: str, version: str, kernel: str, *, dest: list[str] | None = None,
                   installed: bool = True, copy_to_kernel: bool = True, depmod: bool = True,
                   content: dict[str, bytes] | None = None, arch: str | None = None,
                   key: str | None = "dkms-mok", built_against: str | None = None) -> "Host":
        """A successful DKMS build (``dkms build``), and with installed=True ``dkms install``.

        Module files are real ELF modules built for ``kernel`` (or ``built_against``) and signed
        with ``key`` (None: unsigned), unless ``content`` gives the bytes."""
        arch = arch or self.arch
        dest = dest if dest is not None else [name.replace("-", "_")]
        kdir = f"var/lib/dkms/{name}/{version}/{kernel}/{arch}"
        self.write(f"{kdir}/log/make.log", f"DKMS make.log for {name}-{version} for kernel {kernel} ({arch})\n"
                                           "Tue Nov 14 22:13:20 UTC 2023\nmake: Leaving directory\n")
        for d in dest:
            data = (content or {}).get(d) or module_elf(d, kernel, key=key, built_against=built_against,
                                                        version=version)
            self.write(f"{kdir}/module/{d}.ko", data)
            if installed and copy_to_kernel:
                self.write(f"usr/lib/modules/{kernel}/{self.dkms_dest}/{d}.ko", data)
        if installed:
            self.symlink(f"var/lib/dkms/{name}/kernel-{kernel}-{arch}", f"{version}/{kernel}/{arch}")
        return self

    def dkms_failed_build(self, name: str, version: str, kernel: str, log: str, arch: str | None = None) -> "Host":
        """A failed build: dkms leaves build/make.log and no <kernel>/<arch>/module."""
        arch = arch or self.arch
        header = f"DKMS make.log for {name}-{version} for kernel {kernel} ({arch})\nTue Nov 14 22:13:20 UTC 2023\n"
        self.write(f"var/lib/dkms/{name}/{version}/build/make.log", header + textwrap.dedent(log))
        return self

    # --- packages ------------------------------------------------------------------------
    def package(self, name: str, version: str, *, want: str = "install", state: str = "installed",
                flag: str = "ok", arch: str = "amd64", info_files: bool = True) -> "Host":
        self.packages = [p for p in self.packages if not p.startswith(f"Package: {name}\n")]
        self.packages.append(f"Package: {name}\nStatus: {want} {flag} {state}\nPriority: optional\n"
                             f"Maintainer: Fixture <fixture@example.org>\nArchitecture: {arch}\nVersion: {version}\n"
                             f"Description: {name}\n"
                             f" fixture package\n"
                             + ("Triggers-Awaited: man-db\n" if state == "triggers-awaited" else "")
                             + ("Triggers-Pending: /usr/share/man\n" if state == "triggers-pending" else ""))
        if info_files and state not in ("not-installed", "config-files"):
            self.write(f"var/lib/dpkg/info/{name}.list", f"/usr/share/doc/{name}\n")
            self.write(f"var/lib/dpkg/info/{name}.md5sums", "")
        return self

    # --- boot ----------------------------------------------------------------------------
    def grub(self, *, default: str = "0", saved_entry: str | None = None, next_entry: str | None = None,
             kernels: list[str] | None = None) -> "Host":
        """grub.cfg shaped like Debian 12's grub-mkconfig output (00_header + 10_linux)."""
        from exporter.formats.versions import release_key
        kernels = kernels if kernels is not None else sorted(
            (k for k, v in self.kernels.items() if v.image), key=release_key, reverse=True)
        default_line = 'set default="${saved_entry}"' if default == "saved" else f'set default="{default}"'
        out = [
            "#", "# DO NOT EDIT THIS FILE", "#", "### BEGIN /etc/grub.d/00_header ###",
            "if [ -s $prefix/grubenv ]; then", "  set have_grubenv=true", "  load_env", "fi",
            'if [ "${next_entry}" ] ; then', '   set default="${next_entry}"', "   set next_entry=",
            "   save_env next_entry", "   set boot_once=true", "else", f"   {default_line}", "fi", "",
            "function savedefault {", '  if [ -z "${boot_once}" ]; then', '    saved_entry="${chosen}"',
            "    save_env saved_entry", "  fi", "}", "### END /etc/grub.d/00_header ###", "",
            "### BEGIN /etc/grub.d/10_linux ###",
        ]
        if kernels:
            newest = kernels[0]
            out += [f"menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os "
                    f"$menuentry_id_option 'gnulinux-simple-{ROOT_UUID}' {{",
                    "\tload_video", "\tinsmod gzio", "\techo\t'Loading Linux " + newest + " ...'",
                    f"\tlinux\t/boot/vmlinuz-{newest} root=UUID={ROOT_UUID} ro  quiet",
                    f"\tinitrd\t/boot/initrd.img-{newest}", "}",
                    f"submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option "
                    f"'gnulinux-advanced-{ROOT_UUID}' {{"]
            for k in kernels:
                for mode, suffix in (("", ""), ("recovery", " (recovery mode)")):
                    entry_id = f"gnulinux-{k}-{'recovery' if mode else 'advanced'}-{ROOT_UUID}"
                    out += [f"\tmenuentry 'Debian GNU/Linux, with Linux {k}{suffix}' --class debian "
                            f"--class gnu-linux --class gnu --class os $menuentry_id_option '{entry_id}' {{",
                            "\t\tload_video", f"\t\techo\t'Loading Linux {k} ...'",
                            f"\t\tlinux\t/boot/vmlinuz-{k} root=UUID={ROOT_UUID} ro {'single' if mode else ' quiet'}",
                            f"\t\tinitrd\t/boot/initrd.img-{k}", "\t}"]
            out.append("}")
        out += ["", "### END /etc/grub.d/10_linux ###", ""]
        self.write("boot/grub/grub.cfg", "\n".join(out))
        env = "# GRUB Environment Block\n# WARNING: Do not edit this file by tools other than grub-editenv!!!\n"
        if saved_entry is not None:
            env += f"saved_entry={saved_entry}\n"
        if next_entry is not None:
            env += f"next_entry={next_entry}\n"
        self.write("boot/grub/grubenv", env + "#" * (1024 - len(env.encode())))
        self.write("etc/default/grub", f"GRUB_DEFAULT={default}\nGRUB_TIMEOUT=5\n")
        return self

    def reboot_required(self, *packages: str) -> "Host":
        self.write("run/reboot-required", "*** System restart required ***\n")
        self.write("run/reboot-required.pkgs", "".join(p + "\n" for p in packages))
        return self

    def initramfs(self, release: str, modules: list[str] = (), *, compression: str = "zstd",
                  early_cpio: bool = False) -> "Host":
        """/boot/initrd.img-K as mkinitramfs lays it out: real `cpio -H newc` of usr/lib/modules/K
        (the named modules, copied from the kernel's tree, decompressed), compressed by the real tool,
        optionally after an uncompressed early (microcode) archive."""
        import shutil
        import subprocess
        import tempfile
        base = self.path(f"usr/lib/modules/{release}")
        with tempfile.TemporaryDirectory() as tmp:
            stage = Path(tmp) / "main"
            for d in ("usr/bin", "scripts", "conf", f"usr/lib/modules/{release}"):
                (stage / d).mkdir(parents=True, exist_ok=True)
            for link in ("lib", "bin"):
                (stage / link).symlink_to(f"usr/{link}")
            (stage / "init").write_text("#!/bin/sh\n# fixture init\n")
            (stage / "conf/initramfs.conf").write_text(f"MODULES=most\nCOMPRESS={compression}\n")
            for name in modules:
                found = sorted(p for p in base.rglob(f"{name}.ko*") if "build" not in p.parts)
                if not found:
                    raise ValueError(f"{name}: no module file for {release}")
                rel = found[0].relative_to(base).as_posix().split(".ko", 1)[0] + ".ko"
                (stage / f"usr/lib/modules/{release}" / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(found[0], stage / f"usr/lib/modules/{release}" / rel)
            archive = _cpio(stage)
            data = _compress(archive, compression)
            if early_cpio:
                early = Path(tmp) / "early"
                (early / "kernel/x86/microcode").mkdir(parents=True)
                (early / "kernel/x86/microcode/GenuineIntel.bin").write_bytes(b"\x01" * 64)
                data = _cpio(early) + data
        self.write(f"boot/initrd.img-{release}", data)
        return self

    # --- finishing -----------------------------------------------------------------------
    def depmod(self, release: str) -> None:
        """modules.dep as depmod writes it: updates/ shadows same-named modules elsewhere."""
        base = self.path(f"usr/lib/modules/{release}")
        found: dict[str, str] = {}
        rank = self.depmod_rank
        entries = []
        for path in sorted(base.rglob("*.ko*")):
            rel = path.relative_to(base).as_posix()
            if rel.startswith("build/"):
                continue
            entries.append((rank.get(rel.split("/", 1)[0], 1), rel))
        for _, rel in sorted(entries):
            name = rel.rsplit("/", 1)[-1].split(".", 1)[0].replace("-", "_")
            found.setdefault(name, rel)
        self.write(f"usr/lib/modules/{release}/modules.dep", "".join(f"{rel}:\n" for rel in found.values()))

    def depmod_all(self) -> None:
        """modules.dep for every kernel that has one (each family's finish() starts with it)."""
        for release, k in self.kernels.items():
            if k.modules_dep:
                self.depmod(release)

    def finish(self, *, depmod: bool = True, mtime: int = FIXED_MTIME) -> Path:
        if depmod:
            self.depmod_all()
        self.write("var/lib/dpkg/status", "\n".join(sorted(self.packages, key=lambda s: s.split("\n", 1)[0])))
        self.write("var/lib/dpkg/arch", "amd64\n")
        for path in [self.root, *self.root.rglob("*")]:
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        self._finished = True
        return self.root
