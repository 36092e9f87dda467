"""The attempt ``kind`` vocabulary is closed and published: the schema's enum lists exactly the
kinds maillog's code can emit (read from the source with ``ast``, not from the code's own output),
so consumers such as ``diagnose`` can code against it, and a new kind cannot appear unannounced.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
MAILLOG = ROOT / "src" / "mailwire" / "maillog"
SCHEMA = ROOT / "src" / "mailwire" / "schemas" / "logs.schema.json"
OUTCOMES = {"delivered", "rejected", "deferred", "network", "dns", "tls", "local", "suppressed", "expired"}


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    return set()


def _kinds_in_source() -> set[str]:
    """String literals that reach a kind: ``Cause(outcome, KIND, …)``, ``kind=…``, ``x.kind = …``,
    ``kind = …`` (also in tuple assignments) and the ``(pattern, outcome, KIND)`` rule tables."""
    kinds: set[str] = set()
    for f in sorted(MAILLOG.glob("*.py")):
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Cause":
                if len(n.args) > 1:
                    kinds |= _strings(n.args[1])
                kinds |= {s for k in n.keywords if k.arg == "kind" for s in _strings(k.value)}
            elif isinstance(n, ast.Assign):
                for tg in n.targets:
                    if (isinstance(tg, ast.Attribute) and tg.attr == "kind") or (
                        isinstance(tg, ast.Name) and tg.id == "kind"
                    ):
                        kinds |= _strings(n.value)
                    elif isinstance(tg, ast.Tuple) and isinstance(n.value, ast.Tuple):  # a.kind, b = "x", …
                        for t, v in zip(tg.elts, n.value.elts, strict=False):
                            if isinstance(t, ast.Attribute) and t.attr == "kind":
                                kinds |= _strings(v)
            elif isinstance(n, ast.Tuple) and len(n.elts) == 3:
                vals = [e.value if isinstance(e, ast.Constant) else None for e in n.elts]
                # (regex, outcome, kind) rule rows, not a tuple of outcomes
                if isinstance(vals[0], str) and vals[0] not in OUTCOMES and vals[1] in OUTCOMES:
                    kinds |= _strings(n.elts[2])
    return kinds


def _schema() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return doc


def test_kind_enum_is_exactly_the_emitted_vocabulary() -> None:
    kind = _schema()["properties"]["attempts"]["items"]["properties"]["kind"]
    enum = set(kind["enum"])
    assert None in enum
    found = _kinds_in_source()
    # hand-checked against classify/exim/sendmail: the extraction itself must see these
    assert {"connect_refused", "host_unreachable", "net_unreachable", "remote_timeout", "refused"} <= found
    assert enum - {None} == found
    for k in found:
        assert k in kind["description"], k


def test_unknown_kind_is_rejected() -> None:
    schema = _schema()
    item = dict(schema["properties"]["attempts"]["items"])
    kind_schema = {"$defs": schema.get("$defs", {}), **item["properties"]["kind"]}
    jsonschema.validate("connect_refused", kind_schema)
    jsonschema.validate(None, kind_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("no_route", kind_schema)  # diagnose's name, not maillog's
