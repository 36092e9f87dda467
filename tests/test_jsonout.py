"""The JSON writer (orjson) reads back as what the standard library's encoder writes, for any
document the commands can build, and still writes what orjson refuses."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire import jsonout
from mailwire.capture.read import iter_tables
from mailwire.smtp.pipeline import analyze_captures
from tests.conftest import ROOT, corpus_captures, generated_capture

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_docs = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text() | st.integers(min_value=-(2**31), max_value=2**31), inner, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_docs)
def test_reads_back_as_the_standard_encoder_writes(doc: Any) -> None:
    assert json.loads(jsonout.dumps(doc)) == json.loads(json.dumps(doc, ensure_ascii=False))


def test_what_orjson_refuses_is_still_written() -> None:
    doc = {"big": 2**70, "lone": "a\ud800b", 3: [math.nan], "np": np.int64(7), "f": np.float64(0.5)}
    back = json.loads(jsonout.dumps(doc))
    assert back == {"big": 2**70, "lone": "a\ud800b", "3": [None], "np": 7, "f": 0.5}
    assert json.loads(jsonout.dumps({"x": math.inf, "n": np.int32(4)})) == {"x": None, "n": 4}
    out = io.StringIO()
    jsonout.write({"é": "\x00\u2028<script>"}, out)  # escaped for JSON, UTF-8 kept
    assert out.getvalue().endswith("\n") and json.loads(out.getvalue()) == {"é": "\x00\u2028<script>"}


def test_the_analyze_document_reads_back_the_same() -> None:
    inc = ROOT / "examples" / "incident"
    doc = analyze_captures([inc / "sender.pcap", inc / "edge.pcap"]).to_json()
    text = jsonout.dumps(doc)
    assert json.loads(text) == json.loads(json.dumps(doc, ensure_ascii=False))
    assert text.startswith('{\n  "schema": "mailwire.analyze/1"')


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(), _docs, st.booleans()), max_size=6))
def test_a_streamed_document_is_the_whole_document(members: list[tuple[str, Any, bool]]) -> None:
    """Members given as iterators (written one element at a time) give the text that encoding
    the whole object at once gives."""
    members = list({k: (k, v, it) for k, v, it in members}.values())  # keys once, as in a dict
    whole = {k: v for k, v, _ in members}
    parts = [(k, iter(v) if it and isinstance(v, list) else v) for k, v, it in members]
    out = io.StringIO()
    jsonout.write_streamed(parts, out)
    assert out.getvalue() == jsonout.dumps(whole) + "\n"


def test_analyze_writes_its_document_streamed(tmp_path: Any) -> None:
    inc = ROOT / "examples" / "incident"
    res = analyze_captures([inc / "sender.pcap"])
    out = io.StringIO()
    jsonout.write_streamed(res.json_parts(), out)
    assert out.getvalue() == jsonout.dumps(res.to_json()) + "\n"
    assert len(res.to_json()["smtp_sessions"]) > 0


@dataclass(slots=True)
class _Leaf:
    n: int
    pair: tuple[int, int] | None
    name: str = ""


@dataclass
class _Node:
    leaf: _Leaf
    leaves: list[_Leaf] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    extra: Any = None


_leaves = st.builds(
    _Leaf, st.integers(), st.none() | st.tuples(st.integers(), st.integers()), st.text(max_size=5)
)


@settings(max_examples=200, deadline=None)
@given(st.builds(_Node, _leaves, st.lists(_leaves, max_size=4), st.dictionaries(st.text(), st.integers()),
                 _docs))  # fmt: skip
def test_a_record_is_what_asdict_makes(node: _Node) -> None:
    """The standard library's ``dataclasses.asdict`` is the reference: the same values, the same
    container types (tuples stay tuples), and nothing shared with the record (lists are copies)."""
    got = jsonout.as_record(node)
    assert got == dataclasses.asdict(node)
    assert type(got["leaf"]["pair"]) is type(node.leaf.pair)
    assert got["leaves"] is not node.leaves and got["counts"] is not node.counts


def test_connection_records_are_what_asdict_makes(tmp_path: Any) -> None:
    """Every connection and chain record of the bundled incident, a generated capture full of
    retransmission chains and (where present) the corpus captures, against ``dataclasses.asdict``
    of the same records."""
    from mailwire.tcp import analyze

    inc = ROOT / "examples" / "incident"
    gen = generated_capture(tmp_path / "gen.pcap")
    paths = [inc / "sender.pcap", inc / "edge.pcap", gen, *corpus_captures()]
    n_conn = n_chain = 0
    for p in paths:
        res = analyze(iter_tables(p), reassemble=False)
        for c in res.connections:
            ref = dataclasses.asdict(c)
            ref.pop("client_kdir")
            assert c.to_json() == ref, (p, c.id)
            n_conn += 1
        for ch in res.chains:
            ref = dataclasses.asdict(ch)
            ref["intervals_s"] = ch.intervals_s
            assert ch.to_json() == ref, (p, ch.conn_id)
            n_chain += 1
    assert n_conn > 10 and n_chain > 0
