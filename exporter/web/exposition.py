"""A /metrics response as client_python's ``make_wsgi_app`` makes it, from client_python's parts.

- the format is negotiated from ``Accept`` by ``exposition.choose_encoder``: OpenMetrics when
  the client lists ``application/openmetrics-text`` (Prometheus does, first, by default), else
  the classic text format 0.0.4 (or 1.0.0 when asked for ``text/plain; version=1.0.0``);
- ``?name[]=a&name[]=b`` keeps only those samples, through ``CollectorRegistry.restricted_registry``
  (whose collectors say no names up front, so the registry must be built with
  ``support_collectors_without_names=True``: client_python 0.25 or later; on older ones, such as
  Debian 12's 0.16, output/metrics/registry.py's ``collector_registry`` gives a registry that
  filters the same way);
- the body is gzipped when ``exposition.gzip_accepted`` finds gzip in ``Accept-Encoding``.

The collect behind it is one single-flight host scrape (exporter/scrape/scraper.py); the caller
(server.py) decides how many render at once.
"""

from __future__ import annotations

import gzip
from typing import Any, Mapping
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

# Vary: a cache between Prometheus and the exporter must not hand a gzipped or OpenMetrics body
# to a client that asked for neither
VARY = ("Vary", "Accept, Accept-Encoding")


def metrics_response(registry: CollectorRegistry, environ: Mapping[str, Any]) -> tuple[list[tuple[str, str]], bytes]:
    """The headers (Content-Type, Vary, Content-Encoding) and body for this request's scrape."""
    encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT") or "")
    names = parse_qs(environ.get("QUERY_STRING") or "").get("name[]")
    body = encoder(registry.restricted_registry(names) if names else registry)
    headers = [("Content-Type", content_type), VARY]
    if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return headers, body
