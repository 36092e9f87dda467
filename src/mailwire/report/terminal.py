"""The diagnosis in the terminal (Rich): the conclusion first, then what supports it.

Readable in 80 columns: the top conclusion is a panel of wrapped sentences (cause, where, how
sure, what to do), the evidence and sessions are narrow tables whose long cells wrap, and the
Wireshark filters are printed on their own lines so they can be copied whole. Every string from
a packet or a log is printed as text (Rich markup in it is escaped, control characters replaced).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mailwire.diagnose.model import Conclusion, Diagnosis

MAX_EVIDENCE_ROWS = 10
MAX_SESSION_ROWS = 12
MAX_OTHER_CONCLUSIONS = 4
MAX_LOG_ROWS = 6


def _clean(s: str) -> str:
    return escape("".join(ch if ch.isprintable() else "\ufffd" for ch in s))


def _headline(c: Conclusion) -> Text:
    t = Text()
    t.append(c.cause, style="bold")
    t.append(f"  confidence {c.confidence * 100:.0f}%", style="dim")
    if c.between:
        t.append("  between ")
        t.append(" and ".join(c.between), style="bold cyan")
    return t


def _conclusion_panel(c: Conclusion) -> Panel:
    parts: list[Text | Table] = [_headline(c), Text.from_markup(_clean(c.summary))]
    if c.next_step:
        parts.append(Text.from_markup("[bold]Next step:[/bold] " + _clean(c.next_step)))
    if c.alternative:
        msg = f"Not yet told apart from [bold]{_clean(c.alternative)}[/bold]"
        if c.would_separate:
            msg += ": " + _clean(c.would_separate)
        parts.append(Text.from_markup(msg, style="dim"))
    style = "green" if c.cause == "healthy" else "red"
    return Panel(Group(*parts), title="Root cause", title_align="left", border_style=style)


def _evidence_table(c: Conclusion) -> Table | None:
    if not c.evidence:
        return None
    t = Table(title="Evidence", title_justify="left", show_lines=False, expand=True)
    t.add_column("what it shows", ratio=3, overflow="fold")
    t.add_column("where", ratio=1, overflow="fold")
    # file names, not paths, so a name is never folded mid-word in a narrow column (paths stay in
    # the JSON/HTML); the full path is kept only where two sources share a name
    sources = {e.source for e in c.evidence if e.source}
    short = {src: Path(src).name for src in sources}
    if len(set(short.values())) < len(sources):
        short = {src: src for src in sources}
    for e in c.evidence[:MAX_EVIDENCE_ROWS]:
        where = short.get(e.source, e.source)
        if e.ref is not None:
            unit = "frame" if e.kind in ("frame", "session") else "line" if e.kind == "log" else "#"
            where = f"{where} {unit} {e.ref}".strip()
        t.add_row(Text(_plain(e.text)), Text(_plain(where)))
    if len(c.evidence) > MAX_EVIDENCE_ROWS:
        t.caption = f"{len(c.evidence) - MAX_EVIDENCE_ROWS} more in the JSON / HTML report"
    return t


def _plain(s: str) -> str:
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in s)


def render_terminal(d: Diagnosis, console: Console) -> None:
    """Print the diagnosis: root cause, evidence, other candidates, sessions, filters, warnings."""
    top = d.top
    if top is None:
        console.print("No conclusion: no input could be analysed.")
        return
    console.print(_conclusion_panel(top))
    ev = _evidence_table(top)
    if ev is not None:
        console.print(ev)
    others = d.conclusions[1 : 1 + MAX_OTHER_CONCLUSIONS]
    if others:
        t = Table(title="Other candidates", title_justify="left", expand=True)
        t.add_column("cause", no_wrap=True)
        t.add_column("conf.", justify="right", no_wrap=True)
        t.add_column("summary", overflow="fold")
        for c in others:
            t.add_row(c.cause, f"{c.confidence * 100:.0f}%", Text(_plain(c.summary)))
        console.print(t)
    if d.log_verdicts:
        t = Table(title="Mail log triage", title_justify="left", expand=True)
        t.add_column("destination", overflow="fold", ratio=1)
        t.add_column("verdict", no_wrap=True)
        t.add_column("why", overflow="fold", ratio=3)
        for v in d.log_verdicts[:MAX_LOG_ROWS]:
            t.add_row(Text(_plain(f"{v['scope']} {v['key']}")), v["verdict"], Text(_plain(v["summary"])))
        console.print(t)
    if d.hops:
        t = Table(title="Between the capture points", title_justify="left", expand=True)
        t.add_column("hop", no_wrap=True)
        t.add_column("verdict", overflow="fold")
        t.add_column("lost", justify="right", no_wrap=True)
        t.add_column("forged RST", justify="right", no_wrap=True)
        for h in d.hops:
            t.add_row(
                Text(_plain(f"{h['upstream']} → {h['downstream']}")),
                h["verdict"],
                str(h["lost_packets"]),
                str(h["injected_rst"]),
            )
        console.print(t)
    if d.sessions:
        # One row per connection; its verdict at each capture point (the same connection often
        # looks different on each side of the fault).
        rows: dict[str, list[str]] = {}
        for s in d.sessions[:MAX_SESSION_ROWS]:
            conn = f"{s.client}:{s.client_port} → {s.server}:{s.server_port}"
            point = Path(s.capture).name.split(".", 1)[0]
            rows.setdefault(conn, []).append(f"{point}: {s.outcome}")
        t = Table(title="Sessions cited", title_justify="left", expand=True)
        t.add_column("connection", overflow="fold", ratio=1)
        t.add_column("verdict at each capture point", overflow="fold", ratio=1)
        for conn, verdicts in rows.items():
            t.add_row(Text(_plain(conn)), Text("\n".join(_plain(v) for v in verdicts)))
        console.print(t)
        console.print("[bold]Wireshark display filters[/bold] (open the session in each capture):")
        where: dict[str, list[str]] = {}
        for s in d.sessions[:MAX_SESSION_ROWS]:
            where.setdefault(s.filter, []).append(Path(s.capture).name)
        for flt, names in where.items():
            console.print(Text(f"  in {', '.join(_plain(n) for n in names)}:", style="dim"))
            console.print(Text(f"    {flt}"), soft_wrap=True)
    if d.correlations:
        # One line per log attempt, however many capture points saw its session; counted by the
        # strongest identifier that joined it at any point.
        rank = {"message_id": 0, "remote_queue_id": 1, "recipient": 2, "ip_time": 3}
        best: dict[tuple[str, int], str] = {}
        points: set[str] = set()
        for m in d.correlations:
            key = (str(m["attempt"]["file"]), int(m["attempt"]["line"]))
            points.add(str(m["session"]["capture"]))
            if key not in best or rank.get(m["method"], 9) < rank.get(best[key], 9):
                best[key] = m["method"]
        how: dict[str, int] = {}
        for meth in best.values():
            how[meth] = how.get(meth, 0) + 1
        by = ", ".join(
            f"{v} by {k.replace('_', ' ')}" for k, v in sorted(how.items(), key=lambda kv: rank.get(kv[0], 9))
        )
        console.print(
            f"Log attempts matched to captured sessions: {len(best)} ({by}), "
            f"in {len(points)} capture{'s' if len(points) != 1 else ''}."
        )
    if d.warnings:
        console.print("[bold yellow]Data quality[/bold yellow]")
        for w in d.warnings[:20]:
            console.print(Text(f"  • {_plain(w)}", style="yellow"))
    if d.stages:
        console.print(
            Text("Stages: " + "; ".join(f"{k}: {v}" for k, v in d.stages.items()), style="dim"),
        )


__all__ = ["render_terminal"]
