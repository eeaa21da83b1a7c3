"""`serve` under load, on loopback: 50 scrapers at once for a few seconds get every scrape, the
same answer, and a process whose memory does not grow; a stuck collector costs each scrape at
most the scrape timeout and nothing to the other collectors; SIGTERM with clients connected ends
the process cleanly, every response that started is whole."""

from __future__ import annotations

import dataclasses
import concurrent.futures
import http.client
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from example_hosts import many_problems
from exporter import collectors as collector_registry
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.web.server import App, build_registry, make_http_server

REPO = Path(__file__).resolve().parent.parent
CLIENTS = 50
SECONDS = 4.0
# values that legitimately differ between two scrapes of an unchanged host
VOLATILE = re.compile(r"^(process_|python_|dkms_scrape_collector_duration_seconds|dkms_exporter_file_cache_|"
                      r"dkms_kernel_initramfs_listing_duration_seconds|dkms_boot_(free|size)_bytes)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        return resp.status, resp.read()     # IncompleteRead if the body is cut short
    finally:
        conn.close()


def stable(body: bytes) -> str:
    return "\n".join(l for l in body.decode().splitlines() if not l.startswith("#") and not VOLATILE.match(l))


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


@pytest.fixture(scope="module")
def host_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("load") / "h"
    many_problems(root)
    return root


@pytest.fixture
def serve(host_root):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--web.listen-address", f"127.0.0.1:{port}",
                             "--path.rootfs", str(host_root), "--log.level", "warn"],
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("serve did not start: " + proc.stderr.read())
    yield port, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_fifty_concurrent_scrapers(serve):
    port, proc = serve
    status, first = get(port)
    assert status == 200
    expected = stable(first)
    assert "dkms_next_boot_ready 0.0" in expected
    rss: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            rss.append(rss_kib(proc.pid))

    def client(_: int) -> tuple[int, list[str], list[float]]:
        ok, problems, latencies = 0, [], []
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                status, body = get(port)
            except (OSError, http.client.HTTPException) as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.monotonic() - start)
            if status != 200:
                problems.append(f"HTTP {status}: {body[:80]!r}")
            elif stable(body) != expected:
                problems.append("a different answer")
            else:
                ok += 1
        return ok, problems, latencies

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(client, range(CLIENTS)))
    finally:
        stop.set()
        sampler.join()
    problems = [p for _, ps, _ in results for p in ps]
    scrapes = sum(ok for ok, _, _ in results)
    latencies = sorted(l for _, _, ls in results for l in ls)
    assert problems == [] and scrapes >= CLIENTS, (problems[:5], len(problems))
    assert all(ok > 0 for ok, _, _ in results)                 # nobody starved
    assert latencies[int(len(latencies) * 0.99)] < 10          # queued, never stuck
    # memory: settles in the first second, then stays (no per-request growth)
    settled = max(rss[: len(rss) // 4])
    assert max(rss) < settled + 8 * 1024, (settled, max(rss))
    assert rss_kib(proc.pid) < 120 * 1024
    assert proc.poll() is None


def test_sigterm_with_clients_connected_exits_cleanly(serve):
    """Clients keep scraping while SIGTERM arrives: the process exits 0 promptly; every response
    that started is complete; after that, connections are refused."""
    port, proc = serve
    assert get(port)[0] == 200
    stop = threading.Event()
    outcomes: list[str] = []

    def client() -> None:
        while not stop.is_set():
            try:
                status, body = get(port, timeout=10)
                outcomes.append("ok" if status == 200 and body.endswith(b"\n") else f"bad {status}")
            except ConnectionRefusedError:
                outcomes.append("refused")
                time.sleep(0.05)
            except (ConnectionResetError, http.client.RemoteDisconnected):
                outcomes.append("closed before a response")   # accepted, not yet answered: no data
            except http.client.IncompleteRead:
                outcomes.append("TRUNCATED")

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    code = proc.wait(timeout=15)
    took = time.monotonic() - start
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    stderr = proc.stderr.read()
    assert code == 0 and took < 10, (code, took, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-2000:]
    assert outcomes.count("ok") > 20 and "TRUNCATED" not in outcomes
    assert not [o for o in outcomes if o.startswith("bad")], sorted(set(outcomes))
    assert outcomes[-1] == "refused"


def test_a_stuck_collector_costs_a_scrape_its_timeout_and_the_others_nothing(host_root, monkeypatch):
    """In-process serve with the secureboot collector stuck (the test's hook: it waits on an
    event).  The first scrape is served at the 2.5 s timeout with every other collector's facts and
    readiness unknown; the next ones are served at once (it is not started again); after it
    returns, the next scrape is whole."""
    release = threading.Event()
    calls: list[float] = []
    real = collector_registry.by_name()["secureboot"]

    def stuck(ctx):
        calls.append(time.monotonic())
        release.wait(60)
        return real.collect(ctx)

    monkeypatch.setitem(collector_registry.REGISTRY, "secureboot", dataclasses.replace(real, collect=stuck))
    scraper = Scraper(HostFS(host_root), Config(), timeout=2.5)
    registry, _ = build_registry(scraper, process=False)
    server = make_http_server("127.0.0.1:0", App(registry))
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        def scrape() -> tuple[float, dict[str, float], str]:
            start = time.monotonic()
            status, body = get(port)
            assert status == 200
            text = body.decode()
            success = {s.labels["collector"]: s.value for f in text_string_to_metric_families(text)
                       for s in f.samples if s.name == "dkms_scrape_collector_success"}
            return time.monotonic() - start, success, text

        took, success, text = scrape()
        assert 2.4 < took < 6, took
        assert success.pop("secureboot") == 0 and set(success.values()) == {1.0}
        assert "\ndkms_next_boot_ready " not in text and "dkms_next_boot_readiness_unknown 1.0" in text
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            later = list(pool.map(lambda _: scrape(), range(20)))
        assert all(t < 2.0 and s["secureboot"] == 0 for t, s, _ in later), [t for t, _, _ in later]
        assert len(calls) == 1                      # one stuck thread, never a second
        release.set()
        deadline = time.monotonic() + 10
        while scraper.inflight.names() and time.monotonic() < deadline:
            time.sleep(0.05)
        took, success, text = scrape()
        assert set(success.values()) == {1.0} and "\ndkms_next_boot_ready 0.0" in text
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_shutdown_waits_for_accepted_requests(host_root, monkeypatch):
    """serve() returns only after every request it accepted was answered: a scrape slowed to
    1.5 s (the test's hook) that is in flight when shutdown begins still gets its whole body."""
    from exporter.web import server as server_mod
    scraper = Scraper(HostFS(host_root), Config())
    registry, _ = build_registry(scraper, process=False)
    real = scraper.scrape

    def slow():
        time.sleep(1.5)
        return real()

    monkeypatch.setattr(scraper, "scrape", slow)
    srv = make_http_server("127.0.0.1:0", App(registry))
    port = srv.server_address[1]
    monkeypatch.setattr(server_mod.signal, "signal", lambda *a: None)   # serve() in a thread: no handlers
    serving = threading.Thread(target=server_mod.serve, args=(srv,))
    serving.start()
    result: list = []
    client = threading.Thread(target=lambda: result.append(get(port)))
    client.start()
    time.sleep(0.5)                        # the request is accepted and its scrape is running
    srv.shutdown()                         # what SIGTERM triggers: no more accepts
    time.sleep(0.5)
    assert serving.is_alive()              # the process would exit when serve() returns
    serving.join(timeout=10)
    client.join(timeout=10)
    assert not serving.is_alive() and result and result[0][0] == 200
    assert result[0][1].endswith(b"\n") and b"dkms_next_boot_ready 0.0" in result[0][1]
