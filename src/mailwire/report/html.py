"""The self-contained HTML report: one file, inline CSS and SVG, no script, no external URL.

Theory of operation
-------------------
:class:`ReportPage` gathers what the page shows -- the diagnosis (conclusions first), the log
triage, one figure per cited session (ladder diagram + time-sequence graph), the same connection
side by side at each capture point, data-quality warnings -- and :func:`render_html` fills the
Jinja2 template with autoescaping on. Strings from packets and logs reach the template as plain
``str`` and are escaped there; only the SVG built by ``graphs`` / ``ladder`` (which escape their own
labels) is passed as ``Markup``. A Content-Security-Policy meta tag forbids every fetch and every
script, so even a rendering bug cannot make the page phone home or run injected code.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from mailwire import __version__
from mailwire.diagnose.model import Diagnosis

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


@dataclass
class SessionFigure:
    """One cited session: who, what happened, and its two pictures."""

    title: str
    capture: str
    outcome: str
    summary: str
    filter: str
    ladder: Markup | None = None
    graph: Markup | None = None
    graph_notes: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


@dataclass
class ComparePanel:
    capture: str
    graph: Markup
    caption: str


@dataclass
class CompareFigure:
    """The same connection at each capture point, side by side."""

    title: str
    panels: list[ComparePanel]


@dataclass
class LogView:
    """The log triage: a table per destination and failures over time."""

    rows: list[dict[str, Any]]
    timeline: Markup | None = None
    verdicts: list[str] = field(default_factory=list)


@dataclass
class ReportPage:
    diagnosis: Diagnosis
    sessions: list[SessionFigure] = field(default_factory=list)
    compares: list[CompareFigure] = field(default_factory=list)
    hops: list[dict[str, Any]] = field(default_factory=list)
    log: LogView | None = None
    title: str = "mailwire diagnosis"


def _env() -> jinja2.Environment:
    text = resources.files("mailwire.report").joinpath("templates/report.html.j2").read_text("utf-8")
    env = jinja2.Environment(
        loader=jinja2.DictLoader({"report.html.j2": text}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: f"{float(v) * 100:.0f}%"
    return env


def render_html(page: ReportPage) -> str:
    """The page as one HTML string."""
    tpl = _env().get_template("report.html.j2")
    return tpl.render(
        page=page,
        d=page.diagnosis,
        csp=CSP,
        version=__version__,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def write_html(page: ReportPage, path: str | Path) -> Path:
    p = Path(path)
    p.write_text(render_html(page), encoding="utf-8")
    return p


__all__ = [
    "CSP",
    "CompareFigure",
    "ComparePanel",
    "LogView",
    "ReportPage",
    "SessionFigure",
    "render_html",
    "write_html",
]
