"""docs/runbooks.md rendered once into the HTML page the exporter serves at /runbooks.

Rendering happens here, when the monitoring files are generated (alerts/generate.py), not in
the exporter: the exporter ships the finished page as package data
(exporter/web/runbooks.html) and needs no Markdown library at run time, and the committed
page is drift-checked like the rule files.  markdown-it-py (CommonMark, raw HTML off, so
anything in the Markdown is escaped) does the rendering.

Anchors: every heading gets GitHub's slug as its id, so `#dkmsnextbootkernelnotready` (each
alert's `runbook_url`) works on GitHub and on /runbooks alike.  Every problem reason of
exporter/verdict/fixes.py:REASONS gets `#reason-NAME`, generated from that table: its meaning,
the alert that pages for it, and the runbook section that explains it.  A reason the runbook
text does not mention fails the rendering (so a new reason fails the drift test until it is
documented).
"""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from exporter.verdict.fixes import REASONS

from .config import (INITRAMFS_REASONS, KERNEL_BREAKING_REASONS, LOADED_MODULE_REASONS, NON_BLOCKING_REASONS,
                     SECURE_BOOT_REASONS, VERDICT_ONLY_REASONS)

RUNBOOKS_MD = "docs/runbooks.md"
RUNBOOKS_HTML = "exporter/web/runbooks.html"

_STYLE = ("body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em;line-height:1.4}"
          "pre{background:#f4f4f4;padding:.6em;overflow-x:auto}code{background:#f4f4f4}"
          "h2{border-top:1px solid #ccc;padding-top:.6em}dt{font-weight:bold;margin-top:.6em}")


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def reason_alert(reason: str) -> str:
    """The alert that pages for a reason on a boot target (the gate split of alerts/dkms-exporter-mixin/alerts.libsonnet)."""
    if reason in SECURE_BOOT_REASONS:
        return "DkmsNextBootModuleRejectedBySecureBoot"
    if reason in INITRAMFS_REASONS:
        return "DkmsNextBootInitramfsIncomplete"
    if reason in NON_BLOCKING_REASONS:
        return "DkmsModuleBlacklisted"
    if reason in KERNEL_BREAKING_REASONS:
        return "DkmsNextBootInitramfsUnusable"
    if reason == "headers_missing":
        return "DkmsKernelHeadersMissing"
    if reason in LOADED_MODULE_REASONS:
        return "DkmsNextBootLoadedModuleMissing"
    if reason in VERDICT_ONLY_REASONS:
        return "DkmsNextBootVerdictNotReady"
    return "DkmsNextBootKernelNotReady"


def _headings(tokens: list[Token]) -> list[tuple[int, str, str]]:
    """(level, text, id) of every heading; sets the id attribute on the token."""
    found = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            text = tokens[i + 1].content
            tok.attrSet("id", slug(text))
            found.append((int(tok.tag[1]), text, slug(text)))
    return found


def _local_links_only(tokens: list[Token]) -> None:
    """Links to other docs pages (`kured.md`) do not resolve under /runbooks: keep their text
    and name the file instead, so the page never links where the exporter serves nothing."""
    for tok in tokens:
        if tok.type != "inline" or not tok.children:
            continue
        children: list[Token] = []
        target = None
        for child in tok.children:
            href = child.attrGet("href") if child.type == "link_open" else None
            if child.type == "link_open" and not str(href).startswith("#"):
                target = str(href)
                continue
            if child.type == "link_close" and target is not None:
                note = Token("text", "", 0)
                note.content = f" (docs/{target})"
                children.append(note)
                target = None
                continue
            children.append(child)
        tok.children = children


def _reasons_section(text: str, headings: list[tuple[int, str, str]]) -> str:
    """One `#reason-NAME` entry per reason of the code's table."""
    undocumented = [r for r in REASONS if not re.search(rf"\b{re.escape(r)}\b", text)]
    if undocumented:
        raise ValueError(f"{RUNBOOKS_MD} does not explain reason(s) {', '.join(undocumented)}")
    items = []
    for reason, meaning in REASONS.items():
        alert = reason_alert(reason)
        own = [h for h in headings if h[0] >= 3 and re.search(rf"\b{re.escape(reason)}\b", h[1])]
        section = own[0] if own else (2, alert, alert.lower())
        items.append(f'<dt id="reason-{html.escape(reason)}"><code>{html.escape(reason)}</code></dt>'
                     f"<dd>{html.escape(meaning)}. Alert: <a href=\"#{alert.lower()}\">{alert}</a>; "
                     f"how to fix it: <a href=\"#{html.escape(section[2])}\">{html.escape(section[1])}</a>.</dd>")
    return ('<h2 id="reasons">Problem reasons</h2><p>The <code>reason</code> label of '
            "<code>dkms_module_problem</code> and <code>dkms_kernel_problem</code>, and the REASON column "
            "of <code>dkms-exporter check</code>.</p><dl>" + "".join(items) + "</dl>\n")


def render_html(markdown: str) -> str:
    """The whole /runbooks page."""
    md = MarkdownIt("commonmark", {"html": False})
    tokens = md.parse(markdown)
    headings = _headings(tokens)
    _local_links_only(tokens)
    body = md.renderer.render(tokens, md.options, {})
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dkms-exporter runbooks</title>"
            f"<style>{_STYLE}</style></head><body>\n<p><a href=\"/\">This host's report</a> · "
            "<a href=\"#reasons\">Problem reasons</a></p>\n"
            + body + _reasons_section(markdown, headings) + "</body></html>\n")
