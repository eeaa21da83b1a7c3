"""Reading a tens-of-MiB module must not cost its size in memory (issue: nvidia.ko is ~60 MiB).

A 48 MiB module (a big const blob in .rodata, as a vendor driver's firmware/tables are) is built
by gcc, signed by the kernel's real scripts/sign-file, then kept as it is and compressed by the
real xz/zstd with kbuild's flags.  In a fresh interpreter each is read and its signature verified
(the digest over all 48 MiB); the growth of the process's peak RSS (VmHWM, which sees the C
decompressors too) and the Python heap peak (tracemalloc) must stay a few MiB.  The same child
then reads the file whole, as the exporter used to: that growth must be about the file's size,
so the measurement is one that can fail.  `openssl cms -verify` on the same bytes is the
reference for the verdict, and a byte flipped deep inside the blob must turn it invalid.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

import modbuild as mb
from test_modsig import openssl_verifies

REPO = Path(__file__).resolve().parent.parent
BLOB = 48 * 1024 * 1024
BOUND_KIB = 6 * 1024   # "a few MiB": the ELF pieces kept, one decompressed chunk, the reads' buffers

_CHILD = r"""
import json, sys, tracemalloc
from pathlib import Path
from exporter.collectors.module import read_module
from exporter.formats.modsig import verify
from exporter.formats.x509 import load_certificate
small, big, cert = sys.argv[1:4]
cert = load_certificate(Path(cert).read_bytes())
verify(read_module(Path(small)).signature, cert)          # imports, cryptography's first key load
def peak():
    # VmHWM is this mm's high-water mark; ru_maxrss would start at the forking parent's (pytest's)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
def reset():
    with open("/proc/self/clear_refs", "w") as f:   # "5": the high-water mark back to the current RSS
        f.write("5")
reset()
base = peak()
tracemalloc.start()
mod = read_module(Path(big))
heap = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
ok = verify(mod.signature, cert).ok
streamed = peak() - base
del mod
reset()
base = peak()
whole = len(Path(big).read_bytes())
print(json.dumps({"ok": ok, "streamed_kib": streamed, "heap_kib": heap // 1024,
                  "whole_kib": peak() - base, "size": whole}))
"""


@pytest.fixture(scope="module")
def big_modules(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("bigmod")
    blob = work / "blob.bin"
    blob.write_bytes(random.Random(15).randbytes(BLOB))
    key = mb.make_signing_key(work / "key")
    extra = f'__asm__(".pushsection .rodata.blob,\\"a\\"\\n.incbin \\"{blob}\\"\\n.popsection");\n'
    out = {"key": key.cert_der}
    for name, extra_c in (("small", ""), ("big", extra)):
        ko = mb.build_module(mb.ModSpec(name=name, extra_c=extra_c), work / f"{name}.ko")
        subprocess.run([str(mb.sign_file_binary()), "sha256", str(key.key_pem), str(key.cert_der), str(ko)],
                       check=True, capture_output=True)
        out[name] = ko
    assert out["big"].stat().st_size > BLOB
    data = out["big"].read_bytes()
    assert openssl_verifies(work, data, key.cert_pem)
    for fmt in ("xz", "zstd"):
        out[fmt] = work / f"big{mb.SUFFIX[fmt]}"
        out[fmt].write_bytes(mb.compress(data, fmt))
    flipped = bytearray(data)
    flipped[data.index(blob.read_bytes()[:64]) + BLOB // 2] ^= 0x40
    assert not openssl_verifies(work, bytes(flipped), key.cert_pem)
    out["flipped"] = work / "flipped.ko.xz"
    out["flipped"].write_bytes(mb.compress(bytes(flipped), "xz"))
    out["cert_pem"] = key.cert_pem
    return out


def _measure(small: Path, big: Path, cert: Path) -> dict:
    proc = subprocess.run(["nice", "-n", "10", sys.executable, "-c", _CHILD, str(small), str(big), str(cert)],
                          cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _window_kib(path: Path) -> int:
    head = path.read_bytes()[:18]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard
        return zstandard.get_frame_parameters(head).window_size // 1024
    return 1024 if path.suffix == ".xz" else 0


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["big", "xz", "zstd"])
def test_big_module_costs_a_few_mib(big_modules, variant):
    got = _measure(big_modules["small"], big_modules[variant], big_modules["key"])
    print(f"\n{variant}: {got['size'] / 2**20:.1f} MiB on disk ({BLOB / 2**20:.0f} MiB blob), peak RSS +{got['streamed_kib'] / 1024:.1f} MiB "
          f"reading and verifying it, heap peak {got['heap_kib'] / 1024:.1f} MiB; reading it whole: "
          f"+{got['whole_kib'] / 1024:.1f} MiB")
    assert got["ok"] is True
    # plus the decoder's window, which the file's own header demands of any decoder (the kernel's
    # too): zstd -19 declares 8 MiB, kbuild's xz --lzma2=dict=1MiB 1 MiB
    window = _window_kib(big_modules[variant])
    assert got["streamed_kib"] < BOUND_KIB + window and got["heap_kib"] < BOUND_KIB, (got, window)
    assert got["whole_kib"] > got["size"] // 1024 // 2, got   # the control: holding it is seen


@pytest.mark.slow
def test_a_byte_changed_deep_inside_is_invalid(big_modules):
    from exporter.collectors.module import read_module
    from exporter.formats.modsig import verify
    from exporter.formats.x509 import load_certificate
    cert = load_certificate(big_modules["key"].read_bytes())
    assert verify(read_module(big_modules["xz"]).signature, cert).ok
    assert not verify(read_module(big_modules["flipped"]).signature, cert).ok
