"""The one error of the web config, shared by the modules that read its parts."""


class WebConfigError(ValueError):
    """The web configuration is unusable: refused at start, answered with 500 while serving
    (and with a failed handshake for TLS).  The message names the file and the key."""
