"""Terminal summary of a ``LogTriage``: verdicts first, worst destinations, failures over time.

Owns the Rich layout only (fits 80 columns). Every string from a log is put into ``Text``
objects, never interpreted as markup.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mailwire.maillog.records import LogTriage

_SPARK = "▁▂▃▄▅▆▇█"
_COLOURS = {
    "network_path": "bold magenta",
    "reputation": "bold red",
    "blocklist": "bold red",
    "rate_limit": "yellow",
    "greylist": "cyan",
    "remote_outage": "red",
    "local_config": "bold yellow",
    "healthy": "green",
}


def sparkline(values: list[int], width: int = 12) -> str:
    """Failures per bucket, squeezed to ``width`` characters; blank where nothing failed."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        merged = [sum(values[int(i * step) : int((i + 1) * step)]) for i in range(width)]
    else:
        merged = values
    top = max(merged)
    if top == 0:
        return "·" * len(merged)
    return "".join(
        "·" if v == 0 else _SPARK[min(len(_SPARK) - 1, (v * len(_SPARK) - 1) // top)] for v in merged
    )


def render(t: LogTriage, console: Console, top: int = 15) -> None:
    d = t.to_dict()["totals"]
    o = d["outcomes"]
    head = Text()
    head.append("mailwire logs", style="bold")
    head.append(f"  {d['lines']} lines in {len(t.inputs)} input(s), {d['attempts']} delivery records: ")
    head.append(f"{o['delivered']} delivered", style="green")
    for key, style in (
        ("rejected", "red"),
        ("deferred", "yellow"),
        ("network", "magenta"),
        ("dns", "yellow"),
        ("tls", "yellow"),
        ("local", "yellow"),
        ("suppressed", "dim"),
        ("expired", "dim"),
    ):
        if o[key]:
            head.append(", ")
            head.append(f"{o[key]} {key}", style=style)
    console.print(head)
    skipped = d["garbage"] + d["unparsed_delivery"]
    if skipped:
        console.print(
            Text(
                f"skipped {d['garbage']} garbage and {d['unparsed_delivery']} unparsed delivery lines "
                f"(first: {_first_skips(t)})",
                style="dim",
            )
        )
    for i in t.inputs:
        if i.error:
            console.print(Text(i.error, style="red"))
    if t.bucket_start is not None:
        console.print(
            Text(
                f"time buckets: {_span(t.bucket_seconds)} from "
                f"{t.bucket_start.strftime('%Y-%m-%d %H:%M')} UTC",
                style="dim",
            )
        )

    if not t.attempts:  # nothing to judge: say so, never "healthy"
        console.print(Text(nothing_found(t), style="yellow"))
        return

    if t.verdicts:
        vt = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            expand=False,
            title="Verdicts",
            title_justify="left",
            pad_edge=False,
        )
        vt.add_column("verdict", no_wrap=True)
        vt.add_column("about", max_width=22, overflow="fold")
        vt.add_column("why / next step", ratio=1)
        for v in t.verdicts[:top]:
            why = Text(v.summary)
            why.append("\n→ " + v.next_step, style="italic")
            if v.evidence:
                e = v.evidence[0]
                why.append(f"\n  {e.file}:{e.line}", style="dim")
            vt.add_row(Text(v.verdict, style=_COLOURS.get(v.verdict, "")), Text(f"{v.scope} {v.key}"), why)
        console.print(vt)
    else:
        console.print(Text("No failure verdicts: every destination healthy.", style="green"))

    doms = [x for x in t.destinations if x.scope == "domain" and x.attempts]
    if doms:
        dt = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            title="Destinations (worst first)",
            title_justify="left",
            pad_edge=False,
            padding=(0, 1),
        )
        dt.add_column("domain", max_width=18, overflow="ellipsis", no_wrap=True)
        for col in ("tries", "ok", "5xx", "4xx", "net"):
            dt.add_column(col, justify="right", no_wrap=True)
        dt.add_column("fail", justify="right", no_wrap=True, min_width=4)
        dt.add_column("failed/time", no_wrap=True, width=11)
        dt.add_column("verdict", no_wrap=True)
        for x in doms[:top]:
            oc = x.outcomes
            net = oc.get("network", 0) + oc.get("tls", 0)
            dt.add_row(
                Text(x.key),
                str(x.attempts),
                str(oc.get("delivered", 0)),
                str(oc.get("rejected", 0)),
                str(oc.get("deferred", 0)),
                str(net),
                f"{x.failure_rate:.0%}",
                Text(sparkline(x.buckets_failed, 11), style="magenta"),
                Text(x.verdict + ("*" if x.intermittent else ""), style=_COLOURS.get(x.verdict, "")),
            )
        console.print(dt)
        if any(x.intermittent for x in doms[:top]):
            console.print(Text("* intermittent: deliveries and failures in the same hour", style="dim"))

    ips = [x for x in t.destinations if x.scope == "ip" and x.failures]
    if ips:
        it = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            title="Failing IPs",
            title_justify="left",
            pad_edge=False,
            padding=(0, 1),
        )
        it.add_column("ip", max_width=24, overflow="fold")
        it.add_column("tries", justify="right")
        it.add_column("fail", justify="right", no_wrap=True, min_width=4)
        it.add_column("network failure stages", max_width=26)
        it.add_column("verdict", no_wrap=True)
        for x in sorted(ips, key=lambda y: -y.failures)[:top]:
            stages = ", ".join(f"{s} {n}" for s, n in sorted(x.stages.items(), key=lambda kv: -kv[1])[:3])
            it.add_row(
                Text(x.key),
                str(x.attempts),
                f"{x.failure_rate:.0%}",
                Text(stages or "-"),
                Text(x.verdict, style=_COLOURS.get(x.verdict, "")),
            )
        console.print(it)


def nothing_found(t: LogTriage) -> str:
    """Why there is no verdict when no delivery record is left to judge."""
    if t.nothing_read:
        return "Nothing analysed: no input could be read."
    read = sum(i.attempts for i in t.inputs)
    if read:
        return f"No delivery records match the filters ({read} read, none kept): nothing to judge."
    lines = sum(i.lines for i in t.inputs)
    garbage = sum(i.garbage for i in t.inputs)
    unparsed = sum(i.unparsed_delivery for i in t.inputs)
    return (
        f"No delivery records found in {lines} lines read ({garbage} garbage, {unparsed} unparsed "
        f"delivery lines, {lines - garbage - unparsed} other): nothing to judge."
    )


def _first_skips(t: LogTriage) -> str:
    return ", ".join(f"{s.file}:{s.line} {s.reason}" for s in t.skipped[:3])


def _span(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"
