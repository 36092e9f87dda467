"""Crafted captures for what real traffic rarely shows, checked by hand and against tshark.

Each test writes a small pcap with tests/craft.py, runs mailwire, and checks (1) the
Wireshark-compatible flags and tcp.stream equal tshark's on every frame, (2) the values a
reader can work out from the frames themselves (stated next to each assertion).
"""

from __future__ import annotations

from pathlib import Path

from mailwire.capture.read import iter_tables
from mailwire.tcp import StreamChunk, StreamGap, TcpResult, analyze
from tests.craft import Flow, icmp_unreachable, ms, tcp_options, write
from tests.tcp.oracle import compare

C, S = "192.0.2.10", "198.51.100.20"


def _run(
    tmp_path: Path, name: str, frames: list[tuple[int, bytes]], tshark: str, with_stream: int | None = None
) -> TcpResult:
    path = write(tmp_path / f"{name}.pcap", frames)
    cmp = compare(tshark, path)
    assert cmp.disagreements == [], cmp.disagreements
    assert cmp.stream_disagreements == [], cmp.stream_disagreements
    assert cmp.stream_frames == (len(frames) if with_stream is None else with_stream)
    return analyze(iter_tables(path))


def _flags(res: TcpResult, frame: int, mode: str = "mailwire") -> set[str]:
    return set(res.flags_of(frame, mode=mode))


def test_sequence_wrap(tmp_path: Path, tshark: str) -> None:
    # client ISN just below 2^32: its 3 x 100 bytes cross the wrap
    f = Flow(C, 40001, S, 25, isn_c=0xFFFFFF60, isn_s=7)
    t = ms(1)
    frames = f.handshake(0)
    for i in range(3):
        frames.append(f.send(t + ms(10 * i), "c2s", bytes([65 + i]) * 100))
    frames.append(f.ack(t + ms(40), "s2c"))
    res = _run(tmp_path, "wrap", frames, tshark)
    assert all(not res.flags_of(n, mode="wireshark") for n in range(1, len(frames) + 1))
    assert all(not res.flags_of(n) for n in range(1, len(frames) + 1))
    conn = res.connections[0]
    assert conn.c2s.stream_bytes == 300 and conn.c2s.bytes == 300
    ev = res.stream_events(0)
    data = b"".join(e.data for e in ev if isinstance(e, StreamChunk) and e.direction == "c2s")
    assert data == b"A" * 100 + b"B" * 100 + b"C" * 100
    assert not [e for e in ev if isinstance(e, StreamGap)]


def test_port_reuse_starts_a_new_stream(tmp_path: Path, tshark: str) -> None:
    a = Flow(C, 40002, S, 25, isn_c=1000, isn_s=5000)
    frames = a.handshake(0)
    frames += [a.fin(ms(30), "c2s"), a.fin(ms(31), "s2c"), a.ack(ms(32), "c2s")]
    b = Flow(C, 40002, S, 25, isn_c=900_000, isn_s=77_000)  # same ports, new ISN
    frames += b.handshake(ms(100))
    res = _run(tmp_path, "reuse", frames, tshark)
    assert [int(s) for s in res.frames["stream"]] == [0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert _flags(res, 7, "wireshark") == {"reused_ports"}
    assert len(res.connections) == 2
    assert res.connections[0].conn_state == "SF" and res.connections[1].conn_state == "S1"
    assert res.connections[1].start_ns == ms(100)


def test_tso_super_segment_partially_acked(tmp_path: Path, tshark: str) -> None:
    f = Flow(C, 40003, S, 25)
    frames = f.handshake(0)
    big = bytes(range(256)) * 17 + b"x" * 8  # 4360 bytes in one host-side segment
    seq0 = f.nxt["c2s"]
    frames.append(f.send(ms(30), "c2s", big))  # frame 4
    frames.append(f.ack(ms(50), "s2c", ack=seq0 + 1460))  # frame 5: partial ACK
    # frame 6: the bytes after the partial ACK are resent (RTO), as a normal-size segment
    frames.append(f.resend(ms(400), "c2s", seq0 + 1460, big[1460:2920]))
    frames.append(f.ack(ms(420), "s2c", ack=seq0 + len(big)))  # frame 7
    res = _run(tmp_path, "tso", frames, tshark)
    assert "retransmission" in _flags(res, 6, "wireshark")
    # mailwire: the resent bytes were first carried by the super-segment (frame 4)
    i = int(res.frames["frame"].tolist().index(6))
    assert int(res.frames["mw_rto_frame"][i]) == 4
    assert int(res.frames["orig_frame"][i]) == 4
    assert abs(int(res.frames["mw_rto_ns"][i]) - ms(370)) < 1000
    chain = [c for c in res.chains if c.original_frame == 4]
    assert (
        len(chain) == 1 and [r.frame for r in chain[0].resends] == [6] and chain[0].resends[0].cause == "rto"
    )
    data = b"".join(
        e.data for e in res.stream_events(0) if isinstance(e, StreamChunk) and e.direction == "c2s"
    )
    assert data == big


def test_same_packet_on_two_interfaces(tmp_path: Path, tshark: str) -> None:
    f = Flow(C, 40004, S, 25)
    frames = f.handshake(0)
    seg = f.send(ms(30), "c2s", b"MAIL FROM:<a@example.org>\r\n")
    frames += [seg, (seg[0] + 40_000, seg[1])]  # captured again 40 us later: same IP id, same bytes
    frames.append(f.ack(ms(60), "s2c"))
    res = _run(tmp_path, "dup", frames, tshark)
    assert "retransmission" in _flags(res, 5, "wireshark")  # what Wireshark says (issue 19463)
    assert _flags(res, 5) == {"duplicate_frame"}  # what it is
    assert res.quality.duplicate_frames == 1
    assert res.connections[0].c2s.retransmitted_pkts == 1
    ch = [c for c in res.chains if c.original_frame == 4]
    assert ch and ch[0].resends[0].cause == "network_duplicate"


def test_syn_loss(tmp_path: Path, tshark: str) -> None:
    f = Flow(C, 40005, S, 25)
    frames = [f.syn(0), f.syn(ms(1000)), f.synack(ms(1010)), f.ack(ms(1020))]  # first SYN unanswered
    res = _run(tmp_path, "synloss", frames, tshark)
    assert "retransmission" in _flags(res, 2, "wireshark")
    conn = res.connections[0]
    assert conn.history == "ShA"  # Zeek records a repeated SYN with the same seq once
    assert conn.c2s.syn == 2
    assert conn.rtt_handshake_s is not None and abs(conn.rtt_handshake_s - 0.020) < 1e-6  # from the last SYN
    ch = [c for c in res.chains if c.original_frame == 1]
    assert ch and ch[0].intervals_s == [1.0] and ch[0].resends[0].cause == "rto"


def test_rto_backoff_chain_doubles(tmp_path: Path, tshark: str) -> None:
    f = Flow(C, 40006, S, 25)
    frames = f.handshake(0)
    data = b"D" * 1400
    seq = f.nxt["c2s"]
    frames.append(f.send(ms(100), "c2s", data))  # frame 4, never ACKed at first
    t = ms(100)
    for iv in (250, 500, 1000, 2000):
        t += ms(iv)
        frames.append(f.resend(t, "c2s", seq, data))  # frames 5..8
    frames.append(f.ack(t + ms(10), "s2c"))  # frame 9 finally ACKs
    res = _run(tmp_path, "rto", frames, tshark)
    for n in range(5, 9):
        assert _flags(res, n, "wireshark") == {"retransmission"}
        assert _flags(res, n) == {"retransmission"}
    (ch,) = [c for c in res.chains if c.original_frame == 4]
    assert ch.intervals_s == [0.25, 0.5, 1.0, 2.0]
    assert ch.doubling and {r.cause for r in ch.resends} == {"rto"}
    c2s = res.connections[0].c2s
    # data outstanding from frame 4 (t=0.1 s) until frame 9 (t=3.86 s)
    assert c2s.stall_frames == (4, 9)
    assert c2s.longest_stall_s is not None and abs(c2s.longest_stall_s - 3.76) < 1e-6
    assert c2s.retransmitted_bytes == 4 * 1400 and c2s.unique_bytes == 1400


def test_zero_window_episode(tmp_path: Path, tshark: str) -> None:
    f = Flow(C, 40007, S, 25)
    frames = f.handshake(0)
    frames.append(f.send(ms(100), "c2s", b"x" * 1000))  # 4
    frames.append(f.ack(ms(1000), "s2c", win=0))  # 5: receiver full (zero window from t=1 s)
    frames.append(f.send(ms(1300), "c2s", b"y"))  # 6: zero-window probe (1 byte)
    f.nxt["c2s"] -= 1  # the probe's byte is not accepted
    frames.append(f.ack(ms(1310), "s2c", win=0))  # 7: probe ACK, still zero
    frames.append(f.ack(ms(3500), "s2c", win=8192))  # 8: window opens again at t=3.5 s
    res = _run(tmp_path, "zwin", frames, tshark)
    assert _flags(res, 5, "wireshark") == {"zero_window"}
    assert _flags(res, 6, "wireshark") == {"zero_window_probe"}
    assert "zero_window_probe_ack" in _flags(res, 7, "wireshark")
    assert _flags(res, 8, "wireshark") == {"window_update"}
    (ep,) = res.connections[0].zero_window
    assert ep.direction == "s2c" and ep.start_frame == 5 and ep.end_frame == 8
    assert ep.duration_s is not None and abs(ep.duration_s - 2.5) < 1e-9


def test_ipv6_and_window_scaling(tmp_path: Path, tshark: str) -> None:
    f = Flow("2001:db8::1", 40008, "2001:db8::2", 25)
    frames = [
        f.syn(0, options=tcp_options(mss=1440, wscale=2)),
        f.synack(ms(10), options=tcp_options(mss=1440, wscale=3), win=100),
        f.ack(ms(20), win=100),
    ]
    # the SYN/ACK's window is never scaled: 100 bytes. The server has not sent a plain ACK yet,
    # so Wireshark (issue 14690) does not scale it either: 100 bytes fill the window
    frames.append(f.send(ms(30), "c2s", b"z" * 100, win=100))
    frames.append(f.ack(ms(60), "s2c", win=100))  # 100 << 3 = 800 bytes from now on
    frames.append(f.send(ms(70), "c2s", b"w" * 800, win=100))  # ends exactly at ack + 800
    res = _run(tmp_path, "v6", frames, tshark)
    assert _flags(res, 4, "wireshark") == {"window_full"}
    assert _flags(res, 6, "wireshark") == {"window_full"}
    conn = res.connections[0]
    assert conn.client == "2001:db8::1" and conn.server_port == 25
    assert conn.c2s.window_scale == 2 and conn.s2c.window_scale == 3 and conn.c2s.mss == 1440
    assert conn.c2s.ip_id_pattern == "none"


def test_icmp_quoting_tcp_gets_the_connection_stream(tmp_path: Path, tshark: str) -> None:
    f = Flow(C, 40009, S, 25)
    frames = f.handshake(0)
    seg = f.send(ms(30), "c2s", b"x" * 1400)
    frames.append(seg)
    router = "203.0.113.1"
    frames.append((ms(31), icmp_unreachable(router, C, seg[1], 20)))  # whole TCP header quoted
    frames.append((ms(32), icmp_unreachable(router, C, seg[1], 8)))  # RFC 792 minimum: 8 bytes
    other = Flow(C, 40010, S, 25)
    frames.append((ms(33), icmp_unreachable(router, C, other.send(ms(33), "c2s", b"y")[1], 20)))
    res = _run(tmp_path, "icmp", frames, tshark, with_stream=6)  # tcp.stream equal to tshark's
    assert [int(s) for s in res.frames["stream"]] == [0, 0, 0, 0, 0, 1]  # the 8-byte quote: none
    assert len(res.connections) == 2
