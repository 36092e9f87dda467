"""The time-sequence graph on real captures, against tshark's own counts.

For every data direction of the single-connection captures below, the graph's retransmission
marks must equal tshark's retransmission-class flags on data segments (retransmission, fast and
spurious retransmission, out-of-order: all "bytes sent before"), and its zero-window marks the
number of ``tcp.analysis.zero_window`` packets sent by the receiver.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from mailwire.capture.read import read_table
from mailwire.report.graphs import series_from_columns, time_sequence_svg

CAPTURES = [
    "ppa3__tcp_retransmissions.pcapng",
    "ark__wireshark-retrans.pcap",
    "ppa3__tcp_zerowindowdead.pcapng",
    "ppa3__mail_sender_client_1.pcapng",
    "ppa3__tcp_dupack.pcapng",
    "sv__tcp-empty-sack.pcap",
]
RETRANS = (
    "(tcp.analysis.retransmission || tcp.analysis.fast_retransmission || "
    "tcp.analysis.spurious_retransmission || tcp.analysis.out_of_order) && tcp.len > 0"
)


def _tshark_count(tshark: str, path: Path, flt: str) -> int:
    out = subprocess.run(
        [tshark, "-n", "-r", str(path), "-Y", flt, "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return len(out.split())


@pytest.mark.parametrize("name", CAPTURES)
def test_graph_marks_match_tshark(name: str, shared_captures: Path, tshark: str) -> None:
    path = shared_captures / name
    if not path.exists():
        pytest.skip(f"{name} not in the corpus")
    t = read_table(path)
    c = t.columns
    tcp = np.nonzero(c["proto"] == 6)[0]
    ports = sorted({int(p) for p in c["sport"][tcp]})
    assert 1 <= len(ports) <= 2, "a single-connection capture (one or both directions captured)"
    for port in ports:
        i = int(tcp[c["sport"][tcp] == port][0])
        s = series_from_columns(c, tcp, (int(c["src_hi"][i]), int(c["src_lo"][i]), port), title=name)
        svg, st = time_sequence_svg(s)
        ET.fromstring(str(svg))
        assert st.retransmissions == _tshark_count(tshark, path, f"({RETRANS}) && tcp.srcport == {port}")
        others = [p for p in ports if p != port]
        zw = f"tcp.analysis.zero_window && tcp.srcport == {others[0]}" if others else ""
        assert st.zero_windows == (_tshark_count(tshark, path, zw) if zw else 0)
        data = _tshark_count(tshark, path, f"tcp.len > 0 && tcp.srcport == {port}")
        assert st.segments == data
