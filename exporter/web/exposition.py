"""A /metrics response as client_python's ``make_wsgi_app`` makes it, from client_python's parts.

- the format is negotiated from ``Accept`` by ``exposition.choose_encoder``: OpenMetrics when
  the client lists ``application/openmetrics-text`` (Prometheus does, first, by default), else
  the classic text format 0.0.4 (or 1.0.0 when asked for ``text/plain; version=1.0.0``);
- ``?name[]=a&name[]=b`` keeps only those samples, through ``CollectorRegistry.restricted_registry``
  (whose collectors say no names up front, so the registry must be built with
  ``support_collectors_without_names=True``: client_python 0.25 or later; on older ones, such as
  Debian 12's 0.16, ``collector_registry`` gives a registry that filters the same way);
- the body is gzipped when ``exposition.gzip_accepted`` finds gzip in ``Accept-Encoding``.

The collect behind it is one single-flight host scrape (exporter/scrape/scraper.py); the caller
(server.py) decides how many render at once.
"""

from __future__ import annotations

import gzip
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted

# Vary: a cache between Prometheus and the exporter must not hand a gzipped or OpenMetrics body
# to a client that asked for neither
VARY = ("Vary", "Accept, Accept-Encoding")


def collector_registry() -> CollectorRegistry:
    """A registry whose ``restricted_registry`` (``name[]``) also sees collectors that describe no
    names up front, as ours cannot (the families depend on the host).

    client_python >= 0.25 does that itself (``support_collectors_without_names``). Older ones
    (Debian 12's python3-prometheus-client is 0.16) restrict only to collectors that described
    their names, so ``name[]`` would answer nothing: there :class:`FilteringRegistry` applies the
    same sample-name filter to every collector."""
    try:
        return CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    except TypeError:
        return FilteringRegistry(auto_describe=False)


class FilteringRegistry(CollectorRegistry):
    """client_python < 0.25: ``restricted_registry`` filters the samples of every collector."""

    def restricted_registry(self, names: Any) -> "RestrictedCollect":  # type: ignore[override]
        return RestrictedCollect(self, frozenset(names))


class RestrictedCollect:
    """What client_python >= 0.25's RestrictedRegistry yields for collectors without names: each
    family with only the samples whose name was asked for; families left empty are dropped."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            kept = [s for s in metric.samples if s.name in self._names]
            if kept:
                family = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                family.samples = kept
                yield family


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
