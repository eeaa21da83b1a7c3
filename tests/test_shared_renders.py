"""exporter/web/exposition.py SharedRenders: concurrent requests of one kind share renders the
way scrapes are shared, and each still gets a body rendered after it asked."""

from __future__ import annotations

import threading
import time

import pytest

from exporter.web.exposition import RenderTimeout, SharedRenders


def _renderer(delay: float = 0.2):
    """A make() that counts its calls and returns which call it was."""
    calls = []
    lock = threading.Lock()

    def make():
        with lock:
            calls.append(time.monotonic())
            n = len(calls)
        time.sleep(delay)
        return [("X-Render", str(n))], f"render {n}".encode()
    return make, calls


def test_fifty_concurrent_requests_cost_two_renders():
    shared, (make, calls) = SharedRenders(), _renderer()
    bodies = []
    threads = [threading.Thread(target=lambda: bodies.append(shared.get("k", make, 30)[1])) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(bodies) == 50 and len(calls) <= 2
    assert len({id(b) for b in bodies}) <= 2          # the bodies themselves are shared, not copied
    assert len(shared) == 0                           # nothing kept once nobody waits


def test_a_request_never_gets_a_render_that_began_before_it_asked():
    shared, (make, calls) = SharedRenders(), _renderer(0.3)
    first = threading.Thread(target=lambda: shared.get("k", make, 30))
    first.start()
    time.sleep(0.1)                                   # render 1 is running now
    asked = time.monotonic()
    _, body = shared.get("k", make, 30)
    assert body == b"render 2" and calls[1] >= asked
    first.join(30)


def test_kinds_render_apart_and_errors_reach_every_sharer():
    shared = SharedRenders()
    make, calls = _renderer(0.05)
    assert shared.get("openmetrics", make, 5)[1] == b"render 1"
    assert shared.get("text", make, 5)[1] == b"render 2"

    def broken():
        time.sleep(0.2)
        raise RuntimeError("collect failed")
    errors = []

    def ask():
        try:
            shared.get("k", broken, 30)
        except RuntimeError as exc:
            errors.append(str(exc))
    threads = [threading.Thread(target=ask) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == ["collect failed"] * 5 and len(shared) == 0


def test_a_request_waits_no_longer_than_its_timeout():
    shared = SharedRenders()
    release = threading.Event()

    def slow():
        release.wait(30)
        return [], b"late"
    leader = threading.Thread(target=lambda: shared.get("k", slow, 30))
    leader.start()
    time.sleep(0.05)
    start = time.monotonic()
    with pytest.raises(RenderTimeout):
        shared.get("k", slow, 0.3)
    assert time.monotonic() - start < 5
    release.set()
    leader.join(30)
    assert len(shared) == 0


class _TrickleSocket:
    """sendmsg that takes at most 7 bytes a call, as a full socket buffer would."""

    def __init__(self) -> None:
        self.got = bytearray()
        self.calls = 0

    def sendmsg(self, parts):
        self.calls += 1
        joined = b"".join(bytes(p) for p in parts)[:7]
        self.got += joined
        return len(joined)


def test_a_response_is_gathered_and_sent_whole_even_in_pieces():
    """server._GatherWriter keeps what wsgiref writes and sends it on flush, resuming a partial
    sendmsg where it stopped: the bytes arrive complete and in order."""
    from exporter.web.server import _GatherWriter
    sock = _TrickleSocket()
    w = _GatherWriter(sock)
    pieces = [b"HTTP/1.0 200 OK\r\n", b"Date: x\r\n", b"", b"Content-Length: 26\r\n\r\n", b"abcdefghijklmnopqrstuvwxyz"]
    assert [w.write(p) for p in pieces] == [len(p) for p in pieces]
    assert sock.calls == 0                 # nothing leaves before the flush
    w.flush()
    assert bytes(sock.got) == b"".join(pieces) and sock.calls == -(-len(b"".join(pieces)) // 7)
    w.flush()
    assert sock.calls == -(-len(b"".join(pieces)) // 7)   # an empty flush sends nothing
