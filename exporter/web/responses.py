"""Every response the exporter writes goes through ``respond``, so HEAD is answered alike.

HEAD gets the headers GET would get, Content-Length included (RFC 9110 9.3.2: the length of
the body a GET would have sent), and no body.  ``plain`` is the one short text answer for every
status that is not a page or metrics: 401, 404, 405, 429, 500, 503; a client never sees more
than its one line (no traceback, no listing).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

StartResponse = Callable[..., object]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]
Headers = Sequence[tuple[str, str]]


def respond(environ: Mapping[str, Any], start_response: StartResponse, status: str, headers: Headers,
            body: bytes) -> list[bytes]:
    """Send ``body`` with its Content-Length; for HEAD, the same headers and no body."""
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]


def plain(environ: Mapping[str, Any], start_response: StartResponse, status: str, text: str,
          headers: Headers = ()) -> list[bytes]:
    """A one-line text/plain answer, e.g. ``plain(env, sr, "404 Not Found", "not found\\n")``."""
    return respond(environ, start_response, status, [("Content-Type", "text/plain; charset=utf-8"), *headers],
                   text.encode())
