"""/metrics as client_python serves it, over real HTTP: OpenMetrics when asked, gzip when
accepted, ``name[]`` filtering; the bodies are read back with client_python's own parsers."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families
from testkit import http_request, raw_head, serving

from example_hosts import many_problems
from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.output.metrics.registry import FilteringRegistry, collector_registry
from exporter.web.server import App, build_registry, make_http_server

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
def port(app) -> Iterator[int]:
    """The app behind the exporter's own HTTP server on 127.0.0.1, in this process."""
    with serving(make_http_server("127.0.0.1:0", app)) as port:
        yield port


def test_plain_get_is_the_classic_text_format(port):
    status, headers, body = http_request(port)
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in headers and "Accept-Encoding" in headers["vary"]
    assert len(samples(text_families(body.decode()))) > 100


@pytest.mark.parametrize("accept", [OPENMETRICS, PROMETHEUS_ACCEPT])
def test_openmetrics_when_asked_with_the_same_samples(port, accept):
    _, _, text = http_request(port)
    status, headers, body = http_request(port, "/metrics", headers={"Accept": accept})
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n") and not text.endswith(b"# EOF\n")
    om = list(openmetrics_families(body.decode()))            # the strict parser: raises on a bad line
    assert samples(om) == samples(text_families(text.decode()))
    types = {f.name: f.type for f in om}
    assert types["dkms_next_boot_ready"] == "gauge" and "counter" in types.values()


def test_gzip_when_accepted(port):
    _, _, text = http_request(port)
    status, headers, body = http_request(port, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(body) < len(text) / 3
    plain = gzip.decompress(body).decode()
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert samples(text_families(plain)) == samples(text_families(text.decode()))
    status, head_headers, head_body = raw_head(port, "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and head_body == b"" and head_headers["content-encoding"] == "gzip"
    # both at once, as Prometheus asks
    _, headers, body = http_request(port, headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body).endswith(b"# EOF\n")
    _, headers, _ = http_request(port, "/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in headers


def test_name_filter_returns_only_those_families(port):
    _, _, body = http_request(port, "/metrics?name[]=dkms_next_boot_ready")
    assert [(f.name, len(f.samples)) for f in text_families(body.decode())] == [("dkms_next_boot_ready", 1)]
    _, _, body = http_request(port, "/metrics?name%5B%5D=dkms_next_boot_ready&name%5B%5D=process_open_fds",
                              headers={"Accept": OPENMETRICS})
    assert sorted(f.name for f in openmetrics_families(body.decode())) == ["dkms_next_boot_ready", "process_open_fds"]
    _, _, body = http_request(port, "/metrics?name[]=no_such_metric")
    assert body == b""


@pytest.mark.parametrize("names", [
    ["dkms_next_boot_ready"],
    ["dkms_module_problem", "process_open_fds"],
    ["dkms_module_state", "dkms_exporter_build_info", "no_such_metric"],
    ["no_such_metric"],
])
@pytest.mark.parametrize("encode", [generate_latest, openmetrics_latest], ids=["text", "openmetrics"])
def test_name_filter_fallback_for_old_client_python_matches_client_python(app, names, encode):
    """Debian 12's python3-prometheus-client (0.16) has no support_collectors_without_names; the
    fallback registry (FilteringRegistry) must answer name[] exactly as client_python >= 0.25 does."""
    ours = FilteringRegistry(auto_describe=False)
    for collector in list(app.registry._collector_to_names):
        ours.register(collector)
    theirs = encode(app.registry.restricted_registry(names)).decode()
    mine = encode(ours.restricted_registry(names)).decode()
    assert samples(text_families(mine) if encode is generate_latest else openmetrics_families(mine)) == \
        samples(text_families(theirs) if encode is generate_latest else openmetrics_families(theirs))
    # the same HELP and TYPE lines too; only the order of families may differ (client_python
    # yields collectors that described their names first)
    assert sorted(line for line in mine.splitlines() if line.startswith("#")) == \
        sorted(line for line in theirs.splitlines() if line.startswith("#"))


def test_collector_registry_uses_client_pythons_own_filter_when_it_can():
    import prometheus_client.registry as registry
    expected = FilteringRegistry if "support_collectors_without_names" not in \
        registry.CollectorRegistry.__init__.__code__.co_varnames else registry.CollectorRegistry
    assert type(collector_registry()) is expected
