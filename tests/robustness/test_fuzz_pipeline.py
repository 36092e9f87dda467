"""Mutation fuzzing of the whole pipeline, in-process: capture → tcp → smtp → compare → diagnose → report.

Hypothesis mutates real captures (the corpus' SMTP traces and the bundled incident): bytes flipped,
runs overwritten, length fields rewritten, chunks cut, duplicated or inserted, the file truncated;
random bytes are spliced into the real mail log. The mutants are written to temporary files and handed to the
public entry points (``analyze_captures``, ``run_diagnosis`` and the report's ``emit`` with HTML,
JSON and extract outputs). Whatever the damage, no exception may escape, the JSON must still follow
its schema and every cited frame must lie inside the mutated file's frame count as mailwire itself
read it. The number of examples is bounded (``MAILWIRE_FUZZ_EXAMPLES``, default 60 per test; under
30 s for the file on a loaded two-core machine).
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_CAPTURES
from tests.robustness.conftest import EXAMPLE, validate, walk_frames

EXAMPLES = int(os.environ.get("MAILWIRE_FUZZ_EXAMPLES", "60"))
SEEDS = [
    SHARED_CAPTURES / "zeek__smtp.pcap",
    SHARED_CAPTURES / "ark__smtp-data-521.pcap",
    SHARED_CAPTURES / "zeek__smtp_smtp-bdat-cmd-invalid.pcapng",
    SHARED_CAPTURES / "ppa3__mail_sender_server_2.pcapng",
    SHARED_CAPTURES / "sv__smtp-pipelining.pcap",
    EXAMPLE / "sender.pcap",
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("MAILWIRE_FUZZ_RANDOM") is None,  # fixed examples in CI; set it to explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def _seeds() -> list[bytes]:
    have = [p for p in SEEDS if p.is_file()]
    if len(have) < 2:
        pytest.skip("shared capture corpus / examples not found")
    return [p.read_bytes() for p in have]


SEED_BYTES: list[bytes] = [p.read_bytes() for p in SEEDS if p.is_file()]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real capture with 1-4 structured mutations; the file header is kept most of the time."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        if n < 32:
            break
        kind = draw(st.sampled_from(["flip", "overwrite", "length", "cut", "dup", "insert", "truncate"]))
        lo = 24 if draw(st.booleans()) else 0  # usually spare the file header
        at = draw(st.integers(lo, n - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            blob = draw(st.binary(min_size=1, max_size=64))
            data[at : at + len(blob)] = blob
        elif kind == "length":  # a 32-bit length field set to something hostile
            val = draw(st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 65535 + 1, 12]))
            if at + 4 <= n:
                data[at : at + 4] = struct.pack(draw(st.sampled_from(["<I", ">I"])), val)
        elif kind == "cut":
            ln = draw(st.integers(1, 200))
            del data[at : at + ln]
        elif kind == "dup":
            ln = draw(st.integers(1, 400))
            data[at:at] = data[at : at + ln]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=100))
        else:
            del data[at:]
    return bytes(data)


def _frames_cited(doc: Any) -> list[tuple[str | None, int]]:
    out: list[tuple[str | None, int]] = []
    walk_frames(doc, lambda cap, n, holder, key: out.append((cap, n)))
    return out


def _check_frames_in_range(doc: Any, counts: dict[str, int]) -> None:
    for cap, n in _frames_cited(doc):
        if cap in counts:
            assert 1 <= n <= counts[cap], (
                f"frame {n} cited in {cap}, which mailwire read as {counts[cap]} frames"
            )


@FUZZ
@given(data=mutated(SEED_BYTES or [b""]))
def test_analyze_survives_mutations(data: bytes) -> None:
    _seeds()
    from mailwire.analyze import render
    from mailwire.smtp.pipeline import analyze_captures

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.pcap"
        p.write_bytes(data)
        result = analyze_captures([str(p)])
        doc = result.to_json()
        validate(doc, "analyze")
        json.dumps(doc)
        counts = {c["path"]: c["frames"] for c in doc["captures"]}
        _check_frames_in_range(doc, counts)
        render(result, io.StringIO(), frames=True, width=80)


def _diagnose(captures: list[bytes], log: bytes, d: Path, *, html: bool) -> dict[str, Any]:
    from mailwire.diagnose.engine import run_diagnosis
    from mailwire.report.outputs import emit

    maillog = (EXAMPLE / "maillog").read_bytes() if (EXAMPLE / "maillog").is_file() else b""
    paths = []
    for i, data in enumerate(captures):
        p = d / f"c{i}.pcap"
        p.write_bytes(data)
        paths.append(str(p))
    pl = d / "mail.log"
    cut = len(maillog) // 2
    pl.write_bytes(maillog[:cut] + log + maillog[cut:])  # junk spliced into a real log
    run = run_diagnosis([str(pl)], paths)
    out, err = io.StringIO(), io.StringIO()
    code = emit(
        run,
        html=str(d / "r.html") if html else None,
        json_out=str(d / "d.json"),
        extract=str(d / "cited") if html else None,
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    assert out.getvalue().strip(), "no terminal report"
    doc: dict[str, Any] = json.loads((d / "d.json").read_text(encoding="utf-8"))
    validate(doc, "diagnose")
    if html:
        text = (d / "r.html").read_text(encoding="utf-8")
        assert "<script" not in text.lower()
    return doc


@FUZZ
@given(a=mutated(SEED_BYTES or [b""]), b=mutated(SEED_BYTES or [b""]), log=st.binary(max_size=2000))
def test_diagnose_two_points_survives_mutations(a: bytes, b: bytes, log: bytes) -> None:
    """Two mutated capture points (compare runs) and a damaged log: terminal and JSON outputs.

    The HTML report and --extract are left out here: with two captures and one unreadable they
    raise (recorded as xfails in test_every_command.py)."""
    _seeds()
    with tempfile.TemporaryDirectory() as d:
        _diagnose([a, b], log, Path(d), html=False)


@FUZZ
@given(a=mutated(SEED_BYTES or [b""]), log=st.binary(max_size=2000))
def test_diagnose_report_survives_mutations(a: bytes, log: bytes) -> None:
    """One mutated capture and a damaged log: every output (terminal, JSON, HTML, --extract)."""
    _seeds()
    with tempfile.TemporaryDirectory() as d:
        _diagnose([a], log, Path(d), html=True)
