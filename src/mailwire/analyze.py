"""``mailwire analyze``: the public entry points of the capture analysis and its renderings.

``analyze_captures(paths) -> AnalyzeResult`` (see :mod:`mailwire.smtp.pipeline`) is what the
diagnose stage calls; ``AnalyzeResult.to_json()`` is the document described by
``schemas/analyze.schema.json`` (validated with :func:`validate`). :func:`render` writes the
terminal summary (worst sessions first, with a Wireshark display filter for each), and
:func:`run_analyze` is what the command line calls. Every string that came from the network is
rendered as plain text (never as Rich markup).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import resources
from typing import Any, TextIO

from mailwire import jsonout
from mailwire.heap import paused
from mailwire.smtp.pipeline import SCHEMA_VERSION, AnalyzeResult, analyze_captures

_OUTCOME_STYLE = {
    "delivered": "green",
    "incomplete": "yellow",
    "remote_idle_timeout": "yellow",
    "deferred": "yellow",
}


def schema() -> dict[str, Any]:
    """The JSON Schema of the analyze document, as shipped with the package."""
    text = resources.files("mailwire").joinpath("schemas/analyze.schema.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def validate(doc: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``doc`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(doc, schema())


def render(
    result: AnalyzeResult, out: TextIO, *, frames: bool = False, width: int | None = None, max_rows: int = 40
) -> None:
    """The terminal summary: captures, sessions worst first, findings."""
    from rich.table import Table
    from rich.text import Text

    from mailwire.cliutil import PipeConsole

    # the terminal's width (Rich reads COLUMNS, and uses 80 when the output is not a terminal)
    con = PipeConsole(file=out, width=width, highlight=False, soft_wrap=False)
    for cap in result.captures:
        con.print(Text(f"{cap.path}: {cap.frames} frames, {len(cap.sessions)} SMTP session(s)", style="bold"))
        for issue in cap.issues[:5]:
            con.print(Text(f"  ! {issue}", style="yellow"))
    if not result.judged:
        con.print("No SMTP session found (SMTP is recognised on any port by its 220 greeting).")
    table = Table(show_lines=False, expand=False, title="SMTP sessions, worst first")
    for col in ("outcome", "server", "from → to", "phase", "Wireshark filter"):
        # the filter is copied into Wireshark as it is: never cut it
        table.add_column(col, overflow="fold", no_wrap=col == "Wireshark filter")
    ranked = result.worst_first()
    for j in ranked[:max_rows]:
        v, s = j.verdict, j.session
        outcome = v.outcome + (f" ({v.category})" if v.category else "")
        who = f"{s.server}:{s.server_port}" if s is not None else j.destination
        env = ""
        if s is not None:
            tx = next((t for t in reversed(s.transactions) if t.mail_from is not None), None)
            if tx is not None:
                rc = tx.rcpt_to[0] if tx.rcpt_to else "?"
                more = f" +{len(tx.rcpt_to) - 1}" if len(tx.rcpt_to) > 1 else ""
                env = f"{tx.mail_from or '<>'} → {rc}{more}"
        filt = f"tcp.stream eq {j.tcp.conn_id}"
        if len(result.captures) > 1:
            filt += f"  ({os.path.basename(j.capture)})"
        table.add_row(
            Text(outcome, style=_OUTCOME_STYLE.get(v.outcome, "bold red")),
            Text(who),
            Text(env),
            Text(s.phase() if s is not None else ""),
            Text(filt),
        )
    if result.judged:
        con.print(table)
    if len(ranked) > max_rows:
        con.print(Text(f"… {len(ranked) - max_rows} more session(s) not shown (all are in --json)"))
    # delivered sessions are told only with --frames: left out by rank, none of them is read
    told = ranked if frames else result.worst_first(without=("delivered",))
    for shown, j in enumerate(told, start=1):
        v = j.verdict
        if shown > max_rows:
            con.print(Text("… more sessions in --json"))
            break
        con.print(
            Text(f"stream {j.tcp.conn_id} — {v.outcome} [{v.confidence}]: ", style="bold"), Text(v.summary)
        )
        if frames:
            for e in v.evidence:
                con.print(Text(f"    frame {e.frame}: {e.shows}"))
    if result.findings:
        con.print(Text("Findings", style="bold underline"))
    info = [f for f in result.findings if f.severity == "info"]
    for f in [f for f in result.findings if f.severity != "info"] + info[:10]:
        style = {"failure": "bold red", "warning": "yellow"}.get(f.severity, "")
        con.print(Text(f"• {f.title}: ", style=style), Text(f.summary))
        if f.next_step:
            con.print(Text(f"  next step: {f.next_step}", style="bold"))
    if len(info) > 10:
        con.print(Text(f"… {len(info) - 10} more destination(s) without failures"))


def run_analyze(
    paths: Sequence[str],
    json_out: str | None,
    frames: bool,
    stdout: TextIO,
    stderr: TextIO,
    jobs: int | None = None,
) -> int:
    """What ``mailwire analyze`` does. Returns the exit code (2 when no capture could be read)."""
    total = sum(os.path.getsize(p) for p in paths if p != "-" and os.path.isfile(p))
    show_progress = total > (64 << 20) and stderr.isatty()
    with paused():  # from the analysis to the last line written (mailwire.heap)
        if show_progress:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            with Progress(
                TextColumn("analysing"),
                BarColumn(),
                TextColumn("{task.completed:,} frames"),
                console=Console(file=stderr),
            ) as bar:
                task = bar.add_task("frames", total=None)
                result = analyze_captures(paths, progress=lambda n: bar.advance(task, n), jobs=jobs)
        else:
            result = analyze_captures(paths, jobs=jobs)
        if json_out == "-":
            jsonout.write_streamed(result.json_parts(), stdout)
        else:
            if json_out:
                with open(json_out, "w", encoding="utf-8") as fh:
                    jsonout.write_streamed(result.json_parts(), fh)
            render(result, stdout, frames=frames)
        unreadable = [c for c in result.captures if c.frames == 0 and c.issues]
        return 2 if unreadable and len(unreadable) == len(result.captures) else 0


__all__ = [
    "SCHEMA_VERSION",
    "AnalyzeResult",
    "analyze_captures",
    "render",
    "run_analyze",
    "schema",
    "validate",
]
