"""The HTTP side of `serve`.

server.py      routes, admission control, the HTTP server, graceful shutdown
exposition.py  a /metrics body from client_python (OpenMetrics, gzip, name[])
responses.py   the one responder: every status and page, HEAD alike
config_file.py --web.config.file: parse, validate, re-read when it changes
tls.py         tls_server_config -> SSL context; the TLS server, SAN checks, handshake limits
basic_auth.py  basic auth, rate limit and extra headers as WSGI middleware
errors.py      WebConfigError
"""
