"""``--extract``: one pcap per capture holding just the connections a report cites.

A connection is named by its two endpoints and a time window (ports get reused); every frame of
either direction inside the window is kept, in file order, with its original timestamp and bytes,
so frame numbers change but the TCP analysis of the extract equals the original's. ICMP errors
that quote one of the connection's packets (fragmentation needed, unreachable) are kept as well. The capture
is read chunk by chunk, so memory stays bounded whatever its size; selection is vectorised.

Frames whose link type differs from the first kept frame's cannot share a plain pcap file: they
are counted and reported, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mailwire.capture.addr import parse_addr
from mailwire.capture.read import iter_tables
from mailwire.capture.write import write_pcap


@dataclass(frozen=True)
class ConnSpec:
    """One connection to extract: endpoints and the time window it was alive in (ns, inclusive)."""

    client: str
    client_port: int
    server: str
    server_port: int
    start_ns: int = -(1 << 62)
    end_ns: int = 1 << 62


@dataclass
class ExtractResult:
    path: Path
    frames: int
    skipped_other_link: int
    link_type: int


Key = tuple[int, int, int, int, int, int, int, int]


def _keys(conns: Sequence[ConnSpec]) -> list[Key]:
    return [
        (*parse_addr(c.client), c.client_port, *parse_addr(c.server), c.server_port, c.start_ns, c.end_ns)
        for c in conns
    ]


def connection_mask(col: dict[str, np.ndarray], key: Key) -> np.ndarray:
    """Rows of one connection (both directions, inside its time window), plus ICMP errors quoting it."""
    chi, clo, cp, shi, slo, sp, t0, t1 = key
    a = (col["src_hi"] == chi) & (col["src_lo"] == clo) & (col["sport"] == cp)
    b = (col["dst_hi"] == shi) & (col["dst_lo"] == slo) & (col["dport"] == sp)
    fwd = a & b
    a = (col["src_hi"] == shi) & (col["src_lo"] == slo) & (col["sport"] == sp)
    b = (col["dst_hi"] == chi) & (col["dst_lo"] == clo) & (col["dport"] == cp)
    # ICMP errors quoting one of its packets (e.g. "fragmentation needed") belong to it too.
    icmp = (col["inner_proto"] == 6) & (
        ((col["inner_dst_hi"] == shi) & (col["inner_dst_lo"] == slo) & (col["inner_dport"] == sp)
         & (col["inner_sport"] == cp))
        | ((col["inner_dst_hi"] == chi) & (col["inner_dst_lo"] == clo) & (col["inner_dport"] == cp)
           & (col["inner_sport"] == sp))
    )  # fmt: skip
    tcp = (fwd | (a & b)) & (col["proto"] == 6)
    return (tcp | icmp) & (col["ts_ns"] >= t0) & (col["ts_ns"] <= t1)


def collect_columns(capture: str | Path, conns: Sequence[ConnSpec]) -> list[dict[str, np.ndarray]]:
    """The packet-table columns of each connection (one dict per spec), read chunk by chunk."""
    keys = _keys(conns)
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in keys]
    for t in iter_tables(capture):
        if len(t) == 0:
            continue
        for k, key in enumerate(keys):
            idx = np.nonzero(connection_mask(t.columns, key))[0]
            if idx.size:
                parts[k].append({name: arr[idx] for name, arr in t.columns.items()})
    out: list[dict[str, np.ndarray]] = []
    for p in parts:
        if not p:
            out.append({})
            continue
        out.append({name: np.concatenate([q[name] for q in p]) for name in p[0]})
    return out


def _frames(
    capture: str | Path, conns: Sequence[ConnSpec], counts: dict[str, int]
) -> Iterator[tuple[int, bytes]]:
    keys = _keys(conns)
    for t in iter_tables(capture):
        if len(t) == 0:
            continue
        col = t.columns
        keep = np.zeros(len(t), dtype=bool)
        for key in keys:
            keep |= connection_mask(col, key)
        for i in np.nonzero(keep)[0].tolist():
            lt = int(col["link_type"][i])
            if counts["link_type"] < 0:
                counts["link_type"] = lt
            if lt != counts["link_type"]:
                counts["skipped"] += 1
                continue
            counts["frames"] += 1
            yield int(col["ts_ns"][i]), bytes(t.frame_bytes(i))


def extract_connections(capture: str | Path, conns: Sequence[ConnSpec], out: str | Path) -> ExtractResult:
    """Write the frames of ``conns`` found in ``capture`` to the pcap file ``out``."""
    counts = {"frames": 0, "skipped": 0, "link_type": -1}
    # The link type is only known once the first frame is kept: buffer the writer's header by
    # peeking the generator.
    gen = _frames(capture, conns, counts)
    first = next(gen, None)
    lt = counts["link_type"] if counts["link_type"] >= 0 else 1

    def chained() -> Iterator[tuple[int, bytes]]:
        if first is not None:
            yield first
        yield from gen

    write_pcap(out, chained(), link_type=lt, nanosecond=True)
    return ExtractResult(Path(out), counts["frames"], counts["skipped"], lt)


__all__ = ["ConnSpec", "ExtractResult", "collect_columns", "connection_mask", "extract_connections"]
