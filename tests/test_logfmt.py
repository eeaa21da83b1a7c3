"""Log lines are logfmt that go-logfmt (Go kit's decoder, built from Debian's package) reads back
to the values logged, however hostile: spaces, quotes, '=', newlines, control characters,
file names that are not UTF-8, empty values."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from gotools import go_program
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit import REPO, Served, wait_for

from example_hosts import reboot_trap
from exporter.logfmt import LogfmtFormatter

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

NOT_UTF8 = os.fsdecode(b"mod\xff\xfe.ko")            # how Python hands us such a file name
# field -> (value logged, value a logfmt reader gets back)
HOSTILE = {
    "empty": ("", ""),
    "space": ("two words", "two words"),
    "quotes": ('say "hi"', 'say "hi"'),
    "equals": ("a=b", "a=b"),
    "only_equals": ("=", "="),
    "newlines": ("one\ntwo\r\n", "one\ntwo\r\n"),
    "tab": ("a\tb", "a\tb"),
    "backslashes": ("C:\\dir\\", "C:\\dir\\"),
    "quoted_backslash": ('x "\\" y', 'x "\\" y'),
    "null_text": ("null", "null"),
    "unicode": ("é 中文", "é 中文"),
    "controls": ("\x00\x1b\x7f", "\x00\x1b\x7f"),
    "line_separator": ("a\u2028b", "a\u2028b"),
    "emoji": ("\U0001F600", "\U0001F600"),
    "invisible_tag": ("\U000E0041", "\U000E0041"),
    "replacement_char": ("\ufffd", "\ufffd"),
    "not_utf8": (NOT_UTF8, "mod\\xff\\xfe.ko"),
    "lone_surrogate": ("\ud800", "\\ud800"),
    "raw_bytes": (b"raw\xff", "raw\\xff"),
    "none": (None, "null"),
    "flag": (True, "true"),
    "number": (1.5, "1.5"),
    "path": (Path("/a b/c"), "/a b/c"),
}


def decode(text: str) -> list[list[tuple[str, str]]]:
    """go-logfmt's reading of ``text``: one list of (key, value) per record; fails on a syntax error."""
    out = subprocess.run([str(go_program("logfmt_decode"))], input=text.encode("utf-8"), capture_output=True,
                         check=True, timeout=60).stdout.decode()
    records = [json.loads(line) for line in out.split("\n") if line]    # not splitlines(): U+0085 is no break
    assert not any(isinstance(r, dict) for r in records), (records[-1], text)
    return [[tuple(kv) for kv in r] for r in records]


def record(msg: str, *args, exc_info=None, **fields) -> logging.LogRecord:
    r = logging.getLogger("dkms_exporter").makeRecord("dkms_exporter", logging.WARNING, __file__, 42, msg, args,
                                                      exc_info, extra=fields)
    return r


def test_hostile_values_read_back_as_logged():
    r = record('a "message"\nwith %s', "args", **{k: v for k, (v, _) in HOSTILE.items()})
    line = LogfmtFormatter().format(r)
    assert "\n" not in line and line.isprintable()
    [fields] = decode(line + "\n")
    assert [k for k, _ in fields[:4]] == ["ts", "caller", "level", "msg"]
    got = dict(fields)
    assert TS.fullmatch(got["ts"])
    assert got["ts"][:23] == datetime.datetime.fromtimestamp(r.created, datetime.timezone.utc).isoformat()[:23]
    assert got["caller"] == "test_logfmt.py:42" and got["level"] == "warn"
    assert got["msg"] == 'a "message"\nwith args'
    assert fields[4:] == [(k, back) for k, (_, back) in HOSTILE.items()]


def test_quoting_follows_the_logfmt_rules():
    line = LogfmtFormatter().format(record("listening on 127.0.0.1:10140", address="127.0.0.1:10140", empty="",
                                           count=3, path="/var/lib/dkms/a b"))
    assert line.split(" ", 1)[1] == ('caller=test_logfmt.py:42 level=warn msg="listening on 127.0.0.1:10140" '
                                     'address=127.0.0.1:10140 empty="" count=3 path="/var/lib/dkms/a b"')


def test_an_exception_is_err_and_one_line_trace():
    try:
        raise ValueError('bad "value"\nhere')
    except ValueError:
        line = LogfmtFormatter().format(record("collector failed", exc_info=sys.exc_info(), collector="dkms"))
    [fields] = decode(line + "\n")
    got = dict(fields)
    assert got["collector"] == "dkms" and got["err"] == 'ValueError: bad "value"\nhere'
    assert got["trace"].startswith("Traceback (most recent call last):\n") and "raise ValueError" in got["trace"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",))), min_size=50, max_size=200))
def test_any_text_reads_back(values):
    """Arbitrary text, surrogates excluded (those are the \\xNN case above)."""
    lines = "".join(LogfmtFormatter().format(record(v, v=v)) + "\n" for v in values)
    assert lines.count("\n") == len(values)
    assert [(dict(r)["msg"], dict(r)["v"]) for r in decode(lines)] == [(v, v) for v in values]


def test_the_exporters_own_log_lines(tmp_path):
    """A read error under a hostile directory name, from `metrics`, and the lines of `serve`."""
    root = tmp_path / "host"
    reboot_trap(root)
    hostile = os.fsencode(root) + b'/var/lib/dkms/we ird"=\n\xff/1.0/source'
    os.makedirs(hostile + b"/dkms.conf")                    # a directory where a file belongs
    out = subprocess.run([sys.executable, "-m", "exporter", "metrics", "--path.rootfs", str(root)], cwd=REPO,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    records = [dict(r) for r in decode(out.stderr.decode("utf-8"))]
    assert {"collector": "dkms", "path": '/var/lib/dkms/we ird"=\n\\xff/1.0/source/dkms.conf',
            "err": "Is a directory", "level": "warn"}.items() <= records[0].items(), records

    with Served(root) as s:
        wait_for("serve's 'listening on' line", lambda: "listening on" in s.log_text, timeout=30)
    started, listening = [dict(r) for r in decode(s.log_text)][-2:]   # all it logged (killed: no shutdown lines)
    assert started["msg"] == "starting dkms-exporter" and started["rootfs"] == str(root)
    assert re.fullmatch(r"listening on 127\.0\.0\.1:\d+", listening["msg"])
    assert listening["address"] == listening["msg"].split()[-1] and listening["caller"].startswith("web/server.py:")
    assert listening["address"] == f"127.0.0.1:{s.port}"        # the port it really listens on
