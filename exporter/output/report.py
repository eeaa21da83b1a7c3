"""The landing page: the host's report, as `check` gives it, in HTML.

Server-rendered, no JavaScript, no external resources: it reads in a text browser as well as
in a graphical one.  Everything it says comes from exporter/output/check.py (the verdict and
summary line, the table rows with reasons and fix commands, the details, the undecidable
reasons and unreadable files, kernel_json's roles, as_json's collector health), so the page
and `check` cannot disagree.  Every value from the host (module names, paths, error texts) is
escaped with html.escape, quotes included: a module named `<script>` is text.
"""

from __future__ import annotations

from html import escape

from .. import __version__
from ..scrape import Scrape
from .check import COLUMNS, as_json, details, diagnostics, header, kernel_json, rows, select, summary

_STYLE = ("body{font-family:sans-serif;max-width:80em;margin:1em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;"
          "text-align:left;vertical-align:top}code{font-size:90%}"
          ".verdict{font-size:130%;font-weight:bold;padding:.4em .6em}"
          ".ready{background:#d8f5d8}.not_ready{background:#f8d0d0}.unknown{background:#f8ecc0}"
          ".BROKEN{color:#a00;font-weight:bold}.warning{color:#850}")
TITLE = {"ready": "READY", "not_ready": "NOT READY", "unknown": "UNKNOWN"}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _table(head: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(body_row) + "</tr>" for body_row in
                      ([f"<td>{cell}</td>" for cell in row] for row in body))
            + "</tbody></table>")


def _problem_row(row: tuple[str, ...], runbooks: str) -> tuple[str, ...]:
    """check's row, escaped; the verdict marked, the reason linked to its runbook, the fix as code."""
    kernel, module, dkms, state, verdict, reason, fix = row
    reason_cell = (f'<a href="{_e(runbooks)}#reason-{_e(reason)}">{_e(reason)}</a>' if verdict != "ok" else _e(reason))
    fix_cell = f"<code>{_e(fix)}</code>" if fix != "-" else "-"
    return (_e(kernel), _e(module), _e(dkms), _e(state), f'<span class="{_e(verdict)}">{_e(verdict)}</span>',
            reason_cell, fix_cell)


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def render_report(scrape: Scrape, telemetry_path: str = "/metrics", runbooks: str = "/runbooks") -> str:
    """The whole page for one scrape (the boot targets, as `check` with no --kernel)."""
    chosen, verdict, notes = select(scrape, None)
    doc = as_json(scrape)
    targets = ", ".join(kv.kernel for kv in chosen) or "no kernel"
    parts = [f'<p class="verdict {_e(verdict)}" id="verdict">{_e(TITLE[verdict])} · boot targets: {_e(targets)}</p>',
             f'<p id="kernels-line">{_e(header(scrape))}</p>',
             "<h2>Boot targets</h2>",
             _table(COLUMNS, [_problem_row(r, runbooks) for r in rows(chosen)])]
    why = details(chosen)
    if why:
        parts += ["<h3>Why</h3>", _list(why)]
    diag = diagnostics(scrape, chosen, notes)
    if diag:
        parts += ["<h3>Undecidable, unreadable, notes</h3>", _list(diag)]
    parts.append(f'<p class="verdict {_e(verdict)}" id="summary">{_e(summary(chosen, verdict, notes))}</p>')
    parts += ["<h2>Installed kernels</h2>",
              _table(("KERNEL", "ROLES", "VERDICT"),
                     [(_e(k["kernel"]), _e(", ".join(k["roles"]) or "-"), _e(k["verdict"]))
                      for k in map(kernel_json, scrape.readiness.kernels)])]
    parts += ["<h2>Collectors</h2>",
              _table(("COLLECTOR", "HEALTH", "ERRORS"),
                     [(_e(name), _e("crashed" if c["crashed"] else "ok" if c["success"] else "failed"),
                       _e("; ".join(f"{err['path']}: {err['error']}" for err in c["errors"]) or "-"))
                      for name, c in doc["collectors"].items()])]
    links = (f'<p><a href="{_e(telemetry_path)}">Metrics</a> · <a href="{_e(runbooks)}">Runbooks</a> · '
             f"dkms-exporter {_e(__version__)}</p>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>dkms-exporter: {_e(TITLE[verdict])}</title><style>{_STYLE}</style></head><body>\n"
            "<h1>Will every out-of-tree module work on the kernel this host boots next?</h1>\n"
            + "\n".join(parts) + "\n" + links + "\n</body></html>\n")
