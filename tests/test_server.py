"""`serve` for real on loopback: landing page, metrics, errors, concurrency, SIGTERM."""

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from example_hosts import reboot_trap


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv") / "host"
    reboot_trap(root)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--web.listen-address", f"127.0.0.1:{port}",
                             "--path.rootfs", str(root)], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("serve did not start: " + proc.stderr.read())
    yield url, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def get(url: str) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def test_landing_page_links_metrics(server):
    url, _ = server
    code, body, headers = get(url + "/")
    assert code == 200 and 'href="/metrics"' in body and headers["Content-Type"].startswith("text/html")


def test_metrics(server):
    code, body, headers = get(server[0] + "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "dkms_next_boot_ready 0.0" in body
    assert 'dkms_module_problem{dkms="acpi-call/1.2.2",kernel="6.1.0-28-amd64",module="acpi_call",reason="not_built"} 1.0' in body
    assert "process_resident_memory_bytes" in body


def test_unknown_path_and_method(server):
    url, _ = server
    code, body, _ = get(url + "/etc/passwd")
    assert code == 404 and body == "not found\n"
    req = urllib.request.Request(url + "/metrics", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405


def test_concurrent_scrapes_all_succeed_with_identical_answers(server):
    url, _ = server

    def scrape(_):
        code, body, _ = get(url + "/metrics")
        return code, sorted(l for l in body.splitlines() if l.startswith("dkms_module_problem"))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(scrape, range(32)))
    assert all(code == 200 for code, _ in results)
    assert len({tuple(lines) for _, lines in results}) == 1


def test_sigterm_shuts_down_cleanly(server):
    _, proc = server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_bad_listen_address_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "exporter", "serve", "--web.listen-address", "nonsense",
                          "--path.rootfs", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "cannot listen on nonsense" in out.stderr and "Traceback" not in out.stderr
