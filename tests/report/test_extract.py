"""``--extract`` output read back by tshark: it holds exactly the cited connections, whole."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mailwire.report.extract import ConnSpec, extract_connections


def _convs(tshark: str, path: Path) -> dict[tuple[str, str], int]:
    """Frames per TCP conversation as tshark dissects them: (endpoint, endpoint) sorted -> frames."""
    out = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(path),
            "-Y",
            "tcp && !icmp && !icmpv6",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.dstport",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    convs: dict[tuple[str, str], int] = {}
    for line in out.splitlines():
        s4, s6, sp, d4, d6, dp = line.split(",")
        key = tuple(sorted((f"{s4 or s6}:{sp}", f"{d4 or d6}:{dp}")))
        convs[(key[0], key[1])] = convs.get((key[0], key[1]), 0) + 1
    return convs


@pytest.mark.parametrize(
    ("name", "picks"),
    [
        (
            "zeek__smtp.pcap",
            [("10.10.1.4", 1470, "74.53.140.153", 25), ("192.168.133.100", 49648, "192.168.133.102", 25)],
        ),
        ("ppa3__mail_sender_server_2.pcapng", [("172.16.16.221", 56694, "172.16.16.231", 25)]),
    ],
)
def test_extract_holds_exactly_the_cited_connections(
    name: str, picks: list[tuple[str, int, str, int]], shared_captures: Path, tshark: str, tmp_path: Path
) -> None:
    src = shared_captures / name
    if not src.exists():
        pytest.skip(f"{name} not in the corpus")
    before = _convs(tshark, src)
    assert len(before) > len(picks)  # the capture has other connections to leave out
    out = tmp_path / "extract.pcap"
    res = extract_connections(src, [ConnSpec(*p) for p in picks], out)
    after = _convs(tshark, out)
    want = {
        tuple(sorted((f"{c}:{cp}", f"{s}:{sp}"))): before[tuple(sorted((f"{c}:{cp}", f"{s}:{sp}")))]
        for c, cp, s, sp in picks
    }
    assert after == want
    # Plus the ICMP errors quoting those connections' packets (tshark dissects the quoted TCP header).
    icmp = 0
    for c, cp, s, sp in picks:
        r = subprocess.run(
            [
                tshark,
                "-n",
                "-r",
                str(src),
                "-Y",
                f"(icmp || icmpv6) && ip.addr == {c} && ip.addr == {s} && "
                f"tcp.port == {cp} && tcp.port == {sp}",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        icmp += len(r.stdout.split())
    assert res.frames == sum(want.values()) + icmp and res.skipped_other_link == 0

    # Same bytes: tshark's TCP analysis of the extract flags the same number of retransmissions.
    def flags(p: Path) -> int:
        r = subprocess.run(
            [tshark, "-n", "-r", str(p), "-Y", "tcp.analysis.flags", "-T", "fields", "-e", "frame.number"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return len(r.stdout.split())

    if name == "ppa3__mail_sender_server_2.pcapng":
        assert flags(out) == 0


def test_time_window_excludes_a_reused_port(shared_captures: Path, tshark: str, tmp_path: Path) -> None:
    src = shared_captures / "zeek__smtp.pcap"
    if not src.exists():
        pytest.skip("zeek__smtp.pcap not in the corpus")
    out = tmp_path / "none.pcap"
    res = extract_connections(src, [ConnSpec("10.10.1.4", 1470, "74.53.140.153", 25, 0, 1)], out)
    assert res.frames == 0
    assert _convs(tshark, out) == {}
