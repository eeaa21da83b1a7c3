"""The HTTP side of `serve`.

server.py      routes, admission control, the HTTP server, graceful shutdown
exposition.py  a /metrics body from client_python (OpenMetrics, gzip, name[])
responses.py   the one responder: every status and page, HEAD alike
config_file.py --web.config.file: parse, validate, re-read when it changes
tls.py         tls_server_config -> SSL context; the TLS server, SAN checks, handshake limits
basic_auth.py  basic auth, rate limit and extra headers as WSGI middleware
errors.py      WebConfigError

The defaults live here, so that the command line can name them without importing the server
(and with it TLS, basic auth and the HTTP stack) for `metrics`, `textfile` and `check`.
"""

DEFAULT_PORT = 10140
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
