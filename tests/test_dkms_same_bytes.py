"""The dkms collector's built-vs-installed comparison (dkms status's "Diff between built and
installed module", its ``diff -q``): the two copies compared byte by byte in chunks, stopping
at the first difference.  A vendor module is tens of MiB (Debian's nvidia-current.ko is 62 MiB),
so it must cost chunks, not the file, and no hashing.  The flag it feeds is judged against the
real dkms status on the real host (tests/realhost, signed_sb_off's "Diff between built and
installed module")."""

from __future__ import annotations

import os

import pytest

from exporter.collectors import dkms
from exporter.host.reader import FileTooLarge


def _pair(tmp_path, data: bytes, other: bytes | None = None):
    a, b = tmp_path / "installed.ko", tmp_path / "built.ko"
    a.write_bytes(data)
    b.write_bytes(data if other is None else other)
    return a, b


def test_equal_copies_are_the_same_and_any_difference_is_found(tmp_path) -> None:
    data = os.urandom(3 * 2**20 + 17)               # more than one chunk, not a whole number of them
    a, b = _pair(tmp_path, data)
    assert dkms.same_bytes(a, a.stat(), b) is True
    for at in (0, 2**20, len(data) - 1):            # first chunk, a chunk boundary, the last byte
        changed = bytearray(data)
        changed[at] ^= 1
        b.write_bytes(bytes(changed))
        assert dkms.same_bytes(a, a.stat(), b) is False, at


@pytest.mark.parametrize("size", [0, 1, 4096, dkms._COMPARE_CHUNK - 1, dkms._COMPARE_CHUNK,
                                  dkms._COMPARE_CHUNK + 1])
def test_buffers_sized_to_the_file_still_see_every_byte(tmp_path, size) -> None:
    """The buffers are no bigger than the file (+1), so their size varies with it: empty and
    small files, files just under, at and over a chunk, equal and differing in their last byte."""
    data = os.urandom(size)
    a, b = _pair(tmp_path, data)
    assert dkms.same_bytes(a, a.stat(), b) is True
    if size:
        changed = bytearray(data)
        changed[-1] ^= 1
        b.write_bytes(bytes(changed))
        assert dkms.same_bytes(a, a.stat(), b) is False


def test_one_file_or_different_sizes_answer_without_a_read(tmp_path, monkeypatch) -> None:
    a, b = _pair(tmp_path, b"x" * 100, b"x" * 101)
    link = tmp_path / "hardlink.ko"
    os.link(a, link)

    def no_open(*_a, **_k):
        raise AssertionError("read a file its identity or size already answers for")

    monkeypatch.setattr(dkms, "open_regular", no_open)
    assert dkms.same_bytes(a, a.stat(), b) is False
    assert dkms.same_bytes(a, a.stat(), link) is True


def test_a_file_past_the_bound_is_refused_unread(tmp_path, monkeypatch) -> None:
    """A 2 GiB sparse .ko is refused by its size before any read (test_faults: no 256 MiB read),
    whichever of the two it is."""
    a, _ = _pair(tmp_path, b"x")
    sparse = tmp_path / "sparse.ko"
    with open(sparse, "wb") as fh:
        fh.truncate(2 << 30)

    def no_open(*_a, **_k):
        raise AssertionError("opened a file its size already refuses")

    monkeypatch.setattr(dkms, "open_regular", no_open)
    for first, second in ((sparse, a), (a, sparse)):
        with pytest.raises(FileTooLarge):
            dkms.same_bytes(first, first.stat(), second)


def test_a_file_growing_past_the_bound_while_read_is_refused(tmp_path, monkeypatch) -> None:
    """Both files were under the bound when stat'ed (here: stat results that say 10 bytes) but
    hold more by the time they are read: refused as it is read, never compared truncated."""
    monkeypatch.setattr(dkms, "DIGEST_LIMIT", 2 * 2**20)
    a, b = _pair(tmp_path, b"\0" * (2 * 2**20 + 1))

    class Small:
        st_size, st_dev = 10, 1

        def __init__(self, ino: int) -> None:
            self.st_ino = ino

    monkeypatch.setattr(dkms.os, "stat", lambda _p: Small(2))
    with pytest.raises(FileTooLarge):
        dkms.same_bytes(a, Small(3), b)


def test_a_fifo_is_refused(tmp_path) -> None:
    """Same size (0) as an empty file, so it has to be opened: the host reader refuses it."""
    empty = tmp_path / "empty.ko"
    empty.write_bytes(b"")
    fifo = tmp_path / "fifo.ko"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        dkms.same_bytes(fifo, os.stat(fifo), empty)
