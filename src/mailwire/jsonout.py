"""The JSON documents the commands write: UTF-8, two-space indent, keys in the order built.

orjson encodes in compiled code: the ``mailwire analyze`` document of the 1 M-packet bench
capture (57 MB) took 2.9 s with the standard library's indented encoder (indentation is done
in Python there) and takes 0.16 s. Integer keys become strings, as ``json`` makes them; NumPy
scalars are numbers; a float that is not finite is ``null`` (valid JSON, unlike ``NaN``). A value
orjson refuses (an integer beyond 64 bits, a string holding a lone surrogate) falls back to the
standard library, with surrogates written as escapes, so a document is always written.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np


def dumps(doc: Any) -> str:
    """``doc`` as indented JSON text (no final newline)."""
    # imported here: the install's kernel build imports the package without its dependencies
    import orjson

    options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    try:
        return orjson.dumps(doc, option=options).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        # ensure_ascii: a lone surrogate cannot be written as UTF-8, only as an escape
        return json.dumps(_plain(doc), indent=2, ensure_ascii=True, allow_nan=False, default=str)


def _plain(v: Any) -> Any:
    """``v`` as orjson would see it: NumPy scalars as Python numbers, non-finite floats null."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


_SCALARS = frozenset({int, float, str, bool, type(None)})
_FIELDS: dict[type, tuple[str, ...]] = {}


def as_record(v: Any) -> Any:
    """A dataclass record as plain dictionaries, lists and tuples, field by field, as
    ``dataclasses.asdict`` makes it; but values are not deep-copied, and each class's field
    names are looked up once (``asdict`` took 1.7 s for the 6 589 connection records of the
    1 M-packet bench capture)."""
    t = type(v)
    if t in _SCALARS:
        return v
    names = _FIELDS.get(t)
    if names is not None:
        return {n: as_record(getattr(v, n)) for n in names}
    if t is list or t is tuple:
        return t(as_record(x) for x in v)
    if t is dict:
        return {k: as_record(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        _FIELDS[t] = tuple(f.name for f in dataclasses.fields(v))
        return as_record(v)
    return v


def write(doc: Any, out: IO[str]) -> None:
    """``doc`` as indented JSON text and a newline, to ``out``."""
    out.write(dumps(doc))
    out.write("\n")


def write_streamed(parts: Iterable[tuple[str, Any]], out: IO[str]) -> None:
    """The object of ``parts`` (key, value) and a newline, to ``out``: the same text as
    :func:`write` of ``dict(parts)``, but a value that is an iterator is written as a list one
    element at a time, so a document of many records is never held whole (neither its
    dictionaries nor its text: the 1 M-packet analyze document is 69 MB of text)."""
    first = True
    out.write("{")
    for key, value in parts:
        out.write("\n  " if first else ",\n  ")
        first = False
        out.write(dumps(str(key)))
        out.write(": ")
        if isinstance(value, Iterator):
            n = 0
            for item in value:
                out.write("[\n    " if n == 0 else ",\n    ")
                out.write(dumps(item).replace("\n", "\n    "))
                n += 1
            out.write("\n  ]" if n else "[]")
        else:
            out.write(dumps(value).replace("\n", "\n  "))
    out.write("\n}\n" if not first else "}\n")


__all__ = ["as_record", "dumps", "write", "write_streamed"]
