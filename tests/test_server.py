"""`serve` for real on loopback: landing page, metrics, errors, concurrency, SIGTERM."""

import concurrent.futures
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import Served, example_root, require_tool, run_exporter

from example_hosts import reboot_trap


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Served]:
    with Served(example_root(tmp_path_factory, reboot_trap)) as s:
        yield s


def test_landing_page_links_metrics(server):
    r = server.request("/")
    assert r.status == 200 and 'href="/metrics"' in r.text and r.headers["content-type"].startswith("text/html")


def test_metrics(server):
    r = server.request("/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "dkms_next_boot_ready 0.0" in r.text
    assert 'dkms_module_problem{dkms="acpi-call/1.2.2",kernel="6.1.0-28-amd64",module="acpi_call",reason="not_built"} 1.0' in r.text
    assert "process_resident_memory_bytes" in r.text


def test_unknown_path_and_method(server):
    r = server.request("/etc/passwd")
    assert r.status == 404 and r.text == "not found\n"
    assert server.request("/metrics", method="POST", body=b"x").status == 405


def test_concurrent_scrapes_all_succeed_with_identical_answers(server):
    def scrape(_):
        r = server.request("/metrics")
        return r.status, sorted(l for l in r.text.splitlines() if l.startswith("dkms_module_problem"))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(scrape, range(32)))
    assert all(code == 200 for code, _ in results)
    assert len({tuple(lines) for _, lines in results}) == 1


def test_sigterm_shuts_down_cleanly(server):
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0


def test_bad_listen_address_is_a_clear_error(tmp_path):
    out = run_exporter("serve", "--web.listen-address", "nonsense", "--path.rootfs", str(tmp_path), timeout=30)
    assert out.returncode == 1 and "cannot listen on nonsense" in out.stderr and "Traceback" not in out.stderr


def test_a_response_is_one_tcp_send(tmp_path_factory, tmp_path):
    """wsgiref writes the status line, Date, Server, the headers and the body apart; on an
    unbuffered socket that was five sends a scrape (each exposed to Nagle and delayed ACKs).
    strace on the serving process sees the whole /metrics response leave in one sendto."""
    trace = tmp_path / "trace"
    with Served(example_root(tmp_path_factory, reboot_trap)) as server:
        _traced_scrape(server, trace)
    sends = [line for line in trace.read_text().splitlines() if "sendto(" in line or "sendmsg(" in line]
    assert len(sends) == 1, sends
    assert '"HTTP/1.0 200 OK\\r\\n' in sends[0]


def _traced_scrape(server: Served, trace: Path) -> None:
    """One /metrics request while strace records the serving process' sends into TRACE."""
    tracer = subprocess.Popen([require_tool("strace"), "-f", "-qq", "-e", "trace=sendto,sendmsg,write",
                               "-o", str(trace), "-p", str(server.proc.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)   # strace attaches to every thread
        r = server.request("/metrics")
        time.sleep(0.5)
    finally:
        tracer.terminate()
        tracer.wait(10)
    assert r.status == 200 and len(r.body) < 64 * 1024


SERVE_AND_LIST_MODULES = """
import os, signal, sys, threading, time, urllib.request
port, root, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def scrape_then_stop():
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
            break
        except OSError:
            time.sleep(0.05)
    open(out, "w").write(" ".join(sorted(sys.modules)))
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=scrape_then_stop, daemon=True).start()
from exporter.cli import main
sys.exit(main(["--no-cache.dir", "serve", "--web.listen-address", f"127.0.0.1:{port}", "--path.rootfs", root,
               "--log.level", "error"]))
"""


def test_serve_without_a_web_config_carries_none_of_its_code(tmp_path_factory, tmp_path):
    """`serve` with no --web.config.file has no YAML, bcrypt, TLS or basic-auth code in it after a
    scrape (the issue's "no import the scrape does not need"; ~1.5 MiB of the resident set).
    Checked in the serving interpreter itself, just before SIGTERM."""
    from testkit import free_port
    import sys as _sys
    out = tmp_path / "modules"
    done = subprocess.run([_sys.executable, "-c", SERVE_AND_LIST_MODULES, str(free_port()),
                           str(example_root(tmp_path_factory, reboot_trap)), str(out)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(out.read_text().split())
    assert "exporter.web.server" in loaded and "prometheus_client" in loaded
    unwanted = {"yaml", "bcrypt", "exporter.web.basic_auth", "exporter.web.config_file", "exporter.web.tls"}
    assert loaded & unwanted == set()
