"""Every plain answer of `serve` (404, 405, 401, 429, 503, 500) and every page, over real HTTP:
HEAD gets GET's headers, Content-Length included, and no body."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from testkit import http_request, raw_head, require_tool, serving

from example_hosts import reboot_trap
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.web import server as server_mod
from exporter.web.basic_auth import BasicAuthMiddleware
from exporter.web.config_file import WebConfigProvider
from exporter.web.server import App, build_registry, make_http_server


@pytest.fixture
def serve() -> Iterator[Callable[[Any], int]]:
    """serve(app): a WSGI app behind the exporter's own HTTP server on 127.0.0.1, in this
    process; returns its port; shut down after the test."""
    with contextlib.ExitStack() as started:
        yield lambda app: started.enter_context(serving(make_http_server("127.0.0.1:0", app)))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("responses") / "host"
    reboot_trap(root)
    return build_registry(Scraper(HostFS(root), Config()), process=False)[0]


def assert_head_matches_get(port: int, path: str, status: int, headers: dict[str, str] | None = None,
                            slack: int = 0) -> bytes:
    """``slack``: how many bytes two renders may differ by (a scrape's durations are its own)."""
    got_status, got_headers, body = http_request(port, path, headers=headers)
    head_status, head_headers, head_body = raw_head(port, path, headers)
    assert got_status == head_status == status
    assert head_body == b"" and body != b""
    assert int(got_headers["content-length"]) == len(body)
    assert abs(int(head_headers["content-length"]) - len(body)) <= slack
    assert head_headers["content-type"] == got_headers["content-type"]
    return body


def test_pages_and_not_found(serve, registry):
    port = serve(App(registry))
    assert b"dkms_next_boot_ready 0.0" in assert_head_matches_get(port, "/metrics", 200, slack=64)
    assert b'href="/metrics"' in assert_head_matches_get(port, "/", 200)
    assert assert_head_matches_get(port, "/nope", 404) == b"not found\n"


def test_method_not_allowed_names_get_and_head(serve, registry):
    status, headers, body = http_request(serve(App(registry)), "/metrics", method="DELETE")
    assert status == 405 and headers["allow"] == "GET, HEAD" and body == b"method not allowed\n"
    assert int(headers["content-length"]) == len(body)


def test_over_admission_is_503(serve, registry, monkeypatch):
    monkeypatch.setattr(server_mod, "MAX_QUEUED_REQUESTS", 0)     # every scrape is one too many
    body = assert_head_matches_get(serve(App(registry)), "/metrics", 503)
    assert body == b"too many concurrent scrapes\n"


def test_failed_scrape_is_500_without_a_traceback(serve):
    class Broken:
        def collect(self):
            raise RuntimeError("boom in collect")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Broken())
    body = assert_head_matches_get(serve(App(registry)), "/metrics", 500)
    assert body == b"scrape failed; see the exporter log\n"


@pytest.fixture(scope="module")
def alice_hash() -> str:
    line = subprocess.run([require_tool("htpasswd"), "-nbBC", "4", "alice", "secret"], check=True,
                          capture_output=True, text=True).stdout.strip()
    return line.partition(":")[2]


def test_unauthorized_and_rate_limited(serve, registry, alice_hash, tmp_path: Path):
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  alice: {alice_hash}\n"
                                      "rate_limit:\n  interval: 1h\n  burst: 4\n")
    port = serve(BasicAuthMiddleware(App(registry), WebConfigProvider(tmp_path / "web.yml")))
    body = assert_head_matches_get(port, "/metrics", 401)          # two of the four tokens
    assert body == b"Unauthorized\n"
    assert_head_matches_get(port, "/", 401)                        # the last two
    assert assert_head_matches_get(port, "/metrics", 429) == b"Too Many Requests\n"
