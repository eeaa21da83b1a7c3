"""The landing page (exporter/output/report.py) without a browser: it says what `check` says,
escapes what the host wrote, and `serve` answers it at / (HEAD too) from the same scrape.
tests/test_browser.py reads it in headless Chromium."""

from __future__ import annotations

import io
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from hostbuilder import Host
from testkit import Served, require_tool, scrape

from exporter.output.check import render_text
from exporter.output.report import render_report

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "hosts"


class _Text(HTMLParser):
    """The tags and the text a reader sees."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read(page: str) -> _Text:
    p = _Text()
    p.feed(page)
    return p


def check_text(root: Path) -> str:
    out = io.StringIO()
    render_text(scrape(root), out)
    return out.getvalue()


def test_every_line_of_check_is_on_the_page() -> None:
    for name in ("reboot-trap", "healthy", "many-problems", "rhel9-trap", "fedora-trap"):
        page = read(render_report(scrape(EXAMPLES / name)))
        text = "\n".join(page.text)
        lines = check_text(EXAMPLES / name).splitlines()
        assert lines[0] in text and lines[-1] in text, name
        for line in lines[2:]:   # the table rows: every cell, and the details below them
            for cell in (c for c in line.split("  ") if c.strip()):
                assert cell.strip() in text, f"{name}: {cell!r}"
        assert {"script", "img", "iframe", "link"}.isdisjoint(page.tags)


def test_hostile_names_are_text(tmp_path: Path) -> None:
    h = Host(tmp_path)
    h.kernel("6.1.0-27-amd64", running=True)
    h.kernel("6.1.0-28-amd64")
    evil = "<script>x<img src=x onerror=alert(1)>"   # a directory name: anything but "/"
    h.dkms(evil, "1.0", dest=["m\"'&<b>"])
    h.dkms_build(evil, "1.0", "6.1.0-27-amd64", dest=["m\"'&<b>"])
    h.grub()
    h.finish()
    page = render_report(scrape(tmp_path))
    seen = read(page)
    assert {"script", "img", "b"}.isdisjoint(seen.tags)
    text = "".join(seen.text)
    assert evil in text and "m\"'&<b>" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&quot;&#x27;&amp;&lt;b&gt;" in page


def test_serve_answers_the_report() -> None:
    with Served(EXAMPLES / "reboot-trap") as s:
        reply = s.request("/")
        assert reply.status == 200 and reply.headers["content-type"] == "text/html; charset=utf-8"
        assert "NOT READY: do not reboot into 6.1.0-28-amd64" in reply.text
        head = s.request("/", method="HEAD")
        assert head.status == 200 and head.body == b""


def test_a_text_browser_reads_the_verdict_and_the_fix(tmp_path: Path) -> None:
    """Debian's w3m renders the page as a terminal shows it: the verdict, each row's reason and
    fix on its line, the links' text (no JavaScript, no images needed)."""
    page = tmp_path / "report.html"
    page.write_text(render_report(scrape(EXAMPLES / "reboot-trap")))
    shown = subprocess.run([require_tool("w3m"), "-dump", "-cols", "250", "-T", "text/html", str(page)],
                           capture_output=True, text=True, check=True, timeout=30).stdout
    assert "NOT READY · boot targets: 6.1.0-28-amd64" in shown
    row = next(line for line in shown.splitlines() if "acpi_call" in line and "not_built" in line)
    assert "BROKEN" in row
    assert "apt-get install linux-headers-6.1.0-28-amd64 && dkms install acpi-call/1.2.2 -k 6.1.0-28-amd64" in row
    assert "NOT READY: do not reboot into 6.1.0-28-amd64 before fixing the modules above" in shown
    assert "Metrics · Runbooks" in shown
