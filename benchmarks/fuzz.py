#!/usr/bin/env python3
"""Fuzz every parser: nothing but the parser's own error type may come out, whatever the bytes.

    .venv/bin/python benchmarks/fuzz.py                         # every target, 60 s each
    .venv/bin/python benchmarks/fuzz.py --target modfile --seconds 600
    .venv/bin/python benchmarks/fuzz.py --engine hypothesis     # without atheris
    .venv/bin/python benchmarks/fuzz.py --target rpmdb --runs 20000   # a bounded number of inputs

Engines:

- **atheris** (coverage-guided libFuzzer for Python; ``.venv/bin/pip install atheris``, not a
  project dependency): each target runs in its own process, instrumented (the exporter and the
  library it parses with: asn1crypto), seeded with real artifacts (gcc-built
  signed modules compressed by the real tools, depmod's modules.dep.bin, EFI signature lists of
  real certificates, a Debian grub.cfg, dpkg status, cpio images).  A crash stops the target,
  keeps the input (``crash-*`` in the work dir) and makes the script exit 1.
- **hypothesis**: the property tests of tests/test_properties.py with PROPERTY_EXAMPLES raised
  and random (not derandomized) seeds, when atheris is not installed.

It prints, per target, how many inputs ran and whether any escaped as a foreign exception.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

TARGETS = ("modfile", "initramfs", "dkmsconf", "dpkg", "bootloader", "trust", "depmod", "makelog", "symvers",
           "rpmheader", "rpmdb", "pacman", "bls", "modsig", "zypplocks", "ndb", "vmlinux")


# ------------------------------------------------------------------------------------------------
# one input through one parser: returns normally, or raises the parser's own error (both fine)


def run_one(target: str, data: bytes) -> None:
    from exporter.collectors import bootloader
    from exporter.formats import bls, depmod, dkmsconf, dpkg, efi, errors, grub, makelog, symvers, x509
    from exporter.formats import module as modfile
    from exporter.formats.initramfs import InitramfsError
    from exporter.collectors.initramfs import list_image_file

    if target == "modfile":
        try:
            kind, body = modfile.decompress_module(data, 8 << 20)
            modfile.parse_module(body, compression=kind)
        except modfile.ModuleFileError:
            pass
    elif target == "initramfs":
        with tempfile.NamedTemporaryFile() as fh:
            fh.write(data)
            fh.flush()
            try:
                listing = list_image_file(Path(fh.name), max_uncompressed=64 << 20, max_entries=10_000)
                assert listing.entries <= 10_000 and listing.uncompressed_bytes <= 64 << 20
            except InitramfsError:
                pass
    elif target == "dkmsconf":
        try:
            conf = dkmsconf.parse_dkms_conf(data.decode("utf-8", "surrogateescape"), {"kernelver": "6.1.0-1-amd64"})
            conf.dest_module_names()
        except dkmsconf.DkmsConfError:
            pass
    elif target == "dpkg":
        try:
            dpkg.parse_status(data)
        except dpkg.DpkgStatusError:
            pass
        dpkg.parse_arch_file(data)
    elif target == "bootloader":
        cfg, _, env = data.partition(b"\0")
        bootloader.grub_next_boot(cfg.decode("utf-8", "surrogateescape"), grub.parse_grubenv(env))
        bls.parse_bls_entry(data)
    elif target == "trust":
        try:
            efi.key_list_from_entries("MokListRT", (), efi.parse_signature_lists(data))
        except errors.TrustDataError:
            pass
        try:
            x509.load_certificate(data)
        except errors.TrustDataError:
            pass
    elif target == "depmod":
        for parse in (depmod.parse_modules_dep_bin, depmod.parse_modules_dep):
            try:
                parse(data)
            except depmod.DepmodError:
                pass
    elif target == "makelog":
        assert len(makelog.classify_make_log(data).detail) <= 300
    elif target == "symvers":
        try:
            symvers.parse_module_symvers(data.decode("utf-8", "replace"))
        except symvers.SymversError:
            pass
    elif target in ("rpmheader", "rpmdb", "pacman", "bls", "modsig", "zypplocks", "ndb", "vmlinux"):
        _run_newer(target, data)
    else:
        raise ValueError(target)


@functools.lru_cache(maxsize=1)
def _signing_cert():
    from exporter.formats import x509
    return x509.load_certificate((REPO / "tests/data/keys/dkms-mok.der").read_bytes())


def _run_newer(target: str, data: bytes) -> None:
    """The parsers the RPM, Arch and kernel-exact work added (tests/test_properties_distro.py)."""
    import parser_contracts

    from exporter.formats import bls, modsig, pacman, rpmdb, rpmheader, x509
    from exporter.formats import module as modfile

    if target == "rpmheader":
        for parse in (rpmheader.parse_header, rpmheader.parse_package_header):
            try:
                parse(data).filenames()
                rpmdb.installed_package(1, data)
            except rpmheader.RpmHeaderError:
                pass
    elif target == "rpmdb":
        try:
            rows = list(rpmdb.bdb_packages(lambda off, n: data[off:off + n], len(data)))
            assert sum(len(b) for _, b in rows) <= len(data)
        except rpmdb.RpmdbError:
            pass
    elif target == "pacman":
        desc, _, conf = data.partition(b"\0")
        for parse in (pacman.parse_desc, pacman.parse_files):
            try:
                parse(desc)
            except pacman.PacmanDbError:
                pass
        files = {"/etc/pacman.conf": conf, "/etc/pacman.d/a.conf": desc}
        try:
            pacman.parse_pacman_conf("/etc/pacman.conf", files.get,
                                     lambda pat: sorted(p for p in files if __import__("fnmatch").fnmatch(p, pat)))
        except pacman.PacmanConfError:
            pass
    elif target == "bls":
        entry = bls.parse_bls_entry(data)
        bls.parse_loader_conf(data)
        ids = data.decode("utf-8", "replace").split("\n")[:8]
        for variant in ("current", "rhel8"):
            bls.blscfg_order([(i, entry) for i in ids], variant)
    elif target == "zypplocks":
        parser_contracts.zypp_locks(data)
    elif target == "ndb":
        parser_contracts.ndb_packages(data)
    elif target == "vmlinux":
        parser_contracts.kernel_image(data)
    elif target == "modsig":
        try:
            kind, body = modfile.decompress_module(data, 8 << 20)
            sig = modfile.parse_module(body, compression=kind).signature
        except modfile.ModuleFileError:
            return
        if sig is not None:
            cert = _signing_cert()
            assert isinstance(modsig.verify(sig, cert), modsig.SigCheck)


# ------------------------------------------------------------------------------------------------
# seeds: real artifacts


def write_seeds(target: str, corpus: Path) -> None:
    """A few valid inputs per target, made by the real tools (cached builds)."""
    corpus.mkdir(parents=True, exist_ok=True)
    seeds: list[bytes] = []
    if target == "modfile":
        from hostbuilder import module_elf
        seeds = [module_elf("acpi_call", "6.1.0-27-amd64", compression=c) for c in ("none", "zstd", "xz", "gzip")]
        seeds.append(module_elf("acpi_call", "6.1.0-27-amd64", key=None))
    elif target == "initramfs":
        from initramfs_build import Entry, compress, cpio_archive, tree_entries
        main = cpio_archive(tree_entries(2, 2))
        early = cpio_archive([Entry("kernel/x86/microcode/GenuineIntel.bin", b"u" * 64)], pad_to=4)
        seeds = [main, early + compress(main, "zstd"), compress(main, "gzip"), compress(main, "xz"),
                 compress(main, "lz4"), early + compress(main, "zstd") + compress(cpio_archive([Entry("o")]), "gzip")]
    elif target == "dkmsconf":
        seeds = [b'PACKAGE_NAME="acpi-call"\nPACKAGE_VERSION="1.2.2"\nBUILT_MODULE_NAME[0]="acpi_call"\n'
                 b'DEST_MODULE_LOCATION[0]="/updates"\nAUTOINSTALL="yes"\nMAKE[0]="make KVER=$kernelver"\n',
                 b'if [ -e "$kernel_source_dir/.config" ]; then\n  BUILD_EXCLUSIVE_KERNEL="^6"\nfi\n'
                 b"BUILT_MODULE_NAME=(a b)\nf() { x=1; }\n"]
    elif target == "dpkg":
        seeds = [Path("/var/lib/dpkg/status").read_bytes()[:200_000]]
    elif target == "bootloader":
        h = _grub_host()
        seeds = [h.path("boot/grub/grub.cfg").read_bytes() + b"\0" + h.path("boot/grub/grubenv").read_bytes(),
                 b"title Fedora\nversion 6.5.6-300.fc39.x86_64\nlinux /vmlinuz-6.5.6-300.fc39.x86_64\n"]
    elif target == "trust":
        from hostbuilder import KEYS, signature_lists
        ders = [(KEYS / f"{s}.der").read_bytes() for s in ("dkms-mok", "kernel-build")]
        seeds = [signature_lists(ders), ders[0], (KEYS / "dkms-mok.pem").read_bytes()]
    elif target == "depmod":
        seeds = list(_depmod_seed())
    elif target == "makelog":
        seeds = [b"DKMS make.log for nv-1.0 for kernel 6.1.0-1-amd64 (x86_64)\nnv.c:1:10: fatal error: "
                 b"linux/module.h: No such file or directory\nmake: *** [Makefile:2] Error 2\n"]
    elif target in ("rpmheader", "rpmdb", "pacman"):
        from test_properties_distro import _pacman_seeds, _rpm_seeds
        blobs, packages_file, package = _rpm_seeds()
        desc, files = _pacman_seeds()
        seeds = {"rpmheader": [*blobs, package], "rpmdb": [packages_file],
                 "pacman": [desc + b"\0[options]\nIgnorePkg = linux*\nInclude = /etc/pacman.d/*.conf\n", files]}[target]
    elif target == "bls":
        seeds = [b"title Fedora Linux (6.5.6-300.fc39.x86_64) 39\nversion 6.5.6-300.fc39.x86_64\n"
                 b"linux /vmlinuz-6.5.6-300.fc39.x86_64\ninitrd /initramfs-6.5.6-300.fc39.x86_64.img\noptions root=x\n",
                 b"default @saved\ntimeout 3\n#c\ndefault fedora-*.conf\n"]
    elif target in ("zypplocks", "ndb", "vmlinux"):
        from test_properties_distro import _ndb_seed, _vmlinuz_seeds, _zypp_seeds
        seeds = {"zypplocks": lambda: [t.encode() for t in _zypp_seeds()], "ndb": lambda: [_ndb_seed()],
                 "vmlinux": lambda: list(_vmlinuz_seeds())}[target]()
    elif target == "modsig":
        from hostbuilder import module_elf
        seeds = [module_elf("acpi_call", "6.1.0-27-amd64", compression=c) for c in ("none", "zstd")]
    elif target == "symvers":
        seeds = [b"0x0c3f5a6b\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n0x1\t_printk\tvmlinux\tEXPORT_SYMBOL_GPL\tNS\n"]
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(seed)


def _grub_host():
    from hostbuilder import Host
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-grub-"))
    h = Host(tmp / "h")
    for k in ("6.1.0-25-amd64", "6.1.0-27-amd64"):
        h.kernel(k, in_tree=[])
    h.grub(default="saved", saved_entry="gnulinux-advanced-x>gnulinux-6.1.0-25-amd64-advanced-x")
    return h


def _depmod_seed() -> tuple[bytes, bytes]:
    from hostbuilder import Host, module_elf
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-depmod-"))
    h = Host(tmp / "h")
    k = "6.1.0-27-amd64"
    h.kernel(k, in_tree=["e1000e", "ahci"])
    h.write(f"usr/lib/modules/{k}/updates/dkms/acpi_call.ko", module_elf("acpi_call", k))
    subprocess.run(["depmod", "-b", str(h.root), k], check=True, capture_output=True)
    base = h.path(f"usr/lib/modules/{k}")
    return (base / "modules.dep.bin").read_bytes(), (base / "modules.dep").read_bytes()


# ------------------------------------------------------------------------------------------------
# engines


def atheris_child(target: str, argv: list[str]) -> None:
    """Runs inside the per-target process: instrument, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["exporter", "asn1crypto"]):
        import exporter.collectors.bootloader, exporter.formats.depmod, exporter.formats.dkmsconf  # noqa: F401,E401
        import exporter.formats.dpkg, exporter.formats.initramfs, exporter.formats.makelog  # noqa: F401,E401
        import exporter.formats.module, exporter.formats.symvers, exporter.formats.efi  # noqa: F401,E401
        import exporter.formats.rpmheader, exporter.formats.rpmdb, exporter.formats.pacman  # noqa: F401,E401
        import exporter.formats.bls, exporter.formats.modsig, exporter.formats.x509  # noqa: F401,E401
        import exporter.formats.zypplocks, exporter.formats.ndb, exporter.formats.vmlinux  # noqa: F401,E401
    atheris.Setup([sys.argv[0], *argv], lambda data: run_one(target, data))
    atheris.Fuzz()


def run_atheris(target: str, seconds: int, work: Path, runs: int = 0) -> tuple[int, bool, str]:
    corpus = work / target / "corpus"
    write_seeds(target, corpus)
    argv = [f"-max_total_time={seconds}", *([f"-runs={runs}"] if runs else []), "-rss_limit_mb=1024", "-timeout=20", "-max_len=65536",
            f"-artifact_prefix={work / target}/", str(corpus)]
    proc = subprocess.run([sys.executable, __file__, "--child", target, "--", *argv], capture_output=True, text=True,
                          cwd=REPO)
    out = proc.stdout + proc.stderr
    runs = re.findall(r"Done (\d+) runs", out) or re.findall(r"#(\d+)\s", out)
    crashed = proc.returncode != 0
    tail = "\n".join(l for l in out.splitlines()
                     if any(w in l for w in ("Uncaught", "Error", "ERROR", "crash-", "oom-", "timeout-")))[-3000:]
    return int(runs[-1]) if runs else 0, crashed, tail


def run_hypothesis(target: str, seconds: int) -> tuple[int, bool, str]:
    """The target's property tests, with as many examples as fit in ``seconds`` (estimated)."""
    keyword = {"modfile": "module or decompression", "initramfs": "initramfs", "dkmsconf": "dkms_conf",
               "dpkg": "dpkg", "bootloader": "grub", "trust": "signature_lists or certificates or efivar",
               "depmod": "modules_dep", "makelog": "make_log", "symvers": "symvers", "rpmheader": "rpm_header",
               "rpmdb": "berkeley_db", "pacman": "pacman", "bls": "bls", "modsig": "signed_modules",
               "zypplocks": "zypp", "ndb": "ndb", "vmlinux": "kernel_images"}[target]
    examples = max(100, seconds * 40)
    env = dict(os.environ, PROPERTY_EXAMPLES=str(examples), PROPERTY_RANDOM="1")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_properties.py",
                           "tests/test_properties_distro.py", "-k", keyword], capture_output=True, text=True, env=env, cwd=REPO)
    passed = re.search(r"(\d+) passed", proc.stdout)
    n_props = int(passed.group(1)) if passed else 0
    del start
    return examples * n_props, proc.returncode != 0, proc.stdout[-3000:] if proc.returncode else ""


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        atheris_child(sys.argv[2], sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=TARGETS + ("all",), default="all")
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--runs", type=int, default=0, help="atheris: stop a target after this many inputs")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (corpus, crash inputs)")
    args = parser.parse_args()
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    work = Path(tempfile.mkdtemp(prefix="dkms-exporter-fuzz-"))
    targets = TARGETS if args.target == "all" else (args.target,)
    print(f"engine {engine}, {args.seconds} s per target, work dir {work}", flush=True)
    failed = False
    total = 0
    for target in targets:
        start = time.monotonic()
        runs, crashed, detail = (run_atheris(target, args.seconds, work, args.runs) if engine == "atheris"
                                 else run_hypothesis(target, args.seconds))
        total += runs
        failed |= crashed
        print(f"  {target:<11} {runs:>10,} inputs  {time.monotonic() - start:6.0f} s  "
              f"{'FOREIGN EXCEPTION' if crashed else 'ok'}", flush=True)
        if crashed:
            print("    " + detail.replace("\n", "\n    "))
    print(f"total {total:,} inputs; {'failures above' if failed else 'no parser raised a foreign exception'}")
    if not args.keep and not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
