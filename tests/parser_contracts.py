"""What a damaged input may do to a parser, written once for the property tests
(tests/test_properties_distro.py) and the atheris targets (benchmarks/fuzz.py): raise only the
parser's documented error, or return something that stays inside the input's bounds.  Each
function takes the (mutated) bytes and fails an assertion when the contract is broken."""

from __future__ import annotations

import io

# Packages a zypper lock is judged against: a kernel, a package with an epoch, and the empty name.
ZYPP_PROBES = (("kernel-default", "6.4.0-150600.23.30.1"), ("vim", "2:9.1.0330-1"), ("", ""))


def zypp_locks(data: bytes) -> None:
    """/etc/zypp/locks: ZyppLocksError, or locks that judge any package without raising."""
    from exporter.formats import zypplocks
    try:
        locks = zypplocks.parse_locks(data.decode("utf-8", "replace"))
    except zypplocks.ZyppLocksError:
        return
    for lock in locks[:20]:
        for name, evr in ZYPP_PROBES:
            assert zypplocks.judge(lock, name, evr, "x86_64") in (True, False, None)


def ndb_packages(data: bytes) -> None:
    """rpm's ndb Packages.db: NdbError, or slots whose blobs stay inside the file."""
    from exporter.formats import ndb

    def pread(off: int, n: int) -> bytes:
        return data[off:off + n]

    try:
        for pkgidx, blkoff, blkcnt in ndb.ndb_slots(pread, len(data)):
            assert len(ndb.read_blob(pread, pkgidx, blkoff, blkcnt)) <= len(data)
    except ndb.NdbError:
        pass


def kernel_image(data: bytes, offset: int = 0) -> None:
    """A vmlinuz: VmlinuxError or TrustDataError (what the module collector catches), or at most
    MAX_CERTS certificates."""
    from exporter.formats import errors, vmlinux
    try:
        keys = vmlinux.builtin_certificates(io.BytesIO(data), len(data), offset)
    except (vmlinux.VmlinuxError, errors.TrustDataError):
        return
    assert len(keys.certificates) <= vmlinux.MAX_CERTS
