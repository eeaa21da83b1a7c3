"""`serve`: the HTTP endpoint.  The host's report at /, metrics at the telemetry path, the
runbooks at /runbooks (docs/runbooks.md, rendered by alerts/generate.py into package data).

wsgiref with a thread per request.  Concurrent scrapes queue: they share the single-flight
host scrape (exporter/scrape/scraper.py) and render their responses RENDER_SLOTS at a time, so
fifty scrapers at once all get an answer at the cost of about one scrape.  Only beyond
MAX_QUEUED_REQUESTS waiting at once (a storm, not a fleet of Prometheus servers) does a
scrape get a 503, which bounds the threads and memory a storm can take.  The body is
client_python's exposition (exposition.py: OpenMetrics when asked, gzip, ``name[]``); with a
web config, basic auth (basic_auth.py) and TLS (tls.py) wrap it.  Nothing but a plain message
ever reaches a client on error (responses.py).
"""

from __future__ import annotations

import html
import logging
from importlib import resources
import signal
import socket
import ssl
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from .. import __version__
from ..output.metrics import DkmsCollector, registry_for
from ..output.report import render_report
from ..scrape import Scraper
from . import DEFAULT_LISTEN, DEFAULT_PORT  # noqa: F401 - defined there for the CLI
from .exposition import Kind, RenderTimeout, Response, SharedRenders, kind_of, render
from .responses import StartResponse, plain, respond

if TYPE_CHECKING:
    from .config_file import WebConfigProvider

log = logging.getLogger("dkms_exporter")

HTML = [("Content-Type", "text/html; charset=utf-8")]
RUNBOOKS_PATH = "/runbooks"
MAX_QUEUED_REQUESTS = 256      # metrics requests admitted at once (rendering or waiting to)
RENDER_SLOTS = 2               # of those, rendering at once (CPU-bound: more would only contend)
REQUEST_TIMEOUT_SECONDS = 60
SHUTDOWN_GRACE_SECONDS = 10    # after SIGTERM, for requests already accepted to be answered


def build_registry(scraper: Scraper, process: bool = True) -> tuple[CollectorRegistry, DkmsCollector]:
    """Our collector (and the process metrics): no names up front, since they depend on the
    host, so ``name[]`` filtering needs support_collectors_without_names."""
    registry, collector = registry_for(scraper)
    if process:
        ProcessCollector(registry=registry)
    return registry, collector


class App:
    """The WSGI application: routes, a concurrency cap, and no tracebacks to clients."""

    def __init__(self, registry: CollectorRegistry, telemetry_path: str = "/metrics",
                 scraper: Scraper | None = None) -> None:
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.scraper = scraper             # the landing page's report; None: links only
        self._admitted = threading.BoundedSemaphore(MAX_QUEUED_REQUESTS)
        self._render = threading.BoundedSemaphore(RENDER_SLOTS)
        self._renders = SharedRenders()

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return plain(environ, start_response, "405 Method Not Allowed", "method not allowed\n",
                         [("Allow", "GET, HEAD")])
        if path == self.telemetry_path:
            return self._metrics(environ, start_response)
        if path == "/":
            return self._landing(environ, start_response)
        if path == RUNBOOKS_PATH:
            return respond(environ, start_response, "200 OK", HTML, runbooks_page())
        return plain(environ, start_response, "404 Not Found", "not found\n")

    def _metrics(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if not self._admitted.acquire(blocking=False):
            return plain(environ, start_response, "503 Service Unavailable", "too many concurrent scrapes\n")
        try:
            kind = kind_of(environ)
            headers, body = self._renders.get(kind, lambda: self._render_one(kind), REQUEST_TIMEOUT_SECONDS)
        except RenderTimeout:
            return plain(environ, start_response, "503 Service Unavailable", "scrape queue timed out\n")
        except Exception:  # noqa: BLE001
            log.exception("scrape failed")
            return plain(environ, start_response, "500 Internal Server Error", "scrape failed; see the exporter log\n")
        finally:
            self._admitted.release()
        return respond(environ, start_response, "200 OK", headers, body)

    def _render_one(self, kind: Kind) -> Response:
        """One render, in one of RENDER_SLOTS (renders of different kinds still contend)."""
        if not self._render.acquire(timeout=REQUEST_TIMEOUT_SECONDS):
            raise RenderTimeout("no render slot")
        try:
            return render(self.registry, kind)
        finally:
            self._render.release()

    def _landing(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """The host's report (one scrape, shared with /metrics' single flight), admitted like a
        scrape so a page storm cannot take more threads than a scrape storm."""
        if self.scraper is None:
            return respond(environ, start_response, "200 OK", HTML, _landing(self.telemetry_path).encode())
        if not self._admitted.acquire(blocking=False):
            return plain(environ, start_response, "503 Service Unavailable", "too many concurrent requests\n")
        try:
            body = render_report(self.scraper.scrape(), self.telemetry_path, RUNBOOKS_PATH).encode()
        except Exception:  # noqa: BLE001
            log.exception("report failed")
            return plain(environ, start_response, "500 Internal Server Error", "scrape failed; see the exporter log\n")
        finally:
            self._admitted.release()
        return respond(environ, start_response, "200 OK", HTML, body)


def runbooks_page() -> bytes:
    """exporter/web/runbooks.html, shipped as package data (read per request: it is small,
    and a cached copy would need invalidating for nothing)."""
    return resources.files(__package__).joinpath("runbooks.html").read_bytes()


def _landing(telemetry_path: str) -> str:
    p = html.escape(telemetry_path)
    return (f"<!DOCTYPE html><html><head><title>dkms-exporter</title></head><body>"
            f"<h1>dkms-exporter {html.escape(__version__)}</h1>"
            f"<p>Will every out-of-tree kernel module work on the kernel this host boots next?</p>"
            f"<ul><li><a href=\"{p}\">Metrics</a></li><li><a href=\"{RUNBOOKS_PATH}\">Runbooks</a></li></ul>"
            f"</body></html>\n")


class _GatherWriter:
    """The handler's wfile: what is written is kept (references, no copies) and leaves in one
    sendmsg when flushed.  wsgiref writes the status line, Date, Server, the headers and the body
    separately: on socketserver's unbuffered writer that was five small TCP sends a response,
    each exposed to Nagle and delayed ACKs; a buffered writer (wbufsize) fixed that for bodies
    up to its size, but each open connection then held a buffer of that size (64 KiB: 4 MiB of
    the exporter's peak under 50 concurrent scrapers).  wsgiref flushes after the body, and
    socketserver's finish() flushes whatever else was written (error pages)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._parts: list[memoryview] = []
        self.closed = False

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(memoryview(data))
        return len(data)

    def flush(self) -> None:
        parts, self._parts = self._parts, []
        if parts and isinstance(self._sock, ssl.SSLSocket):   # no sendmsg there: one write, one record run
            self._sock.sendall(b"".join(parts))
            return
        while parts:
            sent = self._sock.sendmsg(parts)
            if not sent:
                raise ConnectionError("the socket took none of the response")
            while parts and sent >= len(parts[0]):
                sent -= len(parts[0])
                parts.pop(0)
            if parts and sent:
                parts[0] = parts[0][sent:]

    def close(self) -> None:
        self.closed = True
        self._parts = []


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT_SECONDS

    def setup(self) -> None:
        super().setup()
        self.wfile = _GatherWriter(self.connection)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("http request", extra={"client": self.address_string(), "request": format % args})


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128   # listen() backlog; socketserver's 5 drops SYNs from a burst of scrapers

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._active = 0                     # requests accepted and not yet answered
        self._idle = threading.Condition()
        super().__init__(*args, **kwargs)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._idle:  # counted here, in the accepting thread, so no request slips past wait_idle
            self._active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every accepted request was answered (handler threads are daemons: the
        process exiting would cut their responses short)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)


class _Server6(_Server):
    address_family = socket.AF_INET6


def parse_listen(address: str) -> tuple[str, int]:
    """':10140', '127.0.0.1:10140', '[::1]:10140' -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5 or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {address!r}: expected [host]:port")
    return host.strip("[]"), int(port)


def make_http_server(address: str, app: App, web_config: WebConfigProvider | None = None) -> WSGIServer:
    """The HTTP server; with a web config, behind its basic auth and, if it says so, TLS.  Their
    code (and YAML, bcrypt) is imported only then: a plain exporter carries none of it (~1.5 MiB)."""
    host, port = parse_listen(address)
    cls: type[WSGIServer] = _Server6 if ":" in host else _Server
    wsgi_app: Callable[..., Iterable[bytes]] = app
    if web_config is not None:
        from .basic_auth import BasicAuthMiddleware
        from .tls import tls_server_class
        wsgi_app = BasicAuthMiddleware(app, web_config)
        if web_config().tls is not None:
            cls = tls_server_class(cls, web_config)
    return make_server(host or "", port, wsgi_app, server_class=cls, handler_class=_Handler)


def serve(server: WSGIServer) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests and return."""
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    host, port = server.server_address[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
    log.info("listening on %s", address, extra={"address": address, "tls": hasattr(server, "contexts")})
    server.serve_forever(poll_interval=0.5)
    wait_idle = getattr(server, "wait_idle", None)
    if wait_idle is not None and not wait_idle(SHUTDOWN_GRACE_SECONDS):
        log.warning("shutting down with requests still unanswered", extra={"grace_seconds": SHUTDOWN_GRACE_SECONDS})
    server.server_close()
