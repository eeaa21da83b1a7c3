"""`serve` under load, on loopback: 50 scrapers at once for a few seconds get every scrape, the
same answer, and a process whose memory does not grow; a stuck collector costs each scrape at
most the scrape timeout and nothing to the other collectors; SIGTERM with clients connected ends
the process cleanly, every response that started is whole."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import http.client
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import Served, by_collector, example_root, http_request, samples, serving, wait_for

from example_hosts import many_problems
from exporter import collectors as collector_registry
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.web.server import App, build_registry, make_http_server

CLIENTS = 50
SECONDS = 4.0
SCRAPE_TIMEOUT = 30.0   # seconds a client waits for one scrape: fifty at once queue
# values that legitimately differ between two scrapes of an unchanged host
VOLATILE = re.compile(r"^(process_|python_|dkms_scrape_collector_duration_seconds|dkms_exporter_file_cache_|"
                      r"dkms_kernel_initramfs_listing_duration_seconds|dkms_boot_(free|size)_bytes)")


def stable(body: bytes) -> str:
    return "\n".join(l for l in body.decode().splitlines() if not l.startswith("#") and not VOLATILE.match(l))


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


@pytest.fixture(scope="module")
def host_root(tmp_path_factory) -> Path:
    return example_root(tmp_path_factory, many_problems)


@pytest.fixture
def served(host_root) -> Iterator[Served]:
    with Served(host_root, "--log.level", "warn") as s:
        yield s


@pytest.mark.slow   # a 4 s load loop by design
def test_fifty_concurrent_scrapers(served):
    port, proc = served.port, served.proc
    first = http_request(port, timeout=SCRAPE_TIMEOUT)
    assert first.status == 200
    expected = stable(first.body)
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
                r = http_request(port, timeout=SCRAPE_TIMEOUT)
            except (OSError, http.client.HTTPException) as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.monotonic() - start)
            if r.status != 200:
                problems.append(f"HTTP {r.status}: {r.body[:80]!r}")
            elif stable(r.body) != expected:
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


def test_sigterm_with_clients_connected_exits_cleanly(served):
    """Clients keep scraping while SIGTERM arrives: the process exits 0 promptly; every response
    that started is complete; after that, connections are refused."""
    port = served.port
    assert http_request(port, timeout=SCRAPE_TIMEOUT).status == 200
    stop = threading.Event()
    outcomes: list[str] = []

    def client() -> None:
        while not stop.is_set():
            try:
                r = http_request(port, timeout=10)
                outcomes.append("ok" if r.status == 200 and r.body.endswith(b"\n") else f"bad {r.status}")
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
    served.proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    code = served.wait(15)
    took = time.monotonic() - start
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    stderr = served.log_text
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
    with contextlib.ExitStack() as cleanup:
        port = cleanup.enter_context(serving(make_http_server("127.0.0.1:0", App(registry))))
        cleanup.callback(release.set)       # first, also when a check fails: unstick, then shut down

        def scrape() -> tuple[float, dict[str, float], str]:
            start = time.monotonic()
            r = http_request(port, timeout=SCRAPE_TIMEOUT)
            assert r.status == 200
            return time.monotonic() - start, by_collector(samples(r.text), "dkms_scrape_collector_success"), r.text

        took, success, text = scrape()
        assert 2.4 < took < 6, took
        assert success.pop("secureboot") == 0 and set(success.values()) == {1.0}
        assert "\ndkms_next_boot_ready " not in text and "dkms_next_boot_readiness_unknown 1.0" in text
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            later = list(pool.map(lambda _: scrape(), range(20)))
        assert all(t < 2.0 and s["secureboot"] == 0 for t, s, _ in later), [t for t, _, _ in later]
        assert len(calls) == 1                      # one stuck thread, never a second
        release.set()
        wait_for("the stuck collector to return", lambda: not scraper.inflight.names(), timeout=10, every=0.05)
        took, success, text = scrape()
        assert set(success.values()) == {1.0} and "\ndkms_next_boot_ready 0.0" in text


def test_shutdown_waits_for_accepted_requests(host_root, monkeypatch):
    """serve() returns only after every request it accepted was answered: a scrape slowed to
    1.5 s (the test's hook) that is in flight when shutdown begins still gets its whole body."""
    from exporter.web import server as server_mod
    scraper = Scraper(HostFS(host_root), Config())
    registry, _ = build_registry(scraper, process=False)
    real = scraper.scrape
    scraping = threading.Event()

    def slow():
        scraping.set()
        time.sleep(1.5)
        return real()

    monkeypatch.setattr(scraper, "scrape", slow)
    srv = make_http_server("127.0.0.1:0", App(registry))
    port = srv.server_address[1]
    monkeypatch.setattr(server_mod.signal, "signal", lambda *a: None)   # serve() in a thread: no handlers
    serve_thread = threading.Thread(target=server_mod.serve, args=(srv,))
    serve_thread.start()
    result: list = []
    client = threading.Thread(target=lambda: result.append(http_request(port, timeout=SCRAPE_TIMEOUT)))
    client.start()
    assert scraping.wait(10)               # the request is accepted and its scrape is running
    srv.shutdown()                         # what SIGTERM triggers: no more accepts
    time.sleep(0.5)
    assert serve_thread.is_alive()         # the process would exit when serve() returns
    serve_thread.join(timeout=10)
    client.join(timeout=10)
    assert not serve_thread.is_alive() and result and result[0].status == 200
    assert result[0].body.endswith(b"\n") and b"dkms_next_boot_ready 0.0" in result[0].body
