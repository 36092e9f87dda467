"""A connection translated by a box between two capture points (SNAT: new client address and
port) is followed into the downstream capture: ``spec_at`` maps it through compare's connection
matching, and the downstream extract holds the translated connection, read back by tshark."""

from __future__ import annotations

import subprocess
from pathlib import Path

from report_synth import smtp_dialogue_frames

from mailwire.capture.write import write_pcap
from mailwire.diagnose.engine import run_diagnosis
from mailwire.report.outputs import write_extracts
from mailwire.report.page import spec_at

DIALOGUE = [
    ("s", b"220 mx.example.net ESMTP\r\n"),
    ("c", b"EHLO mail.example.org\r\n"),
    ("s", b"250 mx.example.net\r\n"),
    ("c", b"MAIL FROM:<a@example.org>\r\n"),
    ("s", b"250 2.1.0 Ok\r\n"),
    ("c", b"RCPT TO:<b@example.net>\r\n"),
    ("s", b"554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org\r\n"),
    ("c", b"QUIT\r\n"),
    ("s", b"221 2.0.0 Bye\r\n"),
]


def test_translated_connection_is_followed(tmp_path: Path, tshark: str) -> None:
    up = smtp_dialogue_frames(DIALOGUE)
    # A second, unrelated connection downstream that must stay out of the extract.
    other = smtp_dialogue_frames(DIALOGUE[:3], client=("198.51.100.2", 61001), t0_ns=up[0][0] + 50_000_000)
    down = smtp_dialogue_frames(DIALOGUE, client=("198.51.100.2", 61000), t0_ns=up[0][0] + 200_000)
    write_pcap(tmp_path / "server.pcap", up)
    write_pcap(tmp_path / "edge.pcap", sorted(down + other))
    run = run_diagnosis([], [str(tmp_path / "server.pcap"), str(tmp_path / "edge.pcap")])
    upstream = next(s for s in run.facts.sessions if s.capture.endswith("server.pcap"))
    sp = spec_at(run, upstream, str(tmp_path / "edge.pcap"))
    assert (sp.client, sp.client_port, sp.server, sp.server_port) == (
        "198.51.100.2",
        61000,
        "198.51.100.25",
        25,
    )
    run.cited = [upstream]  # cite only the upstream view: the edge extract must follow it
    written = {Path(w["capture"]).name: w for w in write_extracts(run, tmp_path / "x")}
    edge_x = written["edge.pcap"]["path"]
    out = subprocess.run(
        [tshark, "-n", "-r", edge_x, "-T", "fields", "-e", "ip.src", "-e", "tcp.srcport"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split("\n")  # fmt: skip
    ends = {tuple(line.split("\t")) for line in out if line}
    assert ends == {("198.51.100.2", "61000"), ("198.51.100.25", "25")}
    assert written["edge.pcap"]["frames"] == len(down)
