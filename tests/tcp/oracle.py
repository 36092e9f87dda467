"""tshark as the oracle: per-frame tcp.stream and tcp.analysis.* flags of a capture."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# tshark 4.0 field for each of our flag names (checked with `tshark -G fields`)
TSHARK_FLAGS: dict[str, str] = {
    "retransmission": "tcp.analysis.retransmission",
    "fast_retransmission": "tcp.analysis.fast_retransmission",
    "spurious_retransmission": "tcp.analysis.spurious_retransmission",
    "out_of_order": "tcp.analysis.out_of_order",
    "lost_segment": "tcp.analysis.lost_segment",
    "ack_lost_segment": "tcp.analysis.ack_lost_segment",
    "duplicate_ack": "tcp.analysis.duplicate_ack",
    "zero_window": "tcp.analysis.zero_window",
    "zero_window_probe": "tcp.analysis.zero_window_probe",
    "zero_window_probe_ack": "tcp.analysis.zero_window_probe_ack",
    "window_full": "tcp.analysis.window_full",
    "window_update": "tcp.analysis.window_update",
    "keep_alive": "tcp.analysis.keep_alive",
    "keep_alive_ack": "tcp.analysis.keep_alive_ack",
    "reused_ports": "tcp.analysis.reused_ports",
}
TSHARK_VALUES = (
    "tcp.analysis.duplicate_ack_num",
    "tcp.analysis.duplicate_ack_frame",
    "tcp.analysis.ack_rtt",
    "tcp.analysis.initial_rtt",
    "tcp.analysis.bytes_in_flight",
    "tcp.analysis.rto",
    "tcp.analysis.rto_frame",
)


@dataclass
class TsharkFrame:
    stream: int | None
    flags: frozenset[str]
    values: dict[str, str]


def run_tshark(tshark: str, path: Path, timeout: float = 300) -> dict[int, TsharkFrame]:
    """frame number -> what tshark 4.0 says about that frame's TCP layer (outermost)."""
    fields = ["frame.number", "tcp.stream", *TSHARK_FLAGS.values(), *TSHARK_VALUES]
    cmd = [tshark, "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    out: dict[int, TsharkFrame] = {}
    names = list(TSHARK_FLAGS)
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < len(fields) or not parts[0]:
            continue
        stream = int(parts[1]) if parts[1] else None
        flags = frozenset(n for n, v in zip(names, parts[2 : 2 + len(names)], strict=True) if v)
        vals = {k: v for k, v in zip(TSHARK_VALUES, parts[2 + len(names) :], strict=False) if v}
        out[int(parts[0])] = TsharkFrame(stream, flags, vals)
    return out


@dataclass
class Comparison:
    """Frame-by-frame comparison of mailwire's Wireshark-compatible flags with tshark's."""

    path: str
    flagged: int = 0  # frames either tool flags
    agree: int = 0  # of those, frames where the flag sets are identical
    stream_frames: int = 0
    stream_agree: int = 0
    per_flag: dict[str, list[int]] | None = None  # name -> [both, tshark only, mailwire only]
    disagreements: list[tuple[int, frozenset[str], frozenset[str]]] | None = None
    stream_disagreements: list[tuple[int, int | None, int | None]] | None = None


def compare(tshark: str, path: Path) -> Comparison:
    """Run tshark and mailwire on ``path`` and compare frame by frame."""
    from mailwire.capture.read import iter_tables
    from mailwire.tcp import analyze, flag_names

    ts = run_tshark(tshark, path)
    res = analyze(iter_tables(path), reassemble=False)
    fr = res.frames
    ours: dict[int, tuple[int, frozenset[str]]] = {}
    for f, s, m in zip(fr["frame"].tolist(), fr["stream"].tolist(), fr["wireshark"].tolist(), strict=True):
        ours[f] = (s, frozenset(flag_names(m)))
    cmp = Comparison(str(path), per_flag={n: [0, 0, 0] for n in TSHARK_FLAGS}, disagreements=[],
                     stream_disagreements=[])  # fmt: skip
    assert cmp.per_flag is not None and cmp.disagreements is not None and cmp.stream_disagreements is not None
    for frame in sorted(set(ts) | set(ours)):
        t = ts.get(frame)
        t_stream = t.stream if t else None
        t_flags = t.flags if t else frozenset()
        o_stream, o_flags = ours.get(frame, (None, frozenset()))
        if t_stream is not None or o_stream is not None:
            cmp.stream_frames += 1
            if t_stream == o_stream:
                cmp.stream_agree += 1
            else:
                cmp.stream_disagreements.append((frame, t_stream, o_stream))
        if t_flags or o_flags:
            cmp.flagged += 1
            if t_flags == o_flags:
                cmp.agree += 1
            else:
                cmp.disagreements.append((frame, t_flags, o_flags))
        for name in t_flags | o_flags:
            cmp.per_flag[name][
                0 if name in t_flags and name in o_flags else (1 if name in t_flags else 2)
            ] += 1
    return cmp
