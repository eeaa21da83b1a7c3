"""The helpers every test shares, in one place: import them with ``from testkit import ...``.

- the quick tier's guard: `slow_artifact` (what a test may not need in ``pytest --quick``);
- tools and scrapes: `require_tool`, `scrape`, `cli`, `run_exporter`, `run_as_nobody`;
- fixture hosts: `two_kernels` (K1 running, K2 booted next), `example_root`;
- metrics text: `samples`, `by_collector`, `success_of`, `errors_of`, `failed_collectors`, `metrics_of`;
- the exporter on loopback: `Served` (`serve` in a subprocess on an ephemeral port),
  `serving` (an in-process server in a thread), `http_request`, `raw_head`, `free_port`,
  `listening_ports`;
- waiting: `wait_for`.

tests/conftest.py puts tests/ on sys.path, so this imports as ``testkit`` from any test file,
tests/realhost/ and tests/oracle/ included.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli import main
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scrape, Scraper
from example_hosts import NEW, OLD
from hostbuilder import Host

REPO = Path(__file__).resolve().parent.parent
K1, K2 = OLD, NEW   # two_kernels(): the running kernel, the one booted next (as in the example hosts)

Samples = dict[str, list[tuple[dict[str, str], float]]]


# --- the quick tier -------------------------------------------------------------------------

QUICK = False   # set by tests/conftest.py when pytest runs with --quick (scripts/test --quick)


def content_key(recipe: str, files: dict[str, bytes | str]) -> str:
    """The cache key of a package built from ``recipe`` (spec file, PKGBUILD) and its payload
    ``files`` (path -> content): the same inputs give the same key in every packaging helper."""
    import hashlib
    h = hashlib.sha256(recipe.encode())
    for path in sorted(files):
        content = files[path]
        h.update(path.encode() + b"\0" + (content if isinstance(content, bytes) else content.encode()) + b"\0")
    return h.hexdigest()[:24]


def slow_artifact(what: str) -> None:
    """Called by the helpers that build or fetch something slow (a real Debian kernel, the
    real-host trees, QEMU boots, a live Prometheus): in the quick tier, the test that reached
    it is not marked slow, so it fails saying so instead of making the tier slow."""
    if QUICK:
        pytest.fail(f"this test needs {what}, which the quick tier never builds: mark it "
                    f"@pytest.mark.slow (or realhost / oracle / live), see docs/testing.md", pytrace=False)


# --- tools, scrapes, the command line -------------------------------------------------------

def require_tool(name: str) -> str:
    """The path of a real tool the test compares against; a missing one fails, never skips."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/test installs it from .ci/apt-packages")
    return path


def scrape(root: Path, config: Config | None = None, **kw: Any) -> Scrape:
    """One scrape of the tree at root, in-process (kw go to HostFS: procfs=, sysfs=)."""
    return Scraper(HostFS(root, **kw), config or Config()).scrape()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`dkms-exporter ARGV` in-process: its exit code and what it printed on stdout."""
    code = main(list(argv))
    return code, capsys.readouterr().out


# the persistent cache (--cache.dir) is off in tests unless a test turns it on: a test's result
# must not depend on what an earlier run left in /var/cache/dkms-exporter
NO_CACHE = ("--no-cache.dir",)


def run_exporter(*argv: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """`python -m exporter ARGV` in a subprocess from the repository, output captured as text
    (kw go to subprocess.run: env=, preexec_fn=, ...)."""
    return subprocess.run([sys.executable, "-m", "exporter", *NO_CACHE, *argv], cwd=kw.pop("cwd", REPO),
                          capture_output=True, text=True, timeout=timeout, check=False, **kw)


def run_as_nobody(work: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m exporter ARGV` as uid and gid 65534 (setpriv): chmod 000 means nothing to
    root, so EACCES is only real this way.  The package is copied under `work` and everything
    under `work` is made readable to others, except the files a test made mode 0; `work` must
    be reachable by nobody (the `public_tmp` fixture: pytest's tmp_path is not)."""
    shutil.copytree(REPO / "exporter", work / "pkg" / "exporter", dirs_exist_ok=True)
    for p in [work, *work.rglob("*")]:
        if not p.is_symlink() and p.stat().st_mode & 0o777 != 0:
            os.chmod(p, p.stat().st_mode | 0o044 | (0o011 if p.is_dir() else 0))
    import prometheus_client
    site = Path(prometheus_client.__file__).parent.parent
    env = dict(os.environ, PYTHONPATH=f"{work / 'pkg'}{os.pathsep}{site}")
    return subprocess.run([require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "exporter", *NO_CACHE, *argv],
                          capture_output=True, text=True, env=env, cwd="/", timeout=timeout, check=False)


# --- fixture hosts --------------------------------------------------------------------------

def two_kernels(host: Host) -> Host:
    """The two-kernel host: K1 running, the newest K2 booted next, one DKMS module (acpi-call)
    built and installed for both, an initramfs each, Secure Boot on with the DKMS key enrolled
    and the module loaded: ready.  Fault tests break one thing in it and expect "unknown" or
    "not ready", so a pass is the fault's doing, not the fixture's."""
    host.kernel(K1, running=True)
    host.kernel(K2)
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    for k in (K1, K2):
        host.dkms_build("acpi-call", "1.2.2", k, dest=["acpi_call"])
    host.secure_boot(True)
    host.loaded(("acpi_call", "OE"))
    for k in (K1, K2):
        host.initramfs(k, ["e1000e"])
    host.grub()
    host.finish()
    return host


def realhost_scenarios() -> tuple[str, ...]:
    """The scenario names of tests/realhost/scenarios.sh's SCENARIOS array, read from the
    script so the real-host tests, the oracle and the builder agree on one list."""
    text = (REPO / "tests/realhost/scenarios.sh").read_text()
    m = re.search(r"^SCENARIOS=\(([^)]*)\)", text, re.MULTILINE)
    if m is None:
        raise RuntimeError("tests/realhost/scenarios.sh has no SCENARIOS=(...) array")
    return tuple(m[1].split())


def example_root(tmp_path_factory: pytest.TempPathFactory, build: Callable[[Path], Host]) -> Path:
    """One of example_hosts' builders (reboot_trap, healthy, many_problems) into a fresh
    temporary directory, for a module- or session-scoped fixture; returns its root."""
    root = tmp_path_factory.mktemp(build.__name__) / "host"
    build(root)
    return root


# --- metrics text ---------------------------------------------------------------------------

def samples(text: str) -> Samples:
    """Exposition text parsed by client_python's parser: sample name -> [(labels, value)], in
    the order served.  A sample name, so histograms give NAME_bucket, NAME_sum, NAME_count."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def by_collector(m: Samples, metric: str) -> dict[str, float]:
    """{collector: value} of a per-collector metric (dkms_scrape_collector_success, _errors, ...)."""
    return {labels["collector"]: value for labels, value in m[metric]}


def success_of(m: Samples, collector: str) -> float:
    """dkms_scrape_collector_success of one collector (KeyError when it did not run)."""
    return by_collector(m, "dkms_scrape_collector_success")[collector]


def errors_of(m: Samples, collector: str) -> float:
    """dkms_scrape_collector_errors of one collector (KeyError when it did not run)."""
    return by_collector(m, "dkms_scrape_collector_errors")[collector]


def failed_collectors(m: Samples) -> set[str]:
    """The collectors whose dkms_scrape_collector_success is 0."""
    return {c for c, v in by_collector(m, "dkms_scrape_collector_success").items() if v == 0}


def metrics_of(root: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> Samples:
    """`dkms-exporter metrics --path.rootfs ROOT FLAGS` in-process, which must exit 0, parsed."""
    code, out = cli(capsys, "metrics", "--path.rootfs", str(root), *flags)
    assert code == 0, out[-2000:]
    return samples(out)


# --- waiting --------------------------------------------------------------------------------

WAIT = 45.0   # seconds: wait_for's default bound


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT, every: float = 0.25) -> Any:
    """Calls probe until it returns something truthy and returns that; an OSError or ValueError
    counts as "not yet".  Fails naming `what` (and the last answer) after `timeout` seconds."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = probe()
        except (OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# --- the exporter on loopback ---------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a program that must be told its port before it
    starts (Prometheus, Alertmanager).  Another process may take it before that program binds
    it: for the exporter, use Served, which listens on port 0 and reads the port it got."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on: its socket inodes (/proc/PID/fd) found in the
    LISTEN rows of /proc/net/tcp and tcp6.  Independent of what or whether the process logs."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:        # 0A: TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Reply(NamedTuple):
    """An HTTP response: status, headers (names lower-cased), the body as bytes."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


def http_request(port: int, path: str = "/metrics", *, method: str = "GET", headers: dict[str, str] | None = None,
                 body: bytes | None = None, tls: ssl.SSLContext | None = None, timeout: float = 10) -> Reply:
    """One request to 127.0.0.1:port on a new connection (HTTPS with `tls`).  Any status is a
    Reply; a connection refused, reset or cut short raises (http.client.IncompleteRead for a
    body shorter than its headers promised), and the body is never decoded (gzip stays gzip)."""
    conn = (http.client.HTTPConnection("127.0.0.1", port, timeout=timeout) if tls is None
            else http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def raw_head(port: int, path: str = "/metrics", headers: dict[str, str] | None = None,
             timeout: float = 10) -> Reply:
    """HEAD to 127.0.0.1:port on a raw socket, read to EOF: http.client knows a HEAD response
    has no body and would hide one the server wrongly sends after the headers, so only this
    way can a test see it.  The Reply's body is every byte after the headers."""
    lines = [f"HEAD {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    return Reply(int(status_line.split()[1]),
                 {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}, body)


class Served:
    """`dkms-exporter serve` in a subprocess on 127.0.0.1, port 0: the port is the one the
    process really listens on (listening_ports), so no other process can take it in between
    and no log line is relied on.  Its stderr is collected in `log` as it comes.

        with Served(root, "--web.config.file", str(cfg)) as s:
            assert s.request("/metrics").status == 200
    """

    def __init__(self, rootfs: Path, *args: str, timeout: float = 20) -> None:
        self.argv = [sys.executable, "-m", "exporter", *NO_CACHE, "serve", "--path.rootfs", str(rootfs),
                     "--web.listen-address", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO)
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = self._wait_listening(timeout)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def _wait_listening(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"serve exited with {self.proc.returncode} before listening:\n{self.log_text}",
                            pytrace=False)
            with contextlib.suppress(OSError):     # /proc/PID/fd changes as we read it
                ports = listening_ports(self.proc.pid)
                if len(ports) == 1:
                    return ports.pop()
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"serve did not listen within {timeout:.0f}s:\n{self.log_text}", pytrace=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_text(self) -> str:
        return "".join(self.log)

    def request(self, path: str = "/metrics", **kw: Any) -> Reply:
        """http_request to this server (kw: method, headers, body, tls, timeout)."""
        return http_request(self.port, path, **kw)

    def wait(self, timeout: float) -> int:
        """Waits for the process to exit (after SIGTERM: self.proc.send_signal) and for its whole
        log; returns its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        """Kills it if still running (a graceful SIGTERM is a test's subject, not teardown's)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving(server: Any) -> Iterator[int]:
    """An in-process HTTP server (socketserver-style: serve_forever, shutdown, server_close),
    already bound, served from a daemon thread; yields its port; shut down and closed after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
