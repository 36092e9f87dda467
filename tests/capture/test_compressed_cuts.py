"""Compressed captures cut short or damaged part-way: what the peers recover, we recover.

Peers: the real ``gzip``/``bzip2``/``xz``/``zstd`` tools make the files (two streams concatenated,
as appending rotations do) and decompress the cut files (``-dc`` writes everything before the cut);
tshark counts the complete frames in what they recovered. Our count must match, and the cut must
be reported once, naming the file and the compressed byte offset (the on-disk size).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mailwire.capture.read import CaptureError, read_table
from mailwire.capture.source import open_source

CAPTURE = "sv__smtp-data-rejected.pcap"
TOOLS = {
    "gzip": ["gzip", "-c"],
    "bzip2": ["bzip2", "-1", "-c"],
    "xz": ["xz", "-c"],
    "zstd": ["zstd", "-q", "-c"],
}


def _tool(cmd: list[str], data: bytes) -> bytes:
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} not installed")
    return subprocess.run(cmd, input=data, capture_output=True, timeout=60).stdout


def _tshark_frames(tshark: str, data: bytes, tmp: Path) -> int:
    p = tmp / "peer.pcap"
    p.write_bytes(data)
    cmd = [tshark, "-r", str(p), "-T", "fields", "-e", "frame.number"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return len(res.stdout.split())


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_cut_compressed_capture_keeps_frames_before_the_cut(
    kind: str, shared_captures: Path, tshark: str, tmp_path: Path
) -> None:
    raw = (shared_captures / CAPTURE).read_bytes()
    every = read_table(shared_captures / CAPTURE)
    half = len(raw) // 2
    whole = _tool(TOOLS[kind], raw[:half]) + _tool(TOOLS[kind], raw[half:])  # two streams, one file
    assert len(read_table(_write(tmp_path, kind, whole))) == _tshark_frames(tshark, raw, tmp_path)
    for cut in (len(whole) * 3 // 4, len(whole) - 1):
        path = _write(tmp_path, kind, whole[:cut])
        recovered = _tool([TOOLS[kind][0], "-dc"], whole[:cut])
        expected = _tshark_frames(tshark, recovered, tmp_path)
        assert expected > 0, f"{kind}: the peer recovers frames before byte {cut}"
        table = read_table(path)
        # bzip2 -dc drops the last block it had decoded when the end-of-stream marker is missing;
        # we keep it: at least what the peer recovers, and every frame is the original's frame
        assert len(table) >= expected, f"{kind} cut at {cut}"
        assert (table["seq"] == every["seq"][: len(table)]).all()
        assert (table["ts_ns"] == every["ts_ns"][: len(table)]).all()
        said = [str(i) for i in table.issues if "stream ends early" in i.message]
        assert len(said) == 1, [str(i) for i in table.issues]
        assert str(path) in said[0] and f"compressed byte offset {cut} " in said[0], said[0]


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_cut_before_any_data_names_the_on_disk_size(kind: str, shared_captures: Path, tmp_path: Path) -> None:
    whole = _tool(TOOLS[kind], (shared_captures / CAPTURE).read_bytes())
    for cut in (12, 40):
        path = _write(tmp_path, kind, whole[:cut])
        with pytest.raises(CaptureError) as exc:
            read_table(path)
        msg = str(exc.value)
        assert str(path) in msg and "ends early" in msg and f"{cut} bytes on disk" in msg, msg
        assert "empty" not in msg, msg


def test_damaged_second_stream_keeps_the_first(shared_captures: Path, tshark: str, tmp_path: Path) -> None:
    raw = (shared_captures / CAPTURE).read_bytes()
    half = len(raw) // 2
    first = _tool(TOOLS["gzip"], raw[:half])
    second = bytearray(_tool(TOOLS["gzip"], raw[half:]))
    second[3] = 0xE0  # reserved gzip header flag bits: zcat and zlib both refuse the member
    path = _write(tmp_path, "gzip", first + bytes(second))
    table = read_table(path)
    every = read_table(shared_captures / CAPTURE)
    assert len(table) == _tshark_frames(tshark, raw[:half], tmp_path)
    assert (table["seq"] == every["seq"][: len(table)]).all()
    said = [str(i) for i in table.issues if "gzip stream is corrupt" in i.message]
    assert len(said) == 1 and f"compressed byte offset {len(first)}:" in said[0], said


def test_each_read_is_bounded_by_the_request(tmp_path: Path) -> None:
    """A bomb (64 MiB of zeros in ~10 KB of xz) never yields more than was asked per call."""
    bomb = tmp_path / "bomb.xz"
    bomb.write_bytes(_tool(["xz", "-c"], b"\x00" * (64 << 20)))
    with open_source(bomb) as src:
        sizes = [len(src.read(1 << 16)) for _ in range(50)]
    assert max(sizes) == 1 << 16 and src.problem is None


def _write(tmp: Path, kind: str, data: bytes) -> Path:
    p = tmp / f"cut.pcap.{kind}"
    p.write_bytes(data)
    return p
