"""/metrics as client_python serves it, over real HTTP: OpenMetrics when asked, gzip when
accepted, ``name[]`` filtering; the bodies are read back with client_python's own parsers."""

from __future__ import annotations

import gzip
import re

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from example_hosts import many_problems
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.web.server import App, build_registry
from test_web_responses import serve  # noqa: F401 - the fixture

# what Debian 12's Prometheus (2.42) sends with every scrape (scrape/scrape.go's acceptHeader)
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# values that legitimately differ between two scrapes of an unchanged host
VOLATILE = re.compile(r"^(process_|python_|dkms_scrape_collector_duration_seconds|dkms_exporter_file_cache_|"
                      r"dkms_kernel_initramfs_listing_duration_seconds|dkms_boot_(free|size)_bytes)")


def samples(families) -> set[tuple]:
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for f in families for s in f.samples if not VOLATILE.match(s.name)}


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> App:
    root = tmp_path_factory.mktemp("exposition") / "host"
    many_problems(root)
    return App(build_registry(Scraper(HostFS(root), Config()))[0])


@pytest.fixture
def served(serve, app):  # noqa: F811
    return serve(app)


def test_plain_get_is_the_classic_text_format(served):
    status, headers, body = served.request("GET", "/metrics")
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in headers and "Accept-Encoding" in headers["vary"]
    assert len(samples(text_families(body.decode()))) > 100


@pytest.mark.parametrize("accept", [OPENMETRICS, PROMETHEUS_ACCEPT])
def test_openmetrics_when_asked_with_the_same_samples(served, accept):
    _, _, text = served.request("GET", "/metrics")
    status, headers, body = served.request("GET", "/metrics", {"Accept": accept})
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n") and not text.endswith(b"# EOF\n")
    om = list(openmetrics_families(body.decode()))            # the strict parser: raises on a bad line
    assert samples(om) == samples(text_families(text.decode()))
    types = {f.name: f.type for f in om}
    assert types["dkms_next_boot_ready"] == "gauge" and "counter" in types.values()


def test_gzip_when_accepted(served):
    _, _, text = served.request("GET", "/metrics")
    status, headers, body = served.request("GET", "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(body) < len(text) / 3
    plain = gzip.decompress(body).decode()
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert samples(text_families(plain)) == samples(text_families(text.decode()))
    status, head_headers, head_body = served.head("/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and head_body == b"" and head_headers["content-encoding"] == "gzip"
    # both at once, as Prometheus asks
    _, headers, body = served.request("GET", "/metrics", {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body).endswith(b"# EOF\n")
    _, headers, _ = served.request("GET", "/metrics", {"Accept-Encoding": "identity"})
    assert "content-encoding" not in headers


def test_name_filter_returns_only_those_families(served):
    _, _, body = served.request("GET", "/metrics?name[]=dkms_next_boot_ready")
    assert [(f.name, len(f.samples)) for f in text_families(body.decode())] == [("dkms_next_boot_ready", 1)]
    _, _, body = served.request("GET", "/metrics?name%5B%5D=dkms_next_boot_ready&name%5B%5D=process_open_fds",
                                {"Accept": OPENMETRICS})
    assert sorted(f.name for f in openmetrics_families(body.decode())) == ["dkms_next_boot_ready", "process_open_fds"]
    _, _, body = served.request("GET", "/metrics?name[]=no_such_metric")
    assert body == b""
