"""Build RHEL- and Fedora-layout host trees from the real Debian host's artifacts and real tools.

    .venv/bin/python -m tests.rhelhost.build      # build or reuse; prints RHELHOST_DIR=<dir>

What is real: the kernels (Debian's 6.1.0-NEW, -OLD from tests/realhost, and 6.1.0-56, whose
Module.symvers is NEW's, byte for byte: a kABI-compatible pair as RHEL's minor releases are),
their module trees, headers and DKMS builds (tests/realhost's built_for_both), modules compiled
by kbuild in that tree (chroot, its own gcc): a kABI kmod built once against 56, an akmod
built for NEW and failing for OLD with the compiler's own words; packages built by rpmbuild and
recorded with `rpm --root --justdb` (sqlite), the same headers written into a Berkeley DB hash
file by db_load for RHEL 8; initramfs images made by dracut from each tree's modules; BLS
entries written by systemd's kernel-install (90-loaderentry, layout=bls, the tree's
os-release); grubenv by grub-editenv; the weak-updates/ links decided by depmod -aeE against
each kernel's symvers, as RHEL's weak-modules decides them; version locks written by
`dnf versionlock add`.  Hand-written: os-release, grub.cfg (RHEL's grub2-mkconfig is not in
Debian), /proc/sys/kernel/osrelease and /proc/stat (the running kernel and boot time).

Layout under ${DKMS_EXPORTER_TEST_CACHE:-~/.cache/dkms-exporter-tests}/rhelhost/builds/KEY/:
scenarios/NAME/tree, scenarios/NAME/scenario.json (kernels, roles, what it proves), build.log,
timings.json, stamp.  KEY hashes this file, the module sources, the real-host build's stamp and
the versions of rpm, dracut, systemd, kmod and db5.3; the two most recently used builds are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

import modbuild  # noqa: E402
import rpmtools  # noqa: E402
from rpmtools import Spec, install, rpmbuild  # noqa: E402
from rhelhost.suse import suse_scenarios, suse_tree  # noqa: E402

MACHINE_ID = "4f1f5a5c0c5e4d0f9d3b2a1c8e7f6a5b"
TWIN = "6.1.0-56-amd64"          # NEW's kABI twin (identical Module.symvers)
KEEP_BUILDS = 2
BOOT_TIME = 1_700_000_000        # the trees' boot (/proc/stat btime, /proc/1's mtime)
DEPMOD_CONF = "search updates extra built-in weak-updates\n"     # RHEL's /etc/depmod.d/dist.conf


def cache_root() -> Path:
    return Path(os.environ.get("DKMS_EXPORTER_TEST_CACHE", Path.home() / ".cache/dkms-exporter-tests"))


@dataclass
class Scenario:
    name: str
    layout: str                  # rhel9 | rhel8 | fedora
    kernels: list[str]
    running: str
    next_boot: str
    proves: str
    dkms: list[str] = field(default_factory=list)       # kernels DKMS built for (in extra/)
    kmod_for: str | None = None                         # the kernel kabidemo was built against
    weak_links: bool = True
    akmod: bool = False
    versionlock: list[str] = field(default_factory=list)
    after_boot: list[str] = field(default_factory=list)  # kernels installed after boot
    early_boot: list[str] = field(default_factory=list)  # modules dracut puts in the images


def scenarios(new: str, old: str) -> list[Scenario]:
    return [
        Scenario("rhel9_healthy", "rhel9", [TWIN, new], new, new,
                 "RHEL 9: DKMS builds in extra/, kabidemo built for 56 and linked into NEW's weak-updates/ "
                 "(depmod: the CRCs match); NEW installed after boot; kernel-devel locked. Ready.",
                 dkms=[new], kmod_for=TWIN, after_boot=[new], early_boot=["v4l2loopback"],
                 versionlock=["kernel-devel"]),
        Scenario("rhel9_weak_missing", "rhel9", [TWIN, new], TWIN, new,
                 "RHEL 9: NEW installed without its posttrans (no weak-modules --add-kernel): kabidemo fits NEW "
                 "but NEW's weak-updates/ is empty. weak_update_missing.",
                 dkms=[new], kmod_for=TWIN, weak_links=False),
        Scenario("rhel9_kabi_break", "rhel9", [old, TWIN], TWIN, old,
                 "RHEL 9: the next boot is a kernel whose symbol versions differ from 56's: depmod refuses "
                 "the weak link. kabi_mismatch.",
                 kmod_for=TWIN),
        Scenario("rhel8_bdb", "rhel8", [old, new], new, new,
                 "RHEL 8: a Berkeley DB rpmdb (db_load), blscfg's RHEL 8 order; DKMS for both kernels. Ready.",
                 dkms=[old, new]),
        Scenario("fedora_akmods", "fedora", [old, new], new, old,
                 "Fedora: rpmdb under /usr/lib/sysimage/rpm; akdemo's kmod built for NEW, its build for OLD "
                 "failed (implicit declaration); next_entry boots OLD once. build_failed.",
                 akmod=True),
    ]


# ---------------------------------------------------------------------------------------------
# helpers


class Builder:
    def __init__(self, out: Path, log: Path) -> None:
        self.out, self.log = out, log
        self.mounted: list[Path] = []

    def run(self, argv: list[str], *, check: bool = True, env: dict | None = None, cwd: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(map(str, argv))}\n")
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=cwd,
                              input=input, timeout=1800)
        with open(self.log, "a") as log:
            log.write(proc.stdout[-20000:] + proc.stderr[-20000:] + f"(exit {proc.returncode})\n")
        if check and proc.returncode != 0:
            raise RuntimeError(f"$ {' '.join(map(str, argv))}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")
        return proc

    def step(self, text: str) -> None:
        line = f"[rhelhost {time.strftime('%H:%M:%S')}] {text}"
        print(line, file=sys.stderr, flush=True)
        with open(self.log, "a") as log:
            log.write(f"\n==== {line}\n")


def link_tree(src: Path, dst: Path) -> None:
    """A hardlinked copy: files to change are replaced (unlink + write), never written through."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)


def replace(path: Path, data: bytes | str) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def symlink(path: Path, target: str) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def tool_versions() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}=${Version} ", "rpm", "dracut-core", "systemd",
                          "kmod", "db5.3-util", "grub-common", "dnf", "dnf-plugins-core", "faketime", "zypper"],
                         capture_output=True, text=True).stdout
    return out


def build_key(realhost: Path) -> str:
    h = hashlib.sha256()
    for path in sorted([Path(__file__), HERE / "suse.py", *(HERE / "src").rglob("*"), TESTS / "rpmtools.py",
                        TESTS / "ndbtools.py", *(TESTS / "ndb").rglob("*.[ch]")]):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    h.update((realhost / "stamp").read_bytes())
    h.update(tool_versions().encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# the work tree: realhost's built_for_both plus kernel 56, where the modules are compiled


def work_tree(b: Builder, realhost: Path, new: str, old: str) -> Path:
    work = b.out / "work"
    b.step(f"work tree: realhost built_for_both ({new}, {old}) + {TWIN} from its .debs")
    link_tree(realhost / "scenarios/built_for_both/tree", work)
    for pkg in (f"linux-image-{TWIN}", f"linux-headers-{TWIN}", f"linux-headers-{TWIN.replace('-amd64', '-common')}"):
        deb_into(b, modbuild.apt_download(pkg), work)
    b.run(["depmod", "-b", work, TWIN])
    for name in ("kabidemo", "akdemo"):
        shutil.copytree(HERE / "src" / name, work / "build" / name)
    b.step(f"kbuild in the work tree: kabidemo for {TWIN}; akdemo for {new} (builds) and {old} (fails)")
    kbuild(b, work, "kabidemo", TWIN, expect_ok=True)
    kbuild(b, work, "akdemo", new, expect_ok=True)
    failed = kbuild(b, work, "akdemo", old, expect_ok=False)
    (work / "build/akdemo-old.log").write_text(failed)
    return work


def deb_into(b: Builder, deb: Path, tree: Path) -> None:
    """A .deb's files into a merged-/usr tree (dpkg-deb -x would replace the lib -> usr/lib link
    with a directory, and with it the tree's dynamic loader)."""
    stage = b.out / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    b.run(["dpkg-deb", "-x", deb, stage])
    for top in os.listdir(stage):
        dest = tree / "usr" / top if top in ("lib", "bin", "sbin", "lib64") else tree / top
        dest.mkdir(parents=True, exist_ok=True)
        b.run(["cp", "-a", f"{stage / top}/.", dest])
    shutil.rmtree(stage)


def kbuild(b: Builder, work: Path, name: str, kernel: str, *, expect_ok: bool) -> str:
    """make -C /lib/modules/K/build M=/build/NAME-K modules, inside the tree (its gcc, its headers)."""
    src = work / "build" / f"{name}-{kernel}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(work / "build" / name, src)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"}
    proc = b.run(["chroot", work, "make", "-C", f"/lib/modules/{kernel}/build", f"M=/build/{name}-{kernel}",
                  "modules"], check=False, env=env)
    built = src / f"{name}.ko"
    if expect_ok and (proc.returncode != 0 or not built.exists()):
        raise RuntimeError(f"kbuild of {name} for {kernel} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    if not expect_ok and proc.returncode == 0:
        raise RuntimeError(f"kbuild of {name} for {kernel} was meant to fail and did not")
    return proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# one scenario tree


def os_release(layout: str) -> str:
    if layout == "fedora":
        return ('NAME="Fedora Linux"\nVERSION="40 (Server Edition)"\nID=fedora\nVERSION_ID=40\n'
                'PRETTY_NAME="Fedora Linux 40 (Server Edition)"\nPLATFORM_ID="platform:f40"\n')
    version = "8.10" if layout == "rhel8" else "9.4"
    code = "Ootpa" if layout == "rhel8" else "Plow"
    return (f'NAME="Red Hat Enterprise Linux"\nVERSION="{version} ({code})"\nID="rhel"\nID_LIKE="fedora"\n'
            f'VERSION_ID="{version}"\nPLATFORM_ID="platform:el{version[0]}"\n'
            f'PRETTY_NAME="Red Hat Enterprise Linux {version} ({code})"\n')


def rpm_version(kernel: str) -> tuple[str, str]:
    """kernel-core's VERSION and RELEASE for a Debian release 6.1.0-NN-amd64: 6.1.0, NN.amd64."""
    v, nn, _ = kernel.split("-")
    return v, f"{nn}.el9"


def scenario_tree(b: Builder, work: Path, s: Scenario, new: str, old: str) -> Path:
    t = b.out / "scenarios" / s.name / "tree"
    b.step(f"{s.name}: {s.proves}")
    for d in ("usr/bin", "usr/sbin", "usr/lib", "etc/depmod.d", "etc/kernel", "etc/dnf/plugins", "etc/yum.repos.d",
              "boot/loader/entries", "boot/grub2", "proc/sys/kernel", "var/lib", "usr/src/kernels"):
        (t / d).mkdir(parents=True, exist_ok=True)
    for link in ("lib", "bin", "sbin"):
        symlink(t / link, f"usr/{link}")
    replace(t / "etc/os-release", os_release(s.layout))
    replace(t / "etc/machine-id", MACHINE_ID + "\n")
    replace(t / "etc/depmod.d/dist.conf", DEPMOD_CONF)
    replace(t / "etc/dnf/dnf.conf", "[main]\ngpgcheck=1\ninstallonly_limit=3\nbest=True\n")
    replace(t / "proc/sys/kernel/osrelease", s.running + "\n")
    replace(t / "proc/stat", f"cpu  1 0 1 1 0 0 0 0 0 0\nbtime {BOOT_TIME}\n")
    (t / "proc/1").mkdir(exist_ok=True)
    for k in s.kernels:
        kernel_files(b, work, t, k)
    if s.dkms:
        dkms_files(work, t, s.dkms)
    if s.kmod_for:
        kmod = t / f"usr/lib/modules/{s.kmod_for}/extra/kabidemo/kabidemo.ko"
        kmod.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / f"build/kabidemo-{s.kmod_for}/kabidemo.ko", kmod)
        (t / "usr/sbin/weak-modules").write_text("#!/bin/bash\n# kmod's weak-modules (RHEL); the builder did its work\n")
    if s.akmod:
        akmod_files(work, t, new, old)
    for k in s.kernels:
        b.run(["depmod", "-b", t, "-C", t / "etc/depmod.d", k])
    if s.kmod_for and s.weak_links:
        for k in s.kernels:
            if k != s.kmod_for:
                weak_modules_add_kernel(b, t, k, s.kmod_for)
    for k in s.kernels:
        dracut(b, t, k, s.early_boot)
        kernel_install(b, t, k)
    grub(b, t, s)
    packages(b, t, s, new, old)
    (t / "proc/1").touch()
    os.utime(t / "proc/1", (BOOT_TIME, BOOT_TIME))
    (b.out / "scenarios" / s.name / "scenario.json").write_text(json.dumps(asdict(s), indent=1) + "\n")
    return t


def kernel_files(b: Builder, work: Path, t: Path, k: str) -> None:
    """kernel-core's files: the module tree (vmlinuz inside, as RHEL ships it), the /boot copies
    kernel-install's 20-grub plugin makes, symvers; kernel-devel's /usr/src/kernels/K."""
    link_tree(work / f"usr/lib/modules/{k}", t / f"usr/lib/modules/{k}")
    shutil.rmtree(t / f"usr/lib/modules/{k}/updates", ignore_errors=True)    # DKMS goes to extra/ here
    for name in ("vmlinuz", "config", "System.map"):
        os.link(work / f"boot/{name}-{k}", t / f"boot/{name}-{k}")
    os.link(work / f"boot/vmlinuz-{k}", t / f"usr/lib/modules/{k}/vmlinuz")
    symvers = gzip.compress((work / f"usr/src/linux-headers-{k}/Module.symvers").read_bytes(), mtime=0)
    replace(t / f"boot/symvers-{k}.gz", symvers)
    replace(t / f"usr/lib/modules/{k}/symvers.gz", symvers)
    common = k.replace("-amd64", "-common")
    for d in (f"usr/src/linux-headers-{k}", f"usr/src/linux-headers-{common}"):
        if not (t / d).exists():
            link_tree(work / d, t / d)
    if not (t / "usr/lib/linux-kbuild-6.1").exists():
        link_tree(work / "usr/lib/linux-kbuild-6.1", t / "usr/lib/linux-kbuild-6.1")
    symlink(t / f"usr/src/kernels/{k}", f"/usr/src/linux-headers-{k}")
    symlink(t / f"usr/lib/modules/{k}/build", f"/usr/src/kernels/{k}")


def dkms_files(work: Path, t: Path, kernels: list[str]) -> None:
    """DKMS's tree and its installed modules, in RHEL's place for them: /lib/modules/K/extra/."""
    if not (t / "var/lib/dkms").exists():
        link_tree(work / "var/lib/dkms", t / "var/lib/dkms")
        for src in ("acpi-call-1.2.2", "v4l2loopback-0.12.7"):
            link_tree(work / f"usr/src/{src}", t / f"usr/src/{src}")
        os.link(work / "usr/sbin/dkms", t / "usr/sbin/dkms")
    for m in ("acpi-call", "v4l2loopback"):
        for k in os.listdir(t / f"var/lib/dkms/{m}"):
            if k.startswith("kernel-") and not any(k == f"kernel-{x}-x86_64" for x in kernels):
                (t / f"var/lib/dkms/{m}/{k}").unlink()      # DKMS built, not installed for this kernel
    for k in kernels:
        for ko in ("acpi_call.ko", "v4l2loopback.ko"):
            dest = t / f"usr/lib/modules/{k}/extra/{ko}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(work / f"usr/lib/modules/{k}/updates/dkms/{ko}", dest)


def akmod_files(work: Path, t: Path, new: str, old: str) -> None:
    """akmod-akdemo's source rpm as akmods finds it; the kmod it built for NEW; the log of the
    build for OLD, in akmods' format around the compiler's real output."""
    srpm = rpmbuild(Spec("akdemo-kmod", "2.0", "1.fc40", arch="noarch",
                         files={"/usr/share/akdemo/akdemo.c": (HERE / "src/akdemo/akdemo.c").read_text()}),
                    source=True)
    name = "akdemo-kmod-2.0-1.fc40.src.rpm"
    replace(t / f"usr/src/akmods/{name}", srpm.read_bytes())
    symlink(t / "usr/src/akmods/akdemo-kmod.latest", name)
    ko = t / f"usr/lib/modules/{new}/extra/akdemo/akdemo.ko"
    ko.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / f"build/akdemo-{new}/akdemo.ko", ko)
    stamp = "2023/11/14 22:13:20"
    cache = t / "var/cache/akmods/akdemo"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"2.0-1-for-{new}.log").write_text(
        f"{stamp} akmods: Building RPM using the command '/usr/sbin/akmodsbuild --target x86_64 --kernels {new} "
        f"/usr/src/akmods/akdemo-kmod.latest'\n{stamp} akmods: Installing newly built rpms\n{stamp} akmods: Successful.\n")
    out = (work / "build/akdemo-old.log").read_text()
    (cache / f"2.0-1-for-{old}.failed.log").write_text(
        f"{stamp} akmods: Building RPM using the command '/usr/sbin/akmodsbuild --target x86_64 --kernels {old} "
        f"/usr/src/akmods/akdemo-kmod.latest'\n"
        + "".join(f"{stamp} akmodsbuild: {line}\n" for line in out.splitlines())
        + f"{stamp} akmods: Building rpms failed; see /var/cache/akmods/akdemo/2.0-1-for-{old}.failed.log for details\n")


def weak_modules_add_kernel(b: Builder, t: Path, k: str, built_for: str, source: str = "extra") -> None:
    """RHEL's weak-modules --add-kernel K: link every other kernel's extra/ modules into K's
    weak-updates/, then let depmod -aeE against K's symvers remove the links it finds a symbol
    problem in ("needs unknown symbol", "disagrees about version of symbol"), until none.
    ``source="updates"``: SUSE's weak-modules2, which links a KMP's updates/X.ko as
    weak-updates/updates/X.ko (the path below the other kernel's module directory)."""
    extra = t / f"usr/lib/modules/{built_for}/{source}"
    weak = t / f"usr/lib/modules/{k}/weak-updates"
    for ko in sorted(extra.rglob("*.ko")):
        # weak-modules links /lib/modules/OTHER/extra/... absolutely; relative here, so that depmod -b
        # (and a copy of the tree anywhere) resolves it inside the tree
        link = weak / (ko.relative_to(extra) if source == "extra" else ko.relative_to(extra.parent))
        symlink(link, os.path.relpath(ko, link.parent))
    symvers = b.out / f"symvers-{k}"
    symvers.write_bytes(gzip.decompress((t / f"boot/symvers-{k}.gz").read_bytes()))
    while True:
        proc = b.run(["depmod", "-b", t, "-C", t / "etc/depmod.d", "-naeE", symvers, k], check=False)
        bad = {line.split()[2] for line in proc.stderr.splitlines()
               if line.startswith("depmod: WARNING: ") and "/weak-updates/" in line
               and ("needs unknown symbol" in line or "disagrees about version of symbol" in line)}
        removed = False
        for path in sorted(bad):
            link = Path(path) if path.startswith(str(t)) else t / path.lstrip("/")
            if link.is_symlink():
                link.unlink()
                removed = True
        with open(b.log, "a") as log:
            log.write(f"weak-modules --add-kernel {k}: depmod finds {sorted(bad) or 'nothing'} incompatible\n")
        if not removed:
            break
    b.run(["depmod", "-b", t, "-C", t / "etc/depmod.d", k])
    listed = (t / f"usr/lib/modules/{k}/modules.dep").read_text()
    linked = [str(p.relative_to(weak.parent)) for p in weak.rglob("*.ko")]
    if any(f"{rel}:" not in listed for rel in linked):
        raise RuntimeError(f"depmod did not index the weak-updates links of {k}: {linked}")


def dracut(b: Builder, t: Path, k: str, early: list[str]) -> None:
    argv = ["dracut", "--quiet", "--force", "--no-hostonly", "--no-early-microcode", "--kmoddir",
            t / f"usr/lib/modules/{k}", "--kver", k, "-m", "base", "--compress", "zstd"]
    if early:
        argv += ["--add-drivers", " ".join(early)]
    b.run([*argv, t / f"boot/initramfs-{k}.img"])


def kernel_install(b: Builder, t: Path, k: str) -> None:
    """systemd's kernel-install add K with only 90-loaderentry (layout=bls), in a private mount
    namespace where /etc/os-release is the tree's and BOOT_ROOT a tmpfs (the plugin names files
    relative to the mount point /boot is on: ``stat -c %m``); what it writes is copied into the
    tree's /boot."""
    (t / "etc/kernel/install.conf").write_text("layout=bls\n")
    (t / "etc/kernel/cmdline").write_text("root=UUID=3f1c2b8e-6a7d-4c1e-9b2a-5d8e7f6a1b2c ro rhgb quiet\n")
    boot = b.out / "kernel-install-boot"
    boot.mkdir(exist_ok=True)
    script = (f'mount -t tmpfs tmpfs "{boot}" && mkdir -p "{boot}/{MACHINE_ID}" "{boot}/loader/entries" && '
              f'mount --bind "{t}/etc/os-release" /etc/os-release && '
              f'kernel-install add "{k}" "{t}/boot/vmlinuz-{k}" "{t}/boot/initramfs-{k}.img" && '
              f'cp -a "{boot}/." "{t}/boot/"')
    env = {**os.environ, "MACHINE_ID": MACHINE_ID, "BOOT_ROOT": str(boot), "KERNEL_INSTALL_CONF_ROOT": f"{t}/etc/kernel",
           "KERNEL_INSTALL_PLUGINS": "/usr/lib/kernel/install.d/90-loaderentry.install"}
    b.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env)


def grub(b: Builder, t: Path, s: Scenario) -> None:
    """grub.cfg's BLS section as grub2-mkconfig writes it on RHEL; grubenv from grub-editenv:
    saved_entry (grubby --set-default), or next_entry (grub2-reboot) for a one-shot boot."""
    replace(t / "boot/grub2/grub.cfg", "\n".join([
        "### BEGIN /etc/grub.d/00_header ###", "set pager=1", "if [ -f ${config_directory}/grubenv ]; then",
        "  load_env -f ${config_directory}/grubenv", "elif [ -s $prefix/grubenv ]; then", "  load_env", "fi",
        'if [ "${next_entry}" ] ; then', '   set default="${next_entry}"', "   set next_entry=",
        "   save_env next_entry", "   set boot_once=true", "else", '   set default="${saved_entry}"', "fi",
        "### END /etc/grub.d/00_header ###", "### BEGIN /etc/grub.d/10_linux ###", "insmod part_gpt", "insmod xfs",
        "blscfg", "### END /etc/grub.d/10_linux ###", ""]))
    replace(t / "etc/default/grub", "GRUB_TIMEOUT=5\nGRUB_DEFAULT=saved\nGRUB_ENABLE_BLSCFG=true\n")
    env = t / "boot/grub2/grubenv"
    env.unlink(missing_ok=True)
    b.run(["grub-editenv", env, "create"])
    if s.layout == "fedora" and s.next_boot != s.running:
        b.run(["grub-editenv", env, "set", f"saved_entry={MACHINE_ID}-{s.running}",
               f"next_entry={MACHINE_ID}-{s.next_boot}"])
    else:
        b.run(["grub-editenv", env, "set", f"saved_entry={MACHINE_ID}-{s.next_boot}"])


def packages(b: Builder, t: Path, s: Scenario, new: str, old: str) -> None:
    """The rpmdb: what the packages of this tree would be, built by rpmbuild and recorded by rpm."""
    dbpath = "/usr/lib/sysimage/rpm" if s.layout == "fedora" else "/var/lib/rpm"
    if s.layout == "fedora":
        symlink(t / "var/lib/rpm", "../../usr/lib/sysimage/rpm")
    dist = {"rhel9": "el9", "rhel8": "el8", "fedora": "fc40"}[s.layout]
    specs: list[tuple[Spec, int]] = [(Spec("glibc", "2.34", f"100.{dist}"), BOOT_TIME - 86400),
                                      (Spec("systemd", "252", f"32.{dist}"), BOOT_TIME - 86400),
                                      (Spec("grub2-tools", "2.06", f"77.{dist}"), BOOT_TIME - 86400),
                                      (Spec("dracut", "057", f"53.{dist}"), BOOT_TIME - 86400)]
    for k in s.kernels:
        v, _ = rpm_version(k)
        r = f"{k.split('-')[1]}.{dist}"
        at = BOOT_TIME + 600 if k in s.after_boot else BOOT_TIME - 86400
        files = {f"/lib/modules/{k}/vmlinuz": (t / f"boot/vmlinuz-{k}").read_bytes(),
                 f"/lib/modules/{k}/symvers.gz": (t / f"boot/symvers-{k}.gz").read_bytes(),
                 f"/lib/modules/{k}/modules.builtin": (t / f"usr/lib/modules/{k}/modules.builtin").read_bytes()}
        # (no kernel-uname-r = K: rpmbuild refuses a version with two '-', as Debian's releases have)
        specs.append((Spec("kernel-core", v, r, provides=(f"kernel = {v}-{r}", "installonlypkg(kernel)"),
                           files=files), at))
        specs.append((Spec("kernel-modules", v, r, provides=("installonlypkg(kernel-module)",)), at))
        specs.append((Spec("kernel-devel", v, r, files={f"/usr/src/kernels/{k}": f"-> /usr/src/linux-headers-{k}"}), at))
    if s.dkms:
        specs.append((Spec("dkms", "3.0.10", f"8.{dist}", arch="noarch"), BOOT_TIME - 86400))
    if s.kmod_for:
        ko = t / f"usr/lib/modules/{s.kmod_for}/extra/kabidemo/kabidemo.ko"
        specs.append((Spec("kmod-kabidemo", "1.0", f"1.{dist}", provides=("kmod(kabidemo.ko) = 1.0",),
                           files={f"/lib/modules/{s.kmod_for}/extra/kabidemo/kabidemo.ko": ko.read_bytes()}),
                      BOOT_TIME - 86400))
    if s.akmod:
        srpm = (t / "usr/src/akmods/akdemo-kmod-2.0-1.fc40.src.rpm").read_bytes()
        specs.append((Spec("akmods", "0.5.8", "8.fc40", arch="noarch"), BOOT_TIME - 86400))
        specs.append((Spec("akmod-akdemo", "2.0", "1.fc40",
                           files={"/usr/src/akmods/akdemo-kmod-2.0-1.fc40.src.rpm": srpm}), BOOT_TIME - 86400))
        ko = t / f"usr/lib/modules/{new}/extra/akdemo/akdemo.ko"
        specs.append((Spec(f"kmod-akdemo-{new}", "2.0", "1.fc40",
                           files={f"/lib/modules/{new}/extra/akdemo/akdemo.ko": ko.read_bytes()}), BOOT_TIME - 86400))
    if s.versionlock:
        specs.append((Spec("python3-dnf-plugin-versionlock", "4.3.0", f"13.{dist}", arch="noarch"), BOOT_TIME - 86400))
        plugin = t / "usr/lib/python3.9/site-packages/dnf-plugins/versionlock.py"
        replace(plugin, "# the versionlock plugin's module (python3-dnf-plugin-versionlock)\n")
    (t / dbpath.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for when in sorted({at for _, at in specs}):
        install(t, *(rpmbuild(spec) for spec, at in specs if at == when), justdb=True, faketime=when)
        with open(b.log, "a") as log:
            log.write(f"rpm --justdb at {when}: {[spec.name for spec, at in specs if at == when]}\n")
    if s.layout == "fedora":
        src = t / "var/lib/rpm"     # rpmtools installs to /var/lib/rpm: the link lands it in sysimage
        assert src.is_symlink()
    if s.versionlock:
        versionlock(b, t, s.versionlock)
    if s.layout == "rhel8":
        bdb_from_sqlite(b, t)


def versionlock(b: Builder, t: Path, specs: list[str]) -> None:
    """`dnf versionlock add` on the tree (Debian's dnf, the real plugin), the list where RHEL's is."""
    replace(t / "etc/dnf/plugins/versionlock.conf", "[main]\nenabled = 1\nlocklist = /etc/dnf/plugins/versionlock.list\n")
    (t / "etc/dnf/plugins/versionlock.list").touch()
    home = b.out / "dnf-home"
    (home / "plugins").mkdir(parents=True, exist_ok=True)
    (home / ".rpmmacros").write_text("%_dbpath /var/lib/rpm\n")
    (home / "plugins/versionlock.conf").write_text(f"[main]\nenabled = 1\nlocklist = {t}/etc/dnf/plugins/versionlock.list\n")
    pluginpath, pythonpath = rpmtools.dnf_plugins()
    b.run(["dnf", "--installroot", t, "--config", t / "etc/dnf/dnf.conf", f"--setopt=reposdir={t}/etc/yum.repos.d",
           f"--setopt=pluginconfpath={home}/plugins", f"--setopt=pluginpath={pluginpath}",
           f"--setopt=cachedir={home}/cache", "--releasever=9", "versionlock", "add", *specs],
          env={**os.environ, "HOME": str(home), "PYTHONPATH": pythonpath})


def bdb_from_sqlite(b: Builder, t: Path) -> None:
    """RHEL 8's rpmdb: the same header blobs in a Berkeley DB hash Packages file (db_load)."""
    import sqlite3
    import struct
    db = t / "var/lib/rpm"
    con = sqlite3.connect(f"file:{db / 'rpmdb.sqlite'}?mode=ro", uri=True)
    rows = con.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
    con.close()
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "db_pagesize=4096", "HEADER=END",
             " " + struct.pack("<I", 0).hex(), " " + struct.pack("<I", max(h for h, _ in rows)).hex()]
    for hnum, blob in rows:
        lines += [" " + struct.pack("<I", hnum).hex(), " " + bytes(blob).hex()]
    dump = b.out / "rhel8-packages.dump"
    dump.write_text("\n".join(lines + ["DATA=END"]) + "\n")
    for f in os.listdir(db):
        (db / f).unlink()
    b.run(["db5.3_load", "-c", "db_lorder=1234", "-f", dump, db / "Packages"])


# ---------------------------------------------------------------------------------------------
# main


def ensure_rhelhost() -> Path:
    """Build (or reuse) the RHEL-layout trees; returns builds/KEY.  Needs root for a cold build."""
    from oracle.scenarios import ensure_realhost   # noqa: E402  (tests/ is on sys.path)
    realhost = ensure_realhost()
    env = dict(line.split("=", 1) for line in (realhost / "host.env").read_text().splitlines() if "=" in line)
    new, old = env["NEW_KERNEL"], env["OLD_KERNEL"]
    root = cache_root() / "rhelhost"
    key = build_key(realhost)
    out = root / "builds" / key
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "stamp").is_file() and (out / "stamp").read_text() == key:
            (out / "last-used").touch()
            return out
        if os.geteuid() != 0:
            raise RuntimeError("building the RHEL-layout trees needs root (chroot, unshare, mount)")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        b = Builder(out, out / "build.log")
        times = {}
        start = time.monotonic()
        try:
            work = work_tree(b, realhost, new, old)
            times["work tree + kbuild"] = round(time.monotonic() - start, 1)
            for s in scenarios(new, old):
                t0 = time.monotonic()
                scenario_tree(b, work, s, new, old)
                times[s.name] = round(time.monotonic() - t0, 1)
            for s in suse_scenarios(new, old, TWIN):
                t0 = time.monotonic()
                suse_tree(b, work, s)
                times[s.name] = round(time.monotonic() - t0, 1)
            shutil.rmtree(work)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(out / "work")
            raise
        times["total"] = round(time.monotonic() - start, 1)
        (out / "timings.json").write_text(json.dumps(times, indent=1) + "\n")
        (out / "host.json").write_text(json.dumps({"new": new, "old": old, "twin": TWIN,
                                                   "realhost": str(realhost)}) + "\n")
        (out / "stamp").write_text(key)
        (out / "last-used").touch()
        _collect_garbage(root, out)
        return out


def _collect_garbage(root: Path, keep: Path) -> None:
    builds = sorted((d for d in (root / "builds").iterdir() if d.is_dir()),
                    key=lambda d: (d / "last-used").stat().st_mtime if (d / "last-used").exists() else 0, reverse=True)
    for d in builds[KEEP_BUILDS:]:
        if d != keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    print(f"RHELHOST_DIR={ensure_rhelhost()}")
