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

The collect behind it is one single-flight host scrape (exporter/scrape/scraper.py); renders of
one kind are shared the same way (``SharedRenders``); the caller (server.py) decides how many
kinds render at once.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

# Vary: a cache between Prometheus and the exporter must not hand a gzipped or OpenMetrics body
# to a client that asked for neither
VARY = ("Vary", "Accept, Accept-Encoding")

Response = tuple[list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class Kind:
    """What a request asks for, as far as its body goes: two requests of one kind get equal
    bodies from one scrape."""

    content_type: str
    names: tuple[str, ...] | None
    gzip: bool
    encoder: Callable[[CollectorRegistry], bytes] = field(compare=False)


def kind_of(environ: Mapping[str, Any]) -> Kind:
    encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT") or "")
    names = parse_qs(environ.get("QUERY_STRING") or "").get("name[]")
    return Kind(content_type, tuple(names) if names else None, gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""),
                encoder)


def render(registry: CollectorRegistry, kind: Kind) -> Response:
    """The headers (Content-Type, Vary, Content-Encoding) and body for one kind of request."""
    body = kind.encoder(registry.restricted_registry(list(kind.names)) if kind.names else registry)
    headers = [("Content-Type", kind.content_type), VARY]
    if kind.gzip:
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return headers, body


class RenderTimeout(Exception):
    """No render of this kind finished within the wait."""


@dataclass
class _Flights:
    running: bool = False
    started: int = 0
    finished: int = 0
    waiting: int = 0
    last: tuple[Response | None, BaseException | None] = (None, None)


class SharedRenders:
    """Renders shared as scrapes are (exporter/scrape/scraper.py): a request that arrives while
    a render of its kind runs waits for the next one, which starts when that one ends and
    answers every request waiting for it.  So each gets a body rendered after it asked, and 50
    concurrent scrapers cost two renders and two bodies, not fifty of each.  A kind's state
    goes when no request is running or waiting for it (``name[]`` lists are the client's to
    choose: they must not pile up)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._kinds: dict[Hashable, _Flights] = {}

    def get(self, key: Hashable, make: Callable[[], Response], timeout: float) -> Response:
        deadline = time.monotonic() + timeout
        with self._cond:
            flights = self._kinds.setdefault(key, _Flights())
            wanted = flights.started + 1
            flights.waiting += 1
            try:
                while True:
                    if flights.finished >= wanted:
                        return _outcome(flights.last)
                    if not flights.running:
                        flights.running = True
                        flights.started += 1
                        number = flights.started
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RenderTimeout(f"no render within {timeout:g} s")
                    self._cond.wait(left)
            finally:
                flights.waiting -= 1
                self._forget_if_idle(key, flights)
        outcome: tuple[Response | None, BaseException | None] = (None, None)
        try:
            outcome = (make(), None)
        except Exception as exc:  # noqa: BLE001 - handed to every request of this render
            outcome = (None, exc)
        with self._cond:
            flights.running = False
            flights.finished = number
            flights.last = outcome
            self._forget_if_idle(key, flights)
            self._cond.notify_all()
        return _outcome(outcome)

    def _forget_if_idle(self, key: Hashable, flights: _Flights) -> None:
        if not flights.running and flights.waiting == 0 and self._kinds.get(key) is flights:
            del self._kinds[key]

    def __len__(self) -> int:
        return len(self._kinds)


def _outcome(outcome: tuple[Response | None, BaseException | None]) -> Response:
    response, error = outcome
    if error is not None:
        raise error
    assert response is not None
    return response
