"""Log lines in logfmt, the way node_exporter and Prometheus write theirs (Go kit's logfmt logger):

    ts=2026-12-02T05:40:10.123Z caller=web/server.py:201 level=info msg="listening on 127.0.0.1:10140" address=127.0.0.1:10140

- ``ts`` RFC 3339 in UTC with milliseconds; ``caller`` the file (under exporter/) and line of the
  log call; ``level`` one of debug, info, warn, error; ``msg`` the message;
- then the record's own fields, passed as ``log.warning("cannot read a host file",
  extra={"collector": "dkms", "path": path, "err": message})``, in that order; a logged
  exception adds ``err`` (its type and message) and ``trace`` (the traceback);
- a value is quoted when it is empty or holds a space, '=', '"', a control or another
  non-printable character; inside quotes ``\\\\ \\" \\n \\r \\t`` and ``\\uXXXX`` are the only
  escapes, the set go-logfmt's decoder reads, so one record is always one line;
- text that is not UTF-8 (a file name's bytes, kept by Python as surrogate escapes) shows as
  ``\\xNN``, the bytes still visible and the line still valid UTF-8.
"""

from __future__ import annotations

import datetime
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
          logging.CRITICAL: "error"}
_PACKAGE = Path(__file__).resolve().parent
# what every LogRecord has: anything else on a record came from ``extra=`` and is a field
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class LogfmtFormatter(logging.Formatter):
    """One logfmt line per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: list[tuple[str, Any]] = [
            ("ts", _timestamp(record)),
            ("caller", f"{_caller(record.pathname)}:{record.lineno}"),
            ("level", LEVELS.get(record.levelno, record.levelname.lower())),
            ("msg", record.getMessage()),
        ]
        fields += [(k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES]
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if not any(k == "err" for k, _ in fields):
                fields.append(("err", f"{type(exc).__name__}: {exc}"))
            fields.append(("trace", self.formatException(record.exc_info)))
        if record.stack_info:
            fields.append(("stack", record.stack_info))
        return " ".join(f"{_key(k)}={value(v)}" for k, v in fields)


def value(v: Any) -> str:
    """One logfmt value: bare when it can be, else quoted with go-logfmt's escapes."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes):
        text = v.decode("utf-8", "backslashreplace")
    else:
        text = _visible(str(v))
    if text and text != "null" and not any(_needs_quotes(c) for c in text):
        return text
    return '"' + "".join(_escape(c) for c in text) + '"'


def configure(level: int, stream: TextIO | None = None) -> None:
    """Every log record of the process, ours and libraries', as logfmt on ``stream`` (stderr).

    Like logging.basicConfig, nothing changes when the root logger already has a handler (an
    embedding program's, or pytest's)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    logging.basicConfig(level=level, handlers=[handler])


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"


def _caller(pathname: str) -> str:
    """'web/server.py' for exporter/web/server.py: base names repeat across the layers."""
    path = Path(pathname)
    try:
        return path.resolve().relative_to(_PACKAGE).as_posix()
    except (ValueError, OSError):
        return path.name


def _key(k: str) -> str:
    """Keys are our identifiers; anything a logfmt key cannot hold becomes '_'."""
    return "".join("_" if _needs_quotes(c) or c == "\\" else c for c in _visible(k)) or "_"


def _visible(text: str) -> str:
    """Undecodable bytes (surrogate escapes) as \\xNN text; any other lone surrogate as \\uXXXX."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    return text.encode("utf-8", "surrogateescape" if _only_byte_escapes(text) else "backslashreplace") \
        .decode("utf-8", "backslashreplace")


def _only_byte_escapes(text: str) -> bool:
    return all(not "\ud800" <= c <= "\udfff" or "\udc80" <= c <= "\udcff" for c in text)


def _needs_quotes(c: str) -> bool:
    return c <= " " or c in '="' or c == "\ufffd" or not c.isprintable()


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c.isprintable() or c == " ":
        return c
    code = ord(c)
    if code > 0xFFFF:                   # JSON's surrogate pair: what go-logfmt's \u decoding reads
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"
