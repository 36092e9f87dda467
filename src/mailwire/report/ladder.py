"""Ladder (message sequence) diagrams of an SMTP dialogue, as inline SVG.

Theory of operation
-------------------
Two vertical lifelines, client on the left and server on the right; each transcript line is an
arrow between them, labelled with the command or reply (shortened) and the Wireshark frame
number, with the time since the first line in the margin. Long dialogues keep their start and
end (where the failure is) and elide the middle, so the SVG stays small whatever the session.

Every string comes from the network and is escaped here; the result is safe markup. This module
knows nothing about how the transcript was obtained.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

MAX_LINES = 80  # arrows drawn; beyond, the middle is elided
MAX_LABEL = 72  # characters of a line shown


def _label(line: str) -> str:
    clean = "".join(ch if ch.isprintable() else "\ufffd" for ch in line)
    if len(clean) > MAX_LABEL:
        clean = clean[: MAX_LABEL - 1] + "…"
    return clean


def _party(name: str) -> str:
    clean = _label(name)
    return clean if len(clean) <= 26 else clean[:25] + "…"


def ladder_svg(
    transcript: Sequence[tuple[int, int, str, str]],
    *,
    client: str = "client",
    server: str = "server",
    width: int = 760,
    mark_frames: Sequence[int] = (),
) -> Markup:
    """``transcript`` is ``(frame, ts_ns, direction, line)`` with direction ``"c2s"`` or ``"s2c"``.

    ``mark_frames`` are drawn in the alert colour (e.g. the unacknowledged segment, the 421).
    """
    rows: list[tuple[int, int, str, str] | None] = list(transcript)
    elided = 0
    if len(rows) > MAX_LINES:
        head = MAX_LINES // 2
        tail = MAX_LINES - head
        elided = len(rows) - MAX_LINES
        rows = [*rows[:head], None, *rows[-tail:]]
    step = 26
    top = 44
    height = top + step * max(len(rows), 1) + 20
    xl, xr = 150, width - 40
    marks = set(mark_frames)
    t0 = next((r[1] for r in rows if r is not None), 0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="SMTP ladder diagram">',
        f'<text class="party" x="{xl}" y="16" text-anchor="middle">{escape(_party(client))}</text>',
        f'<text class="party" x="{width - 4}" y="16" text-anchor="end">{escape(_party(server))}</text>',
        f'<line class="life" x1="{xl}" y1="24" x2="{xl}" y2="{height - 8}"/>',
        f'<line class="life" x1="{xr}" y1="24" x2="{xr}" y2="{height - 8}"/>',
    ]
    for i, r in enumerate(rows):
        y = top + i * step
        if r is None:
            out.append(
                f'<text class="elided" x="{(xl + xr) // 2}" y="{y + 4}" text-anchor="middle">'
                f"… {elided} lines not shown …</text>"
            )
            continue
        frame, ts, direction, line = r
        c2s = direction == "c2s"
        x1, x2 = (xl, xr) if c2s else (xr, xl)
        cls = "c2s" if c2s else "s2c"
        if frame in marks:
            cls += " alert"
        arrow = f"M{x2} {y + 8}l{-8 if c2s else 8} -5v10z"
        out.append(
            f'<g class="msg {cls}"><line x1="{x1}" y1="{y - 2}" x2="{x2}" y2="{y + 8}"/>'
            f'<path d="{arrow}"/>'
            f'<text x="{(xl + xr) // 2}" y="{y - 1}" text-anchor="middle">{escape(_label(line))}</text>'
            f'<text class="when" x="4" y="{y + 6}">{(ts - t0) / 1e9:8.3f} s  #{int(frame)}</text></g>'
        )
    out.append("</svg>")
    return Markup("".join(out))


__all__ = ["MAX_LINES", "ladder_svg"]
