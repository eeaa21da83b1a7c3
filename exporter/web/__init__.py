"""The HTTP side of `serve`: server, routes, web config (TLS, basic auth)."""
