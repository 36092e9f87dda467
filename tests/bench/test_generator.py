"""The benchmark capture generator must not rot: tshark dissects its output cleanly and finds
exactly the retransmissions (frames, sequence numbers, RTO intervals) that the generator's seeded
truth sidecar says it planted."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "bench" / "gen_smtp_capture.py"

# Every expert entry a consistent SMTP capture with loss may carry (plus "Duplicate ACK (#n)").
# Anything else (malformed packets, "previous segment not captured", "ACKed unseen segment",
# window problems …) means the generator wrote inconsistent TCP.
ALLOWED_EXPERT = {
    "This frame is a (suspected) retransmission",
    "This frame is a (suspected) fast retransmission",
    "This frame initiates the connection closing",
    "This frame undergoes the connection closing",
    "Connection establish request (SYN): server port 25",
    "Connection establish acknowledge (SYN+ACK): server port 25",
    "Connection finish (FIN)",
    "Connection reset (RST)",
}
FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "tcp.stream",
    "tcp.seq_raw",
    "tcp.len",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "tcp.analysis.duplicate_ack",
    "tcp.analysis.rto",
    "tcp.analysis.rto_frame",
    "ip.checksum.status",
    "tcp.checksum.status",
    "smtp.rsp.parameter",
]


def _generate(tmp: Path, nano: bool) -> tuple[Path, dict[str, Any]]:
    # A slow session rate and small bodies put many sessions (and their trouble) into 3000 frames;
    # seed 5 is one whose capture holds every kind of chain and finished stalls (asserted below).
    out = tmp / ("gen-ns.pcap" if nano else "gen-us.pcap")
    argv = [
        sys.executable,
        str(GEN),
        "--packets",
        "3000",
        "--seed",
        "5",
        "--out",
        str(out),
        "--rate",
        "1.5",
        "--body-median",
        "3000",
        "--trouble",
        "3",
    ]
    if nano:
        argv.append("--nano")
    subprocess.run(argv, check=True, timeout=300, capture_output=True)
    return out, json.loads(Path(str(out) + ".truth.json").read_text())


def _tshark_rows(tshark: str, pcap: Path) -> list[dict[str, str]]:
    argv = [
        tshark,
        "-n",
        "-r",
        str(pcap),
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=\t",
    ]
    for f in FIELDS:
        argv += ["-e", f]
    out = subprocess.run(argv, check=True, timeout=300, capture_output=True, text=True).stdout
    return [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in out.splitlines()]


@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_generated_capture_matches_its_truth(tmp_path: Path, tshark: str, nano: bool) -> None:
    pcap, truth = _generate(tmp_path, nano)
    assert truth["packets"] == 3000
    assert pcap.stat().st_size == truth["bytes"]

    # 1. Clean dissection: only the expected expert entries, no malformed frames, no errors.
    expert = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-o", "ip.check_checksum:TRUE", "-q", "-z", "expert"],
        check=True,
        timeout=300,
        capture_output=True,
        text=True,
    ).stdout
    summaries = set()
    for line in expert.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].isdigit():
            summaries.add(parts[3].strip())
    assert "Errors" not in expert and "Malformed" not in expert, expert
    unexpected = {x for x in summaries - ALLOWED_EXPERT if not re.fullmatch(r"Duplicate ACK \(#\d+\)", x)}
    assert not unexpected, f"unexpected expert entries: {unexpected}"

    rows = _tshark_rows(tshark, pcap)
    assert len(rows) == 3000
    # checksum status 1 = good (0 bad, 2 unverified); IPv6 rows have no IP checksum
    assert all(r["ip.checksum.status"] in ("", "1") for r in rows), "IPv4 header checksum not good"
    assert all(r["tcp.checksum.status"] == "1" for r in rows), "TCP checksum not good"
    assert {r["ip.checksum.status"] for r in rows} == {"", "1"}, "IPv4 and IPv6 both present"
    by_frame = {int(r["frame.number"]): r for r in rows}

    # 2. Sessions: tshark's tcp.stream count is the truth's session count.
    assert len({r["tcp.stream"] for r in rows}) == truth["summary"]["sessions"]

    # 3. Retransmissions: tshark flags exactly the frames the truth planted, same seq and length.
    chains = truth["retransmissions"]
    want = {f for c in chains for f in c["frames"][1:]}
    flagged = {
        int(r["frame.number"])
        for r in rows
        if r["tcp.analysis.retransmission"]
        or r["tcp.analysis.fast_retransmission"]
        or r["tcp.analysis.spurious_retransmission"]
    }
    assert flagged == want, (
        f"tshark only: {sorted(flagged - want)[:10]}, truth only: {sorted(want - flagged)[:10]}"
    )
    kinds = Counter(c["kind"] for c in chains)
    assert kinds["rto"] >= 3 and kinds["syn_rto"] >= 2 and kinds["go_back_n"] >= 3, kinds
    assert kinds["fast_retransmit"] >= 2, kinds
    fast = {int(r["frame.number"]) for r in rows if r["tcp.analysis.fast_retransmission"]}
    assert fast == {c["frames"][1] for c in chains if c["kind"] == "fast_retransmit"}
    # every segment after the hole drew a duplicate ACK (with a SACK block), nothing else did
    dup = {int(r["frame.number"]) for r in rows if r["tcp.analysis.duplicate_ack"]}
    assert dup == set(truth["duplicate_ack_frames"]) and len(dup) >= 6

    # 4. Timing: tshark's timestamps give the planned intervals (to the file's resolution), its
    #    tcp.analysis.rto is the time since the original, and timer-driven resends back off x2.
    tol = Decimal("3e-9") if nano else Decimal("1.003e-6")  # µs files: each timestamp floored
    longest = 0
    for c in chains:
        fr = [by_frame[f] for f in c["frames"]]
        assert {int(r["tcp.seq_raw"]) for r in fr} == {c["seq"]}
        assert {int(r["tcp.len"]) for r in fr} == {c["len"]}
        t = [Decimal(r["frame.time_epoch"]) for r in fr]
        assert [int(x * 10**9) for x in t] == c["ts_ns"]
        for i, planned in enumerate(c["planned_intervals_s"]):
            assert abs((t[i + 1] - t[i]) - Decimal(str(planned))) <= tol, (c, i)
            if c["kind"] in ("rto", "syn_rto"):
                # Wireshark's rto: time since the oldest unacked segment, here the original (for
                # go-back-N resends it names an older segment, a known limitation, not checked;
                # fast retransmissions carry none)
                assert Decimal(fr[i + 1]["tcp.analysis.rto"]) == t[i + 1] - t[0], (c, i)
                assert int(fr[i + 1]["tcp.analysis.rto_frame"]) == c["frames"][0]
        if c["kind"] in ("rto", "syn_rto"):
            rto = [Decimal(str(x)) for x in c["rto_s"]]
            assert len(rto) == len(c["frames"]) - 1
            for a, b in itertools.pairwise(rto):
                assert abs(b - 2 * a) <= Decimal("2e-9")
            # after the first resend the timer runs from the previous resend: interval == RTO
            for i in range(1, len(rto)):
                assert abs((t[i + 1] - t[i]) - rto[i]) <= tol + Decimal("1e-9"), (c, i)
            assert t[1] - t[0] >= rto[0] - tol
            if c["kind"] == "syn_rto":
                assert rto[0] == 1
            else:
                assert Decimal("0.2") < rto[0] < Decimal("0.6")  # RTO_MIN + RTT
            longest = max(longest, len(rto))
    assert longest >= 4, "no RTO chain with 4 or more resends: backoff untested"

    # 5. Stalled sessions that end inside the capture end with the MX's 421 4.4.2 timeout.
    stalls = [s for s in truth["sessions"] if s["outcome"] == "stall_421" and not s["truncated"]]
    timeouts = [r for r in rows if "Error: timeout exceeded" in r["smtp.rsp.parameter"]]
    assert len(timeouts) == len(stalls) >= 1
    for s in stalls:
        assert any(s["first_frame"] <= int(r["frame.number"]) <= s["last_frame"] for r in timeouts)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    """Same seed, same bytes: benchmark runs are comparable across machines and days."""
    a, _ = _generate(tmp_path / "a", nano=False)
    b, _ = _generate(tmp_path / "b", nano=False)
    assert a.read_bytes() == b.read_bytes()


def test_runner_reports_missing_tools_and_agreeing_decoders(tmp_path: Path, tshark: str) -> None:
    """bench/run.py on a small capture with tcpdump and tcptrace hidden from PATH: they are
    reported missing (not fatal), and mailwire's decoder and dpkt count the same TCP payload."""
    pytest.importorskip("dpkt")
    pcap, truth = _generate(tmp_path, nano=False)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "tshark").symlink_to(tshark)
    env = {"PATH": f"{bindir}:{Path(sys.executable).parent}", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), str(pcap), "--only", "tcp", "--only", "dpkt",
         "--only", "decode", "--only", "tshark expert", "--json", "-", "--timeout", "300"],
        check=True, timeout=600, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    doc = json.loads(out[out.index("\n{") + 1 :])
    tools = {t["name"]: t for t in doc["tools"]}
    assert doc["packets"] == truth["packets"] == 3000
    assert tools["tcpdump"]["status"] == "missing"
    assert tools["tcptrace"]["status"] == "missing"
    assert tools["tshark expert"]["status"] == "ok"
    dp, mw = tools["dpkt"], tools["mailwire decode"]
    assert dp["status"] == mw["status"] == "ok"
    assert dp["output"]["packets"] == mw["output"]["packets"] == 3000
    assert (mw["output"]["tcp"], mw["output"]["payload"]) == (dp["output"]["tcp"], dp["output"]["payload"])


def test_runner_memory_scaling(tmp_path: Path) -> None:
    """--scale: mailwire analyze on a second, larger capture; the reported growth per million
    packets is the straight line through the two measured peaks."""
    small = tmp_path / "small.pcap"
    big = tmp_path / "big.pcap"
    for out, n in ((small, "2000"), (big, "6000")):
        subprocess.run(
            [sys.executable, str(GEN), "--packets", n, "--seed", "3", "--out", str(out)],
            check=True, timeout=300, capture_output=True,
        )  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), str(small), "--only", "mailwire analyze",
         "--scale", str(big), "--json", "-", "--timeout", "300"],
        check=True, timeout=600, capture_output=True, text=True,
    ).stdout  # fmt: skip
    doc = json.loads(out[out.index("\n{") + 1 :])
    first = next(t for t in doc["tools"] if t["name"] == "mailwire analyze -j1")
    sc = doc["memory_scaling"]
    assert first["status"] == "ok" and sc["packets"] == 6000 and sc["peak_rss_mb"] > 0
    slope = (sc["peak_rss_mb"] - first["peak_rss_mb"]) / (4000 / 1e6)
    assert abs(sc["mb_per_million_packets"] - slope) < 0.1
    assert abs(sc["fixed_mb"] - (first["peak_rss_mb"] - slope * 2000 / 1e6)) < 0.1
    assert "memory scaling, mailwire analyze -j1: 2,000 packets" in out
    # the command as users run it, measured the same way
    users = next(t for t in doc["tools"] if t["name"] == "mailwire analyze")
    sw = doc["memory_scaling_workers"]
    assert users["status"] == "ok" and sw["packets"] == 6000 and sw["peak_rss_mb"] > 0
    slope = (sw["peak_rss_mb"] - users["peak_rss_mb"]) / (4000 / 1e6)
    assert abs(sw["mb_per_million_packets"] - slope) < 0.1
    assert "memory scaling, mailwire analyze: 2,000 packets" in out
