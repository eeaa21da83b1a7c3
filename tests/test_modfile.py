"""exporter.modfile against real module files and Debian's real tools (modinfo, modprobe, nm)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modbuild as mb
from exporter.collectors.module import read_module
from exporter.formats.module import (
    DEFAULT_MAX,
    ModuleFileError,
    decompress_module,
    parse_module,
    parse_pkcs7_signature,
)

COMPRESSIONS = ("none", "zstd", "xz", "gzip")
MODINFO_FIELDS = ("name", "vermagic", "signer", "sig_key", "sig_hashalgo")


# ---------------------------------------------------------------------------------------------
# Fixtures: keys and a matrix of signed/compressed modules


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("modfile")


@pytest.fixture(scope="session")
def keys(workdir) -> dict[str, mb.SigningKey]:
    d = workdir / "keys"
    return {
        "dkms": mb.make_signing_key(d, stem="dkms"),  # random 20-byte serial
        "serial-high-bit": mb.make_signing_key(d, serial=0x80ABCDEF0011, stem="hb"),
        "serial-small": mb.make_signing_key(d, serial=0x0102, stem="small"),
        "serial-00ff": mb.make_signing_key(d, serial=0xFF, stem="00ff"),
        "ec": mb.make_signing_key(d, key_type="ec", cn="EC module key", stem="ec"),
        "o-then-cn": mb.make_signing_key(
            d, cn="Vendor key", extra_name=((NameOID.ORGANIZATION_NAME, "Vendor Ltd"),), stem="ocn"
        ),
        "no-cn": mb.make_signing_key(
            d, cn=None, extra_name=((NameOID.COUNTRY_NAME, "DE"), (NameOID.ORGANIZATION_NAME, "No CN Org")),
            stem="nocn",
        ),
    }


# (label, key name or None, hash, signer) -- the variants every compression is applied to
SIGNINGS = [
    ("unsigned", None, None, None),
    ("rsa-sha256", "dkms", "sha256", "openssl"),
    ("rsa-sha512", "dkms", "sha512", "openssl"),
    ("rsa-sha384", "dkms", "sha384", "openssl"),
    ("rsa-sha224", "dkms", "sha224", "openssl"),
    ("rsa-sha1", "dkms", "sha1", "openssl"),
    ("rsa-md5", "dkms", "md5", "openssl"),
    ("rsa-ripemd160", "dkms", "ripemd160", "openssl"),
    ("rsa-sha256-cryptography", "dkms", "sha256", "cryptography"),
    ("serial-high-bit", "serial-high-bit", "sha256", "openssl"),
    ("serial-small", "serial-small", "sha256", "openssl"),
    ("serial-00ff", "serial-00ff", "sha256", "openssl"),
    ("ec-sha256", "ec", "sha256", "openssl"),
    ("o-then-cn", "o-then-cn", "sha256", "openssl"),
    ("no-cn", "no-cn", "sha256", "openssl"),
]


@pytest.fixture(scope="session")
def base_module(workdir) -> bytes:
    return mb.build_module(mb.ModSpec(), workdir / "base.ko").read_bytes()


@pytest.fixture(scope="session")
def module_matrix(workdir, keys, base_module) -> dict[tuple[str, str], Path]:
    """Every signing variant x every compression, written as real files."""
    out = {}
    for label, key, hash_name, how in SIGNINGS:
        if key is None:
            data = base_module
        elif how == "cryptography":
            data = mb.sign_module_cryptography(base_module, keys[key], hash_name)
        else:
            data = mb.sign_module(base_module, keys[key], hash_name)
        for comp in COMPRESSIONS:
            path = workdir / "matrix" / f"{label}{mb.SUFFIX[comp]}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data if comp == "none" else mb.compress(data, comp))
            out[label, comp] = path
    return out


def exporter_fields(path: Path) -> dict[str, str]:
    """The exporter's answer in modinfo -F terms ("" where modinfo prints nothing)."""
    mod = read_module(path)
    sig = mod.signature
    return {
        "name": mod.name or "",
        "vermagic": mod.vermagic or "",
        "signer": sig.signer if sig else "",
        "sig_key": sig.key_id if sig else "",
        "sig_hashalgo": sig.hash_algo if sig else "",
    }


# ---------------------------------------------------------------------------------------------
# Agreement with Debian's modinfo


@pytest.mark.parametrize("comp", ["none", "zstd", "xz"])
@pytest.mark.parametrize("label", [s[0] for s in SIGNINGS])
def test_fields_equal_modinfo(module_matrix, label, comp):
    path = module_matrix[label, comp]
    expected = {f: mb.modinfo_field(path, f) for f in MODINFO_FIELDS}
    assert exporter_fields(path) == expected
    assert read_module(path).compression == comp


@pytest.mark.parametrize("comp", ["zstd", "xz", "gzip"])
def test_kept_whole_and_streamed_parse_the_same(module_matrix, comp, monkeypatch):
    """A compressed module within modview.WHOLE_MAX is decompressed once and parsed from memory;
    a bigger one (nvidia.ko) is streamed, in two passes when signed (the digest's algorithm is in
    the trailer at the end).  Both give the same facts, signed content
    digest included, for every signing variant; and the kept-whole path is the one taken."""
    import exporter.formats.modview as modview

    passes = []
    real_pass = modview.stream_pass

    def counting(*args, **kw):
        passes.append(kw.get("whole_max", 0))
        return real_pass(*args, **kw)

    monkeypatch.setattr("exporter.formats.module.stream_pass", counting)
    streamed_passes = {}
    for label, *_ in SIGNINGS:
        path = module_matrix[label, comp]
        passes.clear()
        whole = read_module(path)
        assert passes == [modview.WHOLE_MAX], (label, passes)
        monkeypatch.setattr("exporter.formats.module.WHOLE_MAX", 0)
        passes.clear()
        streamed = read_module(path)
        monkeypatch.undo()
        monkeypatch.setattr("exporter.formats.module.stream_pass", counting)
        assert passes[0] == 0 and len(passes) in (1, 2), (label, passes)
        streamed_passes[label] = len(passes)
        assert whole == streamed, label
        if whole.signature is not None:   # not part of equality (compare=False): checked by itself
            assert whole.signature.content_digest == streamed.signature.content_digest, label
            assert whole.signature.content_digest is not None or label in ("rsa-md5", "rsa-ripemd160"), label
        assert whole == replace(read_module(module_matrix[label, "none"]), compression=comp,
                                xz_check=whole.xz_check), label
    assert streamed_passes["rsa-sha256"] == 2, streamed_passes   # the digest pass was exercised


@pytest.mark.parametrize("label", [s[0] for s in SIGNINGS])
def test_gzip_read_although_debian_modinfo_cannot(module_matrix, label):
    """Debian 12's kmod is built -ZLIB: modinfo cannot open .ko.gz at all.  The exporter can, and
    must give what modinfo gives for the same module uncompressed."""
    gz = module_matrix[label, "gzip"]
    res = subprocess.run([mb.need_tool("modinfo"), "-F", "name", str(gz)], capture_output=True, text=True)
    assert res.returncode != 0 and "not found" in res.stderr
    plain = module_matrix[label, "none"]
    assert exporter_fields(gz) == {f: mb.modinfo_field(plain, f) for f in MODINFO_FIELDS}
    assert read_module(gz).compression == "gzip"


def test_digest_debian_modinfo_cannot_name(workdir, keys, base_module):
    """kmod 30 shows no signature at all for digests it has no name for (sha3-*); the module is
    still signed, and the exporter names the digest the way kmod >= 32 does."""
    path = workdir / "sha3.ko"
    path.write_bytes(mb.sign_module(base_module, keys["dkms"], "sha3-256"))
    assert mb.modinfo_field(path, "sig_hashalgo") == "" and mb.modinfo_field(path, "signer") == ""
    sig = read_module(path).signature
    assert (sig.signer, sig.hash_algo) == ("DKMS module signing key", "sha3-256")


def test_signature_values_are_what_the_certificates_say(module_matrix, keys):
    """Independent of modinfo: signer is the issuer CN, key id the serial, in kmod's format."""
    sig = read_module(module_matrix["serial-high-bit", "none"]).signature
    assert (sig.signer, sig.key_id, sig.hash_algo) == ("DKMS module signing key", "80:AB:CD:EF:00:11", "sha256")
    assert read_module(module_matrix["serial-small", "none"]).signature.key_id == "01:02"
    assert read_module(module_matrix["serial-00ff", "none"]).signature.key_id == "FF"
    assert read_module(module_matrix["no-cn", "none"]).signature.signer == "No CN Org"  # kmod: last attribute
    serial = keys["dkms"].cert.serial_number
    want = ":".join(f"{b:02X}" for b in serial.to_bytes((serial.bit_length() + 7) // 8, "big"))
    assert read_module(module_matrix["rsa-sha512", "xz"]).signature.key_id == want
    assert read_module(module_matrix["unsigned", "zstd"]).signature is None


@pytest.mark.slow
def test_openssl_cms_signature_is_byte_identical_to_kernel_sign_file(workdir, keys, base_module):
    """The test signer is the real thing: the kernel's scripts/sign-file (Debian linux-kbuild)
    appends exactly the bytes modbuild.sign_module appends."""
    target = workdir / "sign-file.ko"
    target.write_bytes(base_module)
    key = keys["serial-high-bit"]
    subprocess.run(
        [str(mb.sign_file_binary()), "sha512", str(key.key_pem), str(key.cert_der), str(target)],
        check=True, capture_output=True,
    )
    signed = target.read_bytes()
    assert signed == mb.sign_module(base_module, key, "sha512")
    trailer = signed[-40:]
    assert trailer[-28:] == b"~Module signature appended~\n"
    assert trailer[:8] == bytes([0, 0, 2, 0, 0, 0, 0, 0])
    assert struct.unpack(">I", trailer[8:12])[0] == len(signed) - len(base_module) - 40


# ---------------------------------------------------------------------------------------------
# ELF contents: modinfo keys, __versions, undefined symbols, every ELF class/byte order


ARCH_SPEC = dict(
    name="wide_mod",
    version="2.4.1-rc1",
    srcversion="0123456789ABCDEF01234567",
    depends="videodev,mc",
    intree=True,
    extra_modinfo=(
        ("alias", "pci:v00008086d*sv*sd*bc*sc*i*"),
        ("description", "a test module, with = signs"),
        ("alias", "platform:wide"),
        ("import_ns", "CXL"),
    ),
    versions=(
        ("module_layout", 0x7A2E0D5B),
        ("_printk", 0x92997ED8),
        ("kfree", 0x037A0CBA),
        ("a_symbol_name_that_is_exactly_fifty_five_characters_lon", 0xFFFFFFFF),
    ),
    undefined=("_printk", "kfree", "video_register_device"),
    weak=("maybe_present",),
)


@pytest.fixture(scope="session")
def arch_modules(workdir, keys) -> dict[str, Path]:
    out = {}
    for arch in mb.ARCHES:
        path = mb.build_module(mb.ModSpec(arch=arch, **ARCH_SPEC), workdir / "arch" / f"{arch}.ko")
        path.write_bytes(mb.sign_module(path.read_bytes(), keys["dkms"], "sha256"))
        out[arch] = path
    return out


def nm_undefined(path: Path, arch: str) -> tuple[set[str], set[str]]:
    nm = mb.need_tool("powerpc64-linux-gnu-nm" if arch.startswith("ppc") else "nm")
    out = subprocess.run([nm, "--undefined-only", str(path)], capture_output=True, text=True, check=True)
    strong, weak = set(), set()
    for line in out.stdout.splitlines():
        kind, name = line.split()[-2:]
        (weak if kind in ("w", "v") else strong).add(name)
    return strong, weak


@pytest.mark.parametrize("arch", mb.ARCHES)
def test_every_elf_class_and_byte_order(arch_modules, arch):
    path = arch_modules[arch]
    mod = read_module(path)
    assert (mod.elf_class, mod.byte_order) == {
        "x86_64": (64, "little"), "i386": (32, "little"), "ppc64": (64, "big"), "ppc32": (32, "big"),
    }[arch]
    # __versions: kmod's own reader (modprobe --dump-modversions) and the spec agree
    assert list(mod.versions) == mb.dump_modversions(path) == list(ARCH_SPEC["versions"])
    for f in ("name", "vermagic", "version", "srcversion", "license", "depends", "signer", "sig_key"):
        mine = {
            "name": mod.name, "vermagic": mod.vermagic, "version": mod.version,
            "srcversion": mod.srcversion, "license": mod.license, "depends": ",".join(mod.depends),
            "signer": mod.signature.signer, "sig_key": mod.signature.key_id,
        }[f]
        assert mine == mb.modinfo_field(path, f), f
    assert "\n".join(mod.modinfo_values("alias")) == mb.modinfo_field(path, "alias")
    strong, weak = nm_undefined(path, arch)
    assert set(mod.undefined) == strong and set(mod.weak_undefined) == weak
    assert mod.depends == ("videodev", "mc") and mod.intree and mod.retpoline is True
    assert mod.modinfo_values("import_ns") == ("CXL",)
    assert dict(mod.modinfo)["description"] == "a test module, with = signs"


def test_machine_names_are_pyelftools_names():
    """ModuleFile.machine (kept in the persistent cache, compared against _LOADER_RESOLVED) is
    named as pyelftools names e_machine, which the reader no longer imports for common machines."""
    from elftools.elf.enums import ENUM_E_MACHINE

    from exporter.formats.module import _MACHINES, machine_name
    by_number = {v: k for k, v in ENUM_E_MACHINE.items() if k != "_default_"}  # as construct decodes
    for number, name in _MACHINES.items():
        assert by_number[number] == name
    assert all(machine_name(n) == name for n, name in by_number.items())
    assert machine_name(0xFFFE) == "65534"


@pytest.mark.parametrize("arch", mb.ARCHES)
def test_modinfo_pairs_in_file_order(arch_modules, arch):
    """All .modinfo pairs, in file order: as the spec wrote them and as `modinfo` lists them."""
    path = arch_modules[arch]
    mod = read_module(path)
    assert list(mod.modinfo) == mb.ModSpec(**ARCH_SPEC).modinfo_pairs()
    listed = subprocess.run([mb.need_tool("modinfo"), str(path)], capture_output=True, text=True, check=True)
    pairs = []
    for line in listed.stdout.splitlines():
        key, _, value = line.partition(":")
        if key in ("filename", "sig_id", "signer", "sig_key", "sig_hashalgo", "signature") or line.startswith("\t"):
            continue
        pairs.append((key, value.strip()))
    assert [(k, v.strip()) for k, v in mod.modinfo] == pairs


def test_out_of_tree_defaults_and_missing_keys(workdir, base_module):
    spec = mb.ModSpec(version=None, license=None, depends=None, retpoline=False, vermagic=None, versions=None)
    mod = read_module(mb.build_module(spec, workdir / "bare.ko"))
    assert (mod.version, mod.license, mod.vermagic, mod.retpoline, mod.intree) == (None, None, None, None, False)
    assert mod.depends == () and mod.versions == () and not mod.has_versions
    assert read_module(workdir / "base.ko").has_versions


def test_name_falls_back_to_struct_module(workdir):
    """Without name= in .modinfo (pre-5.x modpost) the kernel takes struct module's name."""
    for arch in ("x86_64", "ppc32"):
        path = mb.build_module(mb.ModSpec(name="from_struct", arch=arch), workdir / f"noname-{arch}.ko")
        data = path.read_bytes().replace(b"name=from_struct\0", b"xxxx=from_struct\0")
        assert parse_module(data).name == "from_struct"


# ---------------------------------------------------------------------------------------------
# A real Debian kernel module


@pytest.fixture(scope="session")
def real_kernel():
    return mb.real_kernels()[0]


@pytest.mark.slow
@pytest.mark.parametrize("rel", mb.REAL_MODULES)
def test_real_debian_module_equals_modinfo(real_kernel, rel):
    path = real_kernel.module(rel)
    assert exporter_fields(path) == {f: mb.modinfo_field(path, f) for f in MODINFO_FIELDS}
    mod = read_module(path)
    assert mod.signature.signer == "Build time autogenerated kernel key"
    assert mod.intree and mod.vermagic.startswith(real_kernel.release + " SMP preempt mod_unload modversions")
    assert list(mod.versions) == mb.dump_modversions(path)
    assert ",".join(mod.depends) == mb.modinfo_field(path, "depends")
    strong, weak = nm_undefined(path, "x86_64")
    assert set(mod.undefined) == strong and set(mod.weak_undefined) == weak


@pytest.mark.slow
def test_real_module_zstd_and_xz_copies(real_kernel, tmp_path):
    plain = real_kernel.module("fs/ceph/ceph.ko")
    base = read_module(plain)
    for comp in ("zstd", "xz", "gzip"):
        copy = tmp_path / f"ceph{mb.SUFFIX[comp]}"
        copy.write_bytes(mb.compress(plain.read_bytes(), comp))
        assert replace(read_module(copy), compression="none", xz_check=None) == base


@pytest.mark.slow
def test_read_cost_of_a_real_signed_module(real_kernel, tmp_path):
    """~1 MB signed in-tree module: cold (fresh copy, page cache dropped) and warm read cost."""
    src = real_kernel.module("fs/ceph/ceph.ko")
    copy = tmp_path / "ceph.ko"
    shutil.copyfile(src, copy)
    with open(copy, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    t0 = time.perf_counter()
    read_module(copy)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(5):
        read_module(copy)
    warm = (time.perf_counter() - t0) / 5
    print(f"\nread_module({copy.stat().st_size} bytes): cold {cold * 1000:.1f} ms, warm {warm * 1000:.1f} ms")
    assert cold < 2.0 and warm < 1.0


# ---------------------------------------------------------------------------------------------
# Bad input: each a ModuleFileError with a clear code


def test_empty_and_not_elf(tmp_path):
    (tmp_path / "empty.ko").write_bytes(b"")
    with pytest.raises(ModuleFileError) as e:
        read_module(tmp_path / "empty.ko")
    assert e.value.code == "empty"
    (tmp_path / "text.ko").write_text("#!/bin/sh\necho not a module\n")
    with pytest.raises(ModuleFileError) as e:
        read_module(tmp_path / "text.ko")
    assert e.value.code == "not_elf" and "text.ko" in str(e.value)


def test_unreadable(tmp_path):
    with pytest.raises(ModuleFileError) as e:
        read_module(tmp_path / "missing.ko")
    assert e.value.code == "unreadable"
    with pytest.raises(ModuleFileError) as e:
        read_module(tmp_path)
    assert e.value.code == "unreadable"


@pytest.mark.parametrize("cut", [8, 40, 63, 200, -1000, -1])
def test_truncated_elf(base_module, cut):
    with pytest.raises(ModuleFileError) as e:
        parse_module(base_module[:cut])
    assert e.value.code == "truncated"
    assert "offset" in e.value.message


def test_not_a_module(workdir):
    with pytest.raises(ModuleFileError) as e:
        read_module(mb.build_module(mb.ModSpec(this_module=False), workdir / "nothismod.ko"))
    assert e.value.code == "not_module" and ".gnu.linkonce.this_module" in e.value.message
    with pytest.raises(ModuleFileError) as e:
        read_module(Path(mb.need_tool("gcc")))  # an executable, ET_EXEC/ET_DYN
    assert e.value.code == "not_module"


def test_bad_versions_section(workdir):
    spec = mb.ModSpec(
        versions=None,
        extra_c='static const char v[70] __attribute__((used, section("__versions"))) = "x";\n',
    )
    with pytest.raises(ModuleFileError) as e:
        read_module(mb.build_module(spec, workdir / "badvers.ko"))
    assert e.value.code == "bad_versions" and "70 bytes" in e.value.message


def test_signature_length_past_the_file(base_module):
    data = base_module + b"\x30\x00" + mb.module_signature_trailer(len(base_module) + 100)
    with pytest.raises(ModuleFileError) as e:
        parse_module(data)
    assert e.value.code == "bad_signature" and "sig_len" in e.value.message


def test_trailer_without_room_for_the_struct():
    with pytest.raises(ModuleFileError) as e:
        parse_module(b"\x7fELF" + b"~Module signature appended~\n")
    assert e.value.code == "bad_signature"


def test_garbage_pkcs7(workdir, base_module, keys):
    """Garbage where the PKCS#7 should be: the kernel refuses (EBADMSG) whatever the policy;
    Debian's modinfo silently shows no signer, the exporter says bad_signature."""
    signed = mb.sign_module(base_module, keys["dkms"])
    sig_len = len(signed) - len(base_module) - 40
    garbage = bytes((i * 37 + 11) % 256 for i in range(sig_len))
    path = workdir / "garbage-sig.ko"
    path.write_bytes(base_module + garbage + signed[-40:])
    with pytest.raises(ModuleFileError) as e:
        read_module(path)
    assert e.value.code == "bad_signature" and f"offset {len(base_module)}" in e.value.message
    assert mb.modinfo_field(path, "signer") == ""


def test_non_pkcs7_id_type(base_module):
    data = base_module + b"\x30\x00" + mb.module_signature_trailer(2, id_type=1)
    with pytest.raises(ModuleFileError) as e:
        parse_module(data)
    assert e.value.code == "unsupported_signature"


def test_legacy_fields_nonzero(base_module, keys):
    signed = bytearray(mb.sign_module(base_module, keys["dkms"]))
    signed[-40 + 3] = 5  # signer_len
    with pytest.raises(ModuleFileError) as e:
        parse_module(bytes(signed))
    assert e.value.code == "bad_signature"


@pytest.mark.slow
def test_skid_signer_identifier(workdir, base_module, keys):
    """`sign-file -k` identifies the key by subjectKeyIdentifier: modinfo shows nothing, the
    exporter keeps the SKID so trust can still be matched."""
    target = workdir / "skid.ko"
    target.write_bytes(base_module)
    key = keys["dkms"]
    subprocess.run(
        [str(mb.sign_file_binary()), "-k", "sha256", str(key.key_pem), str(key.cert_der), str(target)],
        check=True, capture_output=True,
    )
    sig = read_module(target).signature
    skid = key.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert sig.skid == skid.hex() and sig.signer == "" and sig.key_id == ""
    assert mb.modinfo_field(target, "signer") == ""


@pytest.mark.parametrize("comp", ["zstd", "xz", "gzip"])
def test_truncated_compressed(base_module, comp):
    packed = mb.compress(base_module, comp)
    with pytest.raises(ModuleFileError) as e:
        decompress_module(packed[: len(packed) - 7])
    assert e.value.code == "bad_compression"
    with pytest.raises(ModuleFileError) as e:
        decompress_module(packed + b"trailing junk")
    assert e.value.code == "bad_compression"


@pytest.mark.parametrize("comp", ["zstd", "xz", "gzip"])
def test_compression_bomb_over_the_bound(tmp_path, comp):
    bomb = tmp_path / f"bomb{mb.SUFFIX[comp]}"
    bomb.write_bytes(mb.compress(b"\x7fELF" + bytes(8 * 1024 * 1024), comp))
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(ModuleFileError) as e:
        read_module(bomb, max_bytes=1024 * 1024)
    assert e.value.code == "too_large"


def test_zstd_bomb_at_default_bound(tmp_path):
    """A zstd frame that says (or only turns out) to be bigger than DEFAULT_MAX."""
    size = DEFAULT_MAX + 1024
    zstd = mb.need_tool("zstd")
    with_size = subprocess.run(
        f"head -c {size} /dev/zero | {zstd} -q -1 --stream-size={size} -c",
        shell=True, capture_output=True, check=True,
    ).stdout
    streamed = subprocess.run(
        f"head -c {size} /dev/zero | {zstd} -q -1 -c", shell=True, capture_output=True, check=True
    ).stdout
    for name, data in (("declared", with_size), ("streamed", streamed)):
        assert len(data) < 64 * 1024
        path = tmp_path / f"{name}.ko.zst"
        path.write_bytes(data)
        with pytest.raises(ModuleFileError) as e:
            read_module(path)
        assert e.value.code == "too_large", name


def test_compressed_bytes_given_to_parse_module(base_module):
    with pytest.raises(ModuleFileError) as e:
        parse_module(mb.compress(base_module, "zstd"))
    assert e.value.code == "not_elf" and "zstd" in e.value.message


# ---------------------------------------------------------------------------------------------
# Fuzz: random and mutated bytes only ever raise ModuleFileError


def _parse_or_error(data: bytes) -> None:
    try:
        parse_module(data)
    except ModuleFileError as e:
        assert e.code and e.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data):
    _parse_or_error(data)
    _parse_or_error(b"\x7fELF" + data)
    try:
        parse_pkcs7_signature(data)
    except ModuleFileError as e:
        assert e.code == "bad_signature"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_pkcs7(fuzz_seeds, data):
    """Mutations inside a real sign-file PKCS#7 blob: a signature or bad_signature, nothing else."""
    signed = fuzz_seeds[0]
    sig_len = struct.unpack(">I", signed[-32:-28])[0]
    blob = bytearray(signed[-40 - sig_len : -40])
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        sig = parse_pkcs7_signature(bytes(blob))
        assert sig.id_type == "PKCS#7" and isinstance(sig.signer, str)
    except ModuleFileError as e:
        assert e.code == "bad_signature"


@pytest.fixture(scope="session")
def fuzz_seeds(workdir, keys, base_module) -> list[bytes]:
    small = mb.build_module(mb.ModSpec(arch="ppc32"), workdir / "fuzz-ppc32.ko").read_bytes()
    return [mb.sign_module(base_module, keys["ec"]), small]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_modules(fuzz_seeds, data):
    seed = bytearray(data.draw(st.sampled_from(fuzz_seeds)))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(seed) - 1))
        seed[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        seed = seed[: data.draw(st.integers(0, len(seed)))]
    _parse_or_error(bytes(seed))
