"""Terminal rendering of a comparison (Rich): per hop the verdict sentence, the clock, a table of
loss by size class and direction, injected packets and changes in flight. Every string that came
from a capture is escaped before Rich sees it (file names can carry markup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mailwire.compare.result import CompareResult

_STYLE = {
    "no_loss": "green",
    "no_common_traffic": "yellow",
    "capture_loss": "yellow",
}


def _n(path: str) -> str:
    return escape(Path(path).name)


def _dir_label(d: str, up: str, down: str) -> str:
    """Short direction label; the hop header says which file A and B are."""
    return "A → B" if d == "a_to_b" else "B → A"


def render(result: CompareResult, console: Console) -> None:
    doc = result.to_json()
    for note in doc["path_order"].get("notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}")
    for i, hop in enumerate(doc["hops"], 1):
        _hop(i, hop, console)


def _hop(i: int, hop: dict[str, Any], console: Console) -> None:
    up, down = hop["upstream"], hop["downstream"]
    v = hop["verdict"]
    style = _STYLE.get(v["kind"], "bold red")
    console.rule(f"hop {i}: {_n(up)} → {_n(down)}")
    console.print(f"A = {_n(up)} (upstream), B = {_n(down)} (downstream)")
    console.print(f"[{style}]{escape(v['kind'])}[/]: {escape(v['sentence'])}")
    for f in hop["findings"][1:]:
        console.print(
            f"  also [{_STYLE.get(f['kind'], 'red')}]{escape(f['kind'])}[/]: {escape(f['sentence'])}"
        )
    clk = hop["clock"]
    delays = clk["one_way_delay_s"]
    dl = ", ".join(
        f"{_dir_label(d, up, down)} {x['min'] * 1e3:.3f} ms min / {x['median'] * 1e3:.3f} ms median"
        for d, x in delays.items()
    )
    console.print(
        f"clock: B = A {hop['clock_offset_s']:+.6f} s ({clk['method']}, "
        f"drift {clk['drift_ppm']:+.1f} ppm, {clk['pairs']} pairs); one-way delay: {dl or 'unknown'}"
    )
    m = hop["matched"]
    methods = ", ".join(f"{k}: {n}" for k, n in m["by_method"].items()) or "none"
    console.print(
        f"matched: {m['connections']} connections ({escape(methods)}), {m['packets']} packets; "
        f"only upstream: {m['unmatched_connections_upstream']}, "
        f"only downstream: {m['unmatched_connections_downstream']} connections"
    )
    t = Table(title="lost/sent by IP length", title_justify="left")
    t.add_column("IP length", no_wrap=True)
    for d in ("a_to_b", "b_to_a"):
        t.add_column(_dir_label(d, up, down), justify="right", no_wrap=True)
    rows = zip(hop["lost"]["a_to_b"]["by_size_class"], hop["lost"]["b_to_a"]["by_size_class"], strict=True)
    for ca, cb in rows:
        if ca["sent"] or cb["sent"]:
            t.add_row(
                escape(ca["class"]), *(f"{c['lost']}/{c['sent']}" if c["sent"] else "·" for c in (ca, cb))
            )
    sa, sb = hop["lost"]["a_to_b"], hop["lost"]["b_to_a"]
    t.add_row("total", f"{sa['lost']}/{sa['sent']}", f"{sb['lost']}/{sb['sent']}")
    t.add_row("rate", f"{sa['rate']:.1%}", f"{sb['rate']:.1%}")
    console.print(t)
    extra = []
    for d in ("a_to_b", "b_to_a"):
        inj = hop["injected"][d]
        s = hop["lost"][d]
        parts = []
        if inj["packets"]:
            parts.append(f"{inj['packets']} injected ({inj['rst']} RST)")
        if inj["duplicates_downstream"]:
            parts.append(f"{inj['duplicates_downstream']} duplicates downstream")
        if s["capture_loss"]:
            parts.append(f"{s['capture_loss']} capture loss")
        if s["matched_by_range"]:
            parts.append(f"{s['matched_by_range']} matched by byte range (TSO/GRO)")
        if s["outside_window"]:
            parts.append(f"{s['outside_window']} outside the other capture's window")
        if parts:
            extra.append(f"{_dir_label(d, up, down)}: " + ", ".join(parts))
        ch = hop["changed"].get(d)
        if ch:
            c_parts = []
            ttl = {k: n for k, n in ch["ttl_decrement"].items() if k != "0"}
            if ttl:
                c_parts.append("TTL −" + "/−".join(ttl))
            for key, label in (
                ("dscp_changed", "DSCP"),
                ("window_changed", "window"),
                ("ip_id_changed", "IP id"),
            ):
                if ch[key]:
                    c_parts.append(f"{label} rewritten ×{ch[key]}")
            for mc in ch["mss_clamped"]:
                c_parts.append(f"MSS {mc['from']}→{mc['to']}")
            stripped = [k for k, n in ch["options_stripped"].items() if n]
            if stripped:
                c_parts.append("options stripped: " + ", ".join(stripped))
            if c_parts:
                extra.append(f"changed {_dir_label(d, up, down)}: " + "; ".join(c_parts))
    for line in extra:
        console.print(line)
    for ev in hop["evidence"][:6]:
        frames = ", ".join(str(f) for f in ev["frames"][:12])
        more = f" … ({ev['count']} in all)" if ev["count"] > 12 else ""
        console.print(f"  evidence: {escape(ev['what'])} — {_n(ev['file'])} frames {frames}{more}")
    for note in hop["notes"]:
        console.print(f"  [yellow]note:[/] {escape(note)}")


__all__ = ["render"]
