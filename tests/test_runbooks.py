"""Runbooks that open: /runbooks (docs/runbooks.md rendered by alerts/runbooks.py) has an anchor
for every alert and every problem reason of the code, the rendered rules' runbook_url opens on
a real exporter, behind the same basic auth as /metrics, and no shipped file links to a
placeholder host."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit import Served, http_request, require_tool, serving  # noqa: E402

from alerts import generate, runbooks  # noqa: E402
from alerts.config import ANY_EXPORTER_INSTANCE, INSTANCE  # noqa: E402
from exporter.verdict.fixes import REASONS  # noqa: E402

PAGE = (REPO / runbooks.RUNBOOKS_HTML).read_text()
# A URL whose host is a reserved example/placeholder name (RFC 2606 / 6761), built here so this
# file does not match itself.
PLACEHOLDER = re.compile(r"https?://[\w.-]*\b(?:" + "|".join(["exam" + "ple", "inva" + "lid", "local" + "domain"])
                         + r")(?:\.(?:com|org|net))?\b")


class _Ids(HTMLParser):
    """Every id and every in-page href (#x) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.fragments: set[str] = set()
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and (a.get("href") or "").startswith("#"):
            self.fragments.add(a["href"][1:])
        self.scripts += tag == "script"


def ids_of(html: str) -> _Ids:
    p = _Ids()
    p.feed(html)
    return p


def test_every_alert_and_reason_has_an_anchor() -> None:
    page = ids_of(PAGE)
    assert {a["alert"].lower() for a in generate.alert_rules()} <= page.ids
    assert {f"reason-{r}" for r in REASONS} <= page.ids, "a reason of verdict/fixes.py lacks its anchor"
    assert page.fragments <= page.ids, "the page links to anchors it does not have"
    assert page.scripts == 0


def test_committed_page_is_the_rendering_of_docs() -> None:
    assert runbooks.render_html((REPO / runbooks.RUNBOOKS_MD).read_text()) == PAGE, \
        "run: python alerts/generate.py"


def test_a_reason_the_runbooks_do_not_explain_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runbooks, "REASONS", {**REASONS, "brand_new_reason": "added by someone"})
    with pytest.raises(ValueError, match="brand_new_reason"):
        runbooks.render_html((REPO / runbooks.RUNBOOKS_MD).read_text())


def test_markdown_is_escaped_and_other_docs_are_not_linked() -> None:
    every_reason = " ".join(REASONS)
    page = runbooks.render_html("## A <script>alert(1)</script> & [kured](kured.md)\n\n<img src=x onerror=y>\n\n"
                                f"## DkmsNextBootKernelNotReady\n\n{every_reason}\n")
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x onerror=y&gt;" in page
    assert 'href="kured.md"' not in page and "kured (docs/kured.md)" in page


def _shipped_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / p for p in out.decode().split("\0") if p]


def test_no_shipped_file_links_to_a_placeholder_host() -> None:
    files = _shipped_files()
    assert REPO / generate.ALERTS_FILE in files
    found = []
    for path in files:
        if not path.is_file() or path.is_symlink():
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        found += [f"{path.relative_to(REPO)}: {m}" for m in PLACEHOLDER.findall(text)]
    assert found == [], "\n".join(found)


def _rendered_runbook_urls() -> dict[str, str]:
    """alertname -> runbook_url template, from the committed rule file."""
    groups = yaml.safe_load((REPO / generate.ALERTS_FILE).read_text())["groups"]
    return {r["alert"]: r["annotations"]["runbook_url"] for g in groups for r in g["rules"] if "alert" in r}


def test_every_runbook_url_opens_on_a_running_exporter() -> None:
    """Each rule's runbook_url, with the alert's instance (Prometheus' template expansion is in
    test_live_alerting and the promtool cases), against the real `serve`: 200, HTML, and the
    fragment is an id on the page."""
    urls = _rendered_runbook_urls()
    assert set(urls) == {a["alert"] for a in generate.alert_rules()}
    with Served(REPO / "examples" / "hosts" / "healthy") as exporter:
        address = f"127.0.0.1:{exporter.port}"
        for alert, template in urls.items():
            url = urlsplit(template.replace(ANY_EXPORTER_INSTANCE, address).replace(INSTANCE, address))
            assert "{{" not in url.geturl(), alert
            assert (url.scheme, url.netloc, url.path) == ("http", address, "/runbooks"), alert
            reply = http_request(exporter.port, url.path)
            assert reply.status == 200 and reply.headers["content-type"].startswith("text/html"), alert
            assert url.fragment in ids_of(reply.text).ids, f"{alert}: no #{url.fragment} on /runbooks"
            assert reply.body == PAGE.encode()


def test_every_report_and_reason_url_opens_on_a_running_exporter() -> None:
    """report_url is the host's report (the exporter's `/`); reason_url, with every reason an
    alert carrying it can have, is an anchor of /runbooks."""
    rules = generate.alert_rules()
    with Served(REPO / "examples" / "hosts" / "healthy") as exporter:
        address = f"127.0.0.1:{exporter.port}"
        ids = ids_of(http_request(exporter.port, "/runbooks").text).ids
        for rule in rules:
            annotations = rule["annotations"]
            if "report_url" in annotations:
                url = urlsplit(annotations["report_url"].replace(INSTANCE, address))
                assert (url.netloc, url.path) == (address, "/"), rule["alert"]
                reply = http_request(exporter.port, url.path)
                assert reply.status == 200 and "dkms" in reply.text.lower(), rule["alert"]
            if "reason_url" in annotations:
                for reason in REASONS:
                    url = urlsplit(annotations["reason_url"].replace(INSTANCE, address)
                                   .replace("{{ $labels.reason }}", reason))
                    assert url.fragment in ids, f"{rule['alert']}: no #{url.fragment} on /runbooks"


def test_runbooks_are_behind_the_same_basic_auth(tmp_path: Path) -> None:
    line = subprocess.run([require_tool("htpasswd"), "-nbBC", "4", "alice", "secret"], check=True,
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  alice: {line.partition(':')[2]}\n")
    with Served(REPO / "examples" / "hosts" / "healthy", "--web.config.file", str(tmp_path / "web.yml")) as s:
        for path in ("/runbooks", "/", "/metrics"):
            assert s.request(path).status == 401, path
        ok = s.request("/runbooks", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
        assert ok.status == 200 and ok.body == PAGE.encode()
