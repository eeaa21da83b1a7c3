"""The dkms collector's built-vs-installed comparison hashes module files streamed: a vendor
module is tens of MiB (Debian's nvidia-current.ko is 62 MiB, compared twice per scrape), so it
must cost chunks, not the file.  The flag it feeds is judged against the real dkms status on
the real host (tests/realhost, signed_sb_off's "Diff between built and installed module")."""

from __future__ import annotations

import hashlib
import os

import pytest

from exporter.collectors import dkms
from exporter.host.reader import FileTooLarge


def test_streamed_digest_is_sha256_of_the_file(tmp_path) -> None:
    f = tmp_path / "big.ko"
    data = os.urandom(3 * 2**20 + 17)
    f.write_bytes(data)
    assert dkms._sha256_file(f, f.stat()) == hashlib.sha256(data).hexdigest()


def test_streamed_digest_refuses_a_file_past_the_bound(tmp_path, monkeypatch) -> None:
    f = tmp_path / "huge.ko"
    f.write_bytes(b"\0" * (2 * 2**20 + 1))
    monkeypatch.setattr(dkms, "DIGEST_LIMIT", 2 * 2**20)
    with pytest.raises(FileTooLarge):
        dkms._sha256_file(f, f.stat())


def test_streamed_digest_refuses_a_file_over_the_bound_unread(tmp_path, monkeypatch) -> None:
    """A 2 GiB sparse .ko is refused by its size before any read (test_faults: no 256 MiB read)."""
    f = tmp_path / "sparse.ko"
    with open(f, "wb") as fh:
        fh.truncate(2 << 30)

    def no_open(*_a, **_k):
        raise AssertionError("opened a file its size already refuses")

    monkeypatch.setattr(dkms, "open_regular", no_open)
    with pytest.raises(FileTooLarge):
        dkms._sha256_file(f, f.stat())


def test_streamed_digest_refuses_a_fifo(tmp_path) -> None:
    fifo = tmp_path / "fifo.ko"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        dkms._sha256_file(fifo, fifo.stat())
