"""Test helper: make real kernel-module files and fetch a real Debian kernel's files.

- ``build_module`` compiles a relocatable ELF object that looks like a kernel module to the
  kernel's loader and to kmod: a ``.modinfo`` section of NUL-terminated key=value strings, a
  ``__versions`` array of 64-byte ``struct modversion_info``, a ``.gnu.linkonce.this_module``
  section with ``struct module``'s name at its real offset, and undefined symbols.  x86_64 and
  i386 are compiled from C with gcc; big-endian ppc64/ppc32 are assembled with GNU as for
  powerpc (binutils-powerpc64-linux-gnu), since Debian has no big-endian gcc by default.
- ``sign_module`` appends a signature the way the kernel's scripts/sign-file does: CMS/PKCS#7
  SignedData, detached, no certificates, no signed attributes, binary, signer identified by
  issuerAndSerialNumber, then ``struct module_signature`` (id_type 2, sig_len big-endian) and
  the magic.  ``sign_file_binary`` fetches the real sign-file to prove the two agree.
- ``compress`` runs the real zstd / xz (``--check=crc32`` as kbuild does) / gzip tools.
- ``debian_kernel`` downloads (``apt-get download``, cached in the shared ``debs/`` dir) the
  newest Debian 6.1 kernel image + headers and extracts only the files the tests need.

Slow artifacts live under ``${DKMS_EXPORTER_TEST_CACHE:-~/.cache/dkms-exporter-tests}``.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

SIG_MAGIC = b"~Module signature appended~\n"
DEBIAN_VERMAGIC = "6.1.0-56-amd64 SMP preempt mod_unload modversions "
ARCHES = ("x86_64", "i386", "ppc64", "ppc32")


def cache_dir() -> Path:
    """The shared slow-artifact cache (created on demand)."""
    base = os.environ.get("DKMS_EXPORTER_TEST_CACHE") or str(
        Path.home() / ".cache" / "dkms-exporter-tests"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def need_tool(name: str) -> str:
    """Path of a command the tests run; fail loudly (never skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (see .ci/apt-packages); the test needs it")
    return path


# ---------------------------------------------------------------------------------------------
# Building module objects


@dataclass(frozen=True)
class ModSpec:
    """What goes into a test module.  ``versions=None`` means no __versions section at all."""

    name: str = "dkmstest"
    vermagic: str | None = DEBIAN_VERMAGIC
    license: str | None = "GPL"
    version: str | None = "1.0"
    srcversion: str | None = None
    depends: str | None = ""
    intree: bool = False
    retpoline: bool = True
    extra_modinfo: tuple[tuple[str, str], ...] = ()
    versions: tuple[tuple[str, int], ...] | None = (
        ("module_layout", 0x7A2E0D5B),
        ("_printk", 0x92997ED8),
    )
    undefined: tuple[str, ...] = ("_printk",)
    weak: tuple[str, ...] = ()
    arch: str = "x86_64"
    extra_c: str = ""
    this_module: bool = True

    def modinfo_pairs(self) -> list[tuple[str, str]]:
        """.modinfo strings in the order modpost writes them (source keys first)."""
        pairs: list[tuple[str, str]] = []
        if self.version is not None:
            pairs.append(("version", self.version))
        if self.license is not None:
            pairs.append(("license", self.license))
        pairs.extend(self.extra_modinfo)
        if self.srcversion is not None:
            pairs.append(("srcversion", self.srcversion))
        if self.depends is not None:
            pairs.append(("depends", self.depends))
        if self.retpoline:
            pairs.append(("retpoline", "Y"))
        if self.intree:
            pairs.append(("intree", "Y"))
        pairs.append(("name", self.name))
        if self.vermagic is not None:
            pairs.append(("vermagic", self.vermagic))
        return pairs


def _c_string(value: str) -> str:
    return '"' + "".join(c if c.isalnum() or c in " .,_-=:/+()" else f"\\{ord(c):03o}" for c in value) + '"'


def module_c_source(spec: ModSpec) -> str:
    """C source of a module object, modelled on what modpost writes into <mod>.mod.c."""
    lines = [
        "#define __used __attribute__((__used__))",
        "struct modversion_info { unsigned long crc; char name[64 - sizeof(unsigned long)]; };",
        "struct module { int state; void *list[2]; char name[64 - sizeof(unsigned long)];"
        " int (*init)(void); };",
    ]
    for i, (key, value) in enumerate(spec.modinfo_pairs()):
        lines.append(
            f"static const char __modinfo_{i}[] __used "
            f'__attribute__((section(".modinfo"), aligned(1))) = {_c_string(f"{key}={value}")};'
        )
    if spec.versions is not None:
        lines.append(
            "static const struct modversion_info ____versions[] __used "
            '__attribute__((section("__versions"))) = {'
        )
        lines += [f"  {{ {crc:#x}UL, {_c_string(sym)} }}," for sym, crc in spec.versions]
        lines.append("};")
    for sym in spec.undefined:
        lines.append(f"extern char {sym}[];")
    for sym in spec.weak:
        lines.append(f"extern char {sym}[] __attribute__((weak));")
    refs = ", ".join([*spec.undefined, *spec.weak]) or "0"
    lines += [f"void *const __refs[] __used = {{ {refs} }};", "int init_module(void) { return 0; }"]
    if spec.this_module:
        lines.append(
            "struct module __this_module __used "
            '__attribute__((section(".gnu.linkonce.this_module"))) = '
            f"{{ .name = {_c_string(spec.name)}, .init = init_module }};"
        )
    return "\n".join(lines) + "\n" + spec.extra_c


def module_asm_source(spec: ModSpec, word: int) -> str:
    """GNU as source of the same object for targets without a gcc here (big-endian powerpc)."""
    data = ".8byte" if word == 8 else ".4byte"
    out = ['.section .modinfo,"a"']
    out += [f".asciz {_asm_string(f'{k}={v}')}" for k, v in spec.modinfo_pairs()]
    if spec.versions is not None:
        out += ['.section __versions,"a"', f".balign {word}"]
        for sym, crc in spec.versions:
            raw = sym.encode()
            out += [f"{data} {crc:#x}", f".ascii {_asm_string(sym)}", f".zero {64 - word - len(raw)}"]
    out += ['.section .gnu.linkonce.this_module,"aw"', f".balign {word}", ".4byte 0"]
    if word == 8:
        out.append(".4byte 0")
    out += [f"{data} 0", f"{data} 0", f".ascii {_asm_string(spec.name)}"]
    out += [f".zero {64 - word - len(spec.name.encode())}", f"{data} 0"]
    out += [".data", f".balign {word}"]
    out += [f".weak {sym}" for sym in spec.weak]
    out += [f"{data} {sym}" for sym in (*spec.undefined, *spec.weak)]
    return "\n".join(out) + "\n"


def _asm_string(value: str) -> str:
    return '"' + "".join(c if c.isalnum() or c in " .,_-=:/+()" else f"\\{ord(c):03o}" for c in value) + '"'


def build_module(spec: ModSpec, out: Path) -> Path:
    """Compile ``spec`` into the relocatable object ``out`` (a .ko)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if spec.arch in ("x86_64", "i386"):
            src = Path(tmp) / "mod.c"
            src.write_text(module_c_source(spec))
            cmd = [need_tool("gcc"), "-c", "-O2", "-ffreestanding", "-fno-pic", "-fno-common",
                   "-fno-toplevel-reorder"]
            cmd += ["-m64"] if spec.arch == "x86_64" else ["-m32"]
        elif spec.arch in ("ppc64", "ppc32"):
            src = Path(tmp) / "mod.s"
            src.write_text(module_asm_source(spec, 8 if spec.arch == "ppc64" else 4))
            cmd = [need_tool("powerpc64-linux-gnu-as"), "-mbig"]
            cmd += ["-a64"] if spec.arch == "ppc64" else ["-a32"]
        else:
            raise ValueError(f"unknown arch {spec.arch}")
        subprocess.run([*cmd, "-o", str(out), str(src)], check=True, capture_output=True)
    return out


# ---------------------------------------------------------------------------------------------
# Keys, certificates and signing


@dataclass(frozen=True)
class SigningKey:
    """A private key with its self-signed X.509 certificate, also written to files."""

    key: object
    cert: x509.Certificate
    key_pem: Path
    cert_pem: Path
    cert_der: Path

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def make_signing_key(
    directory: Path,
    *,
    cn: str | None = "DKMS module signing key",
    serial: int | None = None,
    key_type: str = "rsa",
    extra_name: tuple[tuple[object, str], ...] = (),
    stem: str = "mok",
) -> SigningKey:
    """A key + self-signed certificate as DKMS's `mok.key`/`mok.pub` (issuer == subject)."""
    directory.mkdir(parents=True, exist_ok=True)
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(key_type)
    attrs = [x509.NameAttribute(oid, value) for oid, value in extra_name]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = directory / f"{stem}.key"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_pem = directory / f"{stem}.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_der = directory / f"{stem}.der"
    cert_der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return SigningKey(key, cert, key_pem, cert_pem, cert_der)


_HASHES = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def module_signature_trailer(sig_len: int, id_type: int = 2) -> bytes:
    """struct module_signature (12 bytes, sig_len big-endian) followed by the magic."""
    return struct.pack(">BBBBB3sI", 0, 0, id_type, 0, 0, b"\0\0\0", sig_len) + SIG_MAGIC


def pkcs7_detached(data: bytes, key: SigningKey, hash_name: str = "sha256") -> bytes:
    """The DER SignedData sign-file makes: detached, no certs, no attributes, binary."""
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(key.cert, key.key, _HASHES[hash_name]())
        .sign(
            serialization.Encoding.DER,
            [
                pkcs7.PKCS7Options.DetachedSignature,
                pkcs7.PKCS7Options.NoCerts,
                pkcs7.PKCS7Options.NoAttributes,
                pkcs7.PKCS7Options.Binary,
            ],
        )
    )


def sign_module_cryptography(data: bytes, key: SigningKey, hash_name: str = "sha256") -> bytes:
    """``data`` signed through cryptography's PKCS#7 builder.

    Same SignerInfo as sign-file, but it writes NULL digest-algorithm parameters where OpenSSL's
    CMS code omits them, so the bytes differ from sign-file's (the signature value does not).
    """
    sig = pkcs7_detached(data, key, hash_name)
    return data + sig + module_signature_trailer(len(sig))


def sign_module(data: bytes, key: SigningKey, hash_name: str = "sha256") -> bytes:
    """``data`` signed through `openssl cms`: byte-identical to the kernel's sign-file output."""
    with tempfile.TemporaryDirectory() as tmp:
        src, sig = Path(tmp) / "unsigned.ko", Path(tmp) / "sig.der"
        src.write_bytes(data)
        subprocess.run(
            [need_tool("openssl"), "cms", "-sign", "-binary", "-noattr", "-nocerts",
             "-nosmimecap", "-md", hash_name, "-signer", str(key.cert_pem),
             "-inkey", str(key.key_pem), "-in", str(src), "-outform", "DER", "-out", str(sig)],
            check=True, capture_output=True,
        )
        blob = sig.read_bytes()
    return data + blob + module_signature_trailer(len(blob))


def compress(data: bytes, fmt: str) -> bytes:
    """Compress with the real tool, flags as kbuild's Makefile.modinst uses them."""
    cmd = {
        "zstd": [need_tool("zstd"), "-q", "-c", "-19"],
        "xz": [need_tool("xz"), "--check=crc32", "--lzma2=dict=1MiB", "-c"],
        "gzip": [need_tool("gzip"), "-n", "-9", "-c"],
    }[fmt]
    return subprocess.run(cmd, input=data, check=True, capture_output=True).stdout


SUFFIX = {"none": ".ko", "zstd": ".ko.zst", "xz": ".ko.xz", "gzip": ".ko.gz"}


def modinfo_field(path: Path, field_name: str) -> str:
    """What Debian's real `modinfo -F field` prints (trailing newline removed; "" when absent)."""
    res = subprocess.run(
        [need_tool("modinfo"), "-F", field_name, str(path)], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"modinfo -F {field_name} {path} failed: {res.stderr.strip()}")
    return res.stdout[:-1] if res.stdout.endswith("\n") else res.stdout


def dump_modversions(path: Path) -> list[tuple[str, int]]:
    """`modprobe --dump-modversions` (kmod's own __versions reader)."""
    res = subprocess.run(
        [need_tool("modprobe"), "--dump-modversions", str(path)],
        capture_output=True, text=True, check=True,
    )
    out = []
    for line in res.stdout.splitlines():
        crc, sym = line.split("\t", 1)
        out.append((sym, int(crc, 16)))
    return out


# ---------------------------------------------------------------------------------------------
# Real Debian packages (cached)


@dataclass
class DebianKernel:
    """Files of one real Debian kernel ABI, extracted from its .debs."""

    release: str
    root: Path
    files: dict[str, Path] = field(default_factory=dict)

    def module(self, relpath: str) -> Path:
        return self.root / "lib/modules" / self.release / "kernel" / relpath

    @property
    def symvers(self) -> Path:
        return self.root / "usr/src" / f"linux-headers-{self.release}" / "Module.symvers"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"


def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def apt_download(package: str) -> Path:
    """``apt-get download`` into the shared ``debs/`` cache once (atomic, locked).  The quick
    tier never downloads, cached or not: a test that gets here must be marked slow."""
    from testkit import slow_artifact   # here, not at the top: benchmarks import this module too

    slow_artifact(f"a Debian package from the network ({package})")
    debs = cache_dir() / "debs"
    debs.mkdir(exist_ok=True)
    name = package.split("=")[0]
    with _locked(debs / f".{name}.lock"):
        wanted = _candidate_deb(package)
        if wanted is not None and (debs / wanted).is_file():
            return debs / wanted
        found = sorted(debs.glob(f"{name}_*.deb"))
        if wanted is None and found:      # apt cannot say (no package lists): the newest cached copy
            return found[-1]
        with tempfile.TemporaryDirectory(dir=debs) as tmp:
            res = subprocess.run(
                [need_tool("apt-get"), "download", package], cwd=tmp, capture_output=True, text=True
            )
            if res.returncode != 0:
                raise RuntimeError(f"apt-get download {package} failed: {res.stderr.strip()}")
            (deb,) = Path(tmp).glob("*.deb")
            os.replace(deb, debs / deb.name)
            return debs / deb.name


def _candidate_deb(package: str) -> str | None:
    """The file `apt-get download PACKAGE` would write: apt's candidate, not whatever version is
    cached (debs/ is shared with the real-host builds, whose debootstrap caches other suites'
    packages there).  None when apt cannot say (no package lists yet)."""
    res = subprocess.run([need_tool("apt-get"), "download", "--print-uris", package],
                         capture_output=True, text=True, check=False)
    for line in res.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].endswith(".deb"):
            return fields[1]
    return None


def newest_kernel_abi(offset: int = 0) -> str:
    """The newest (or ``offset``-th older) 6.1 ABI number apt offers linux-headers for."""
    def query() -> list[int]:
        out = subprocess.run(
            [need_tool("apt-cache"), "search", "--names-only", r"^linux-headers-6\.1\.0-[0-9]+-amd64$"],
            capture_output=True, text=True,
        ).stdout
        return sorted({int(n) for n in re.findall(r"linux-headers-6\.1\.0-(\d+)-amd64", out)})

    abis = query()
    if not abis:
        subprocess.run([need_tool("apt-get"), "update", "-qq"], capture_output=True)
        abis = query()
    if len(abis) <= offset:
        raise RuntimeError("apt offers no Debian 6.1 kernel headers (apt-get update failed?)")
    return str(abis[-1 - offset])


def _cached_abi(pattern: str) -> list[int]:
    debs = cache_dir() / "debs"
    return sorted(int(m.group(1)) for p in debs.glob("*.deb") if (m := re.match(pattern, p.name)))


def _extract(deb: Path, dest: Path, members: list[str]) -> None:
    """Extract only ``members`` (exact paths) from a .deb's data tarball."""
    proc = subprocess.Popen([need_tool("dpkg-deb"), "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    wanted = {m.lstrip("./") for m in members}
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if name in wanted and member.isfile():
                    target = dest / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                    target.chmod(member.mode & 0o755)
                    wanted.discard(name)
    finally:
        proc.stdout.close()
        proc.wait()
    if wanted:
        raise RuntimeError(f"{deb.name} lacks {sorted(wanted)}")


def debian_kernel(abi: str, module_relpaths: tuple[str, ...] = (), *, image: bool = True) -> DebianKernel:
    """Real files of Debian kernel 6.1.0-<abi>-amd64: modules + config (image) and Module.symvers.

    Extracted once per (deb file, member list) under <cache>/debian-kernels/<release>/.
    """
    release = f"6.1.0-{abi}-amd64"
    members = [f"usr/src/linux-headers-{release}/Module.symvers"]
    debs = [apt_download(f"linux-headers-{release}")]
    if image:
        members += [f"boot/config-{release}"]
        members += [f"lib/modules/{release}/kernel/{rel}" for rel in module_relpaths]
        debs.append(apt_download(f"linux-image-{release}"))
    key = "-".join(sorted(d.name for d in debs)) + "|" + "|".join(sorted(members))
    root = cache_dir() / "debian-kernels" / release
    stamp = root / ".extracted"
    with _locked(cache_dir() / "debian-kernels" / f".{release}.lock"):
        if not (stamp.exists() and stamp.read_text() == key):
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            for deb in debs:
                _extract(deb, root, [m for m in members if _in_deb(deb, m)])
            stamp.write_text(key)
    return DebianKernel(release, root)


def _in_deb(deb: Path, member: str) -> bool:
    return ("linux-headers" in deb.name) == member.startswith("usr/src/")


def pick_kernel_abis() -> tuple[str, str]:
    """(newest ABI, an older ABI) — the cached ones when present, else what apt offers."""
    images = _cached_abi(r"linux-image-6\.1\.0-(\d+)-amd64_")
    newest = str(images[-1]) if images else newest_kernel_abi()
    headers = [n for n in _cached_abi(r"linux-headers-6\.1\.0-(\d+)-amd64_") if str(n) != newest]
    older = [n for n in headers if n < int(newest) - 3]
    return newest, str(older[-1]) if older else newest_kernel_abi(offset=4)


def sign_file_binary() -> Path:
    """The kernel's real scripts/sign-file, from Debian's linux-kbuild-6.1 package (cached)."""
    deb = apt_download("linux-kbuild-6.1")
    dest = cache_dir() / "linux-kbuild" / deb.stem
    tool = dest / "usr/lib/linux-kbuild-6.1/scripts/sign-file"
    with _locked(cache_dir() / "linux-kbuild" / ".lock"):
        if not tool.exists():
            _extract(deb, dest, ["usr/lib/linux-kbuild-6.1/scripts/sign-file"])
    return tool


REAL_MODULES = (
    "fs/ceph/ceph.ko",  # ~1.1 MB, depends on libceph, fscache, netfs
    "net/ceph/libceph.ko",
    "fs/fscache/fscache.ko",
    "fs/netfs/netfs.ko",
    "drivers/media/mc/mc.ko",
    "drivers/media/v4l2-core/videodev.ko",
)


def real_kernels() -> tuple[DebianKernel, DebianKernel]:
    """(newest Debian kernel: image modules + config + Module.symvers, an older ABI: headers only).

    One member list for every caller, so the extraction cache is shared and never flip-flops.
    """
    newest, older = pick_kernel_abis()
    return debian_kernel(newest, REAL_MODULES), debian_kernel(older, image=False)
