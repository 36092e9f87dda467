"""Capture quality: what about the capture itself (not the network) limits what can be concluded.

Reported per capture and per connection, up front, so capture loss is never read as network
loss: ACKs of data the capture never saw (Zeek's capture_loss: gaps / ACKs), frames cut by the
snaplen, TSO/GSO super-segments (a host-side capture), the same packet captured twice, and
connections seen in one direction only (an asymmetric capture point).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mailwire.capture.table import PacketTable, Warn
from mailwire.tcp.analysis import F_ACK_LOST_SEGMENT, F_DUPLICATE_FRAME, F_LOST_SEGMENT
from mailwire.tcp.connections import TcpFrames

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mailwire.tcp.summary import Connection

_TRUNC = int(Warn.SNAPLEN_TRUNCATED | Warn.PAYLOAD_TRUNCATED)


@dataclass
class ConnQuality:
    conn_id: int
    acked_unseen: int  # ACKs of data the capture never saw (tshark ack_lost_segment)
    unseen_before: int  # segments after a hole (tshark lost_segment)
    truncated_frames: int
    super_segments: int
    duplicate_frames: int
    one_direction: bool


@dataclass
class CaptureQuality:
    path: str
    frames: int
    tcp_frames: int
    acks: int
    acked_unseen: int
    capture_loss_pct: float  # Zeek capture_loss style: acked_unseen / acks
    truncated_frames: int
    super_segments: int
    duplicate_frames: int
    one_direction_connections: int
    connections: list[ConnQuality] = field(default_factory=list)  # only those with a finding
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CaptureQuality:
        """The record :meth:`to_json` was made from."""
        rest = {k: v for k, v in d.items() if k != "connections"}
        return cls(**rest, connections=[ConnQuality(**c) for c in d.get("connections", [])])


class QualityCounter:
    """Per-connection counts of capture warnings and capture-loss flags, carried across chunks
    (the connections of the frames flagged, one array a chunk: such frames are few)."""

    def __init__(self) -> None:
        self.trunc: list[np.ndarray] = []
        self.tso: list[np.ndarray] = []
        self.ack_lost: list[np.ndarray] = []
        self.lost: list[np.ndarray] = []
        self.dups: list[np.ndarray] = []
        self.acks = 0
        self.tcp_frames = 0

    def feed(self, table: PacketTable, sel: TcpFrames, part: dict[str, np.ndarray]) -> None:
        if sel.rows.shape[0] == 0:
            return
        stream, ws, mw = part["stream"], part["wireshark"], part["mailwire"]
        w = table.columns["warnings"][sel.rows]
        self.trunc.append(stream[(w & _TRUNC) != 0].astype(np.int64))
        self.tso.append(stream[(w & int(Warn.SUPER_SEGMENT)) != 0].astype(np.int64))
        self.ack_lost.append(stream[(ws & np.uint32(F_ACK_LOST_SEGMENT)) != 0].astype(np.int64))
        self.lost.append(stream[(ws & np.uint32(F_LOST_SEGMENT)) != 0].astype(np.int64))
        self.dups.append(stream[(mw & np.uint32(F_DUPLICATE_FRAME)) != 0].astype(np.int64))
        self.acks += int(np.count_nonzero((sel.cols["tflags"] & 0x10) != 0))
        self.tcp_frames += int(stream.shape[0])


def capture_quality(
    path: str, n_frames: int, connections: Sequence[Connection], qc: QualityCounter
) -> CaptureQuality:
    nconv = connections[-1].id + 1 if connections else 0  # numbers of a shard's: k, k + w, …

    def per_conn(parts: list[np.ndarray]) -> np.ndarray:
        if not parts:
            return np.zeros(nconv, np.int64)
        return np.bincount(np.concatenate(parts), minlength=nconv)

    ack_lost, lost, dups = per_conn(qc.ack_lost), per_conn(qc.lost), per_conn(qc.dups)
    trunc, tso = per_conn(qc.trunc), per_conn(qc.tso)
    conns: list[ConnQuality] = []
    one_dir = 0
    for c in connections:
        k = c.id
        od = c.c2s.pkts == 0 or c.s2c.pkts == 0
        one_dir += od
        if ack_lost[k] or lost[k] or trunc[k] or tso[k] or dups[k] or od:
            conns.append(
                ConnQuality(k, int(ack_lost[k]), int(lost[k]), int(trunc[k]), int(tso[k]), int(dups[k]), od)
            )
    acked_unseen = int(ack_lost.sum())
    q = CaptureQuality(
        path=path,
        frames=n_frames,
        tcp_frames=qc.tcp_frames,
        acks=qc.acks,
        acked_unseen=acked_unseen,
        capture_loss_pct=100.0 * acked_unseen / qc.acks if qc.acks else 0.0,
        truncated_frames=int(trunc.sum()),
        super_segments=int(tso.sum()),
        duplicate_frames=int(dups.sum()),
        one_direction_connections=one_dir,
        connections=conns,
    )
    return _noted(q)


def merged(parts: list[CaptureQuality]) -> CaptureQuality:
    """One capture's quality from its shards' (``TcpAnalyzer(shard=…)``: the same frames read,
    disjoint connections): counts added, connections joined in number order."""
    first = parts[0]
    acks = sum(p.acks for p in parts)
    acked_unseen = sum(p.acked_unseen for p in parts)
    q = CaptureQuality(
        path=first.path,
        frames=first.frames,
        tcp_frames=sum(p.tcp_frames for p in parts),
        acks=acks,
        acked_unseen=acked_unseen,
        capture_loss_pct=100.0 * acked_unseen / acks if acks else 0.0,
        truncated_frames=sum(p.truncated_frames for p in parts),
        super_segments=sum(p.super_segments for p in parts),
        duplicate_frames=sum(p.duplicate_frames for p in parts),
        one_direction_connections=sum(p.one_direction_connections for p in parts),
        connections=sorted((c for p in parts for c in p.connections), key=lambda c: c.conn_id),
    )
    return _noted(q)


def _noted(q: CaptureQuality) -> CaptureQuality:
    one_dir = q.one_direction_connections
    if q.super_segments:
        q.notes.append("TCP segments larger than the link MTU: captured on a sending host with TSO/GSO")
    if q.duplicate_frames:
        q.notes.append("the same packets were captured twice (several interfaces or a SPAN duplicating)")
    if q.truncated_frames:
        q.notes.append("frames cut by the snaplen: payload bytes missing from the capture, not the network")
    if q.capture_loss_pct >= 10:
        q.notes.append("many ACKs for data the capture never saw: the capture dropped packets")
    if one_dir:
        q.notes.append(f"{one_dir} connection(s) seen in one direction only: asymmetric capture point")
    return q


__all__ = ["CaptureQuality", "ConnQuality", "QualityCounter", "capture_quality", "merged"]
