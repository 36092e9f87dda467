"""A small, safe display-filter language over the packet table, evaluated as NumPy masks.

Theory of operation
-------------------
``compile_filter(text)`` tokenises and parses the expression with a recursive-descent parser into a
tiny tree (never ``eval``); ``Filter.mask(table)`` evaluates the tree over whole columns and returns
a boolean array, one entry per frame. The grammar, Wireshark-flavoured::

    expr    := and_ (("or" | "||") and_)*
    and_    := unary (("and" | "&&") unary)*
    unary   := ("not" | "!") unary | "(" expr ")" | test
    test    := FIELD [OP VALUE]          OP: == != < <= > >= (or eq ne lt le gt ge)
    VALUE   := integer (decimal or 0x hex) | IPv4/IPv6 address [/prefix] | true | false

Fields use Wireshark's names (``ip.addr``, ``tcp.port``, ``tcp.len``, ``tcp.flags.syn`` …) or the
JSON field names of ``mailwire packets`` (``sport``, ``tcp_len`` …); ``FIELD`` alone tests that
the field is present (``tcp``, ``udp``, ``icmp``, ``ipv6``, ``warn.super_segment``). As in
Wireshark, a comparison with a field the frame does not have is false, ``ip.addr`` / ``tcp.port``
match either side, and ``a != b`` means ``not (a == b)``. Fields are those of the frame's own
headers: unlike tshark, ``ip.len`` or ``tcp.port`` do not also match the header an ICMP error
quotes (that one is in the ``inner_*`` columns). Sequence numbers are raw (``tcp.seq_raw``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mailwire.capture.addr import parse_addr
from mailwire.capture.table import WARN_NAMES, PacketTable

if TYPE_CHECKING:
    import numpy.typing as npt

    Mask = npt.NDArray[np.bool_]
    FieldFn = Callable[[dict[str, np.ndarray]], list[tuple[np.ndarray, Mask]]]


Cols = dict[str, np.ndarray]


class FilterError(ValueError):
    """The filter expression is malformed (message says where)."""


# --- fields: name -> function(cols) -> list of (values, present) (several = "either side") ---------


def _is_tcp(c: Cols) -> Mask:
    return (c["proto"] == 6) & (c["sport"] >= 0)


def _is_udp(c: Cols) -> Mask:
    return (c["proto"] == 17) & (c["sport"] >= 0)


def _tcp_full(c: Cols) -> Mask:
    return (c["proto"] == 6) & (c["tcp_hdr_len"] >= 0)


def _one(col: str, present: Callable[[Cols], Mask] | None = None) -> FieldFn:
    def f(c: Cols) -> list[tuple[np.ndarray, Mask]]:
        v = c[col]
        p = present(c) if present else (v >= 0 if v.dtype.kind == "i" else np.ones(v.shape, np.bool_))
        return [(v, p)]

    return f


def _addr(which: tuple[str, ...], version: int | None = None) -> FieldFn:
    def f(c: Cols) -> list[tuple[np.ndarray, Mask]]:
        ipv = c["ip_version"]
        p = (ipv == version) if version else (ipv > 0)
        return [(np.stack([c[w + "_hi"], c[w + "_lo"]], axis=1), p) for w in which]

    return f


def _either(*fields: FieldFn) -> FieldFn:
    def f(c: Cols) -> list[tuple[np.ndarray, Mask]]:
        out: list[tuple[np.ndarray, Mask]] = []
        for g in fields:
            out.extend(g(c))
        return out

    return f


def _flagbit(bit: int) -> FieldFn:
    def f(c: Cols) -> list[tuple[np.ndarray, Mask]]:
        return [(((c["tcp_flags"] & bit) != 0).astype(np.int64), _tcp_full(c))]

    return f


def _presence(fn: Callable[[Cols], Mask]) -> FieldFn:
    def f(c: Cols) -> list[tuple[np.ndarray, Mask]]:
        m = fn(c)
        return [(m.astype(np.int64), m)]

    return f


def _warn(bit: int) -> FieldFn:
    return _presence(lambda c: (c["warnings"] & np.uint32(bit)) != 0)


_SPORT_TCP = _one("sport", _is_tcp)
_DPORT_TCP = _one("dport", _is_tcp)
_SPORT_UDP = _one("sport", _is_udp)
_DPORT_UDP = _one("dport", _is_udp)

FIELDS: dict[str, FieldFn] = {
    "frame": _one("frame"),
    "frame.number": _one("frame"),
    "frame.len": _one("wirelen"),
    "len": _one("wirelen"),
    "frame.cap_len": _one("caplen"),
    "caplen": _one("caplen"),
    "frame.interface_id": _one("interface"),
    "interface": _one("interface"),
    "link_type": _one("link_type"),
    "ip": _presence(lambda c: c["ip_version"] == 4),
    "ipv6": _presence(lambda c: c["ip_version"] == 6),
    "ip.version": _one("ip_version", lambda c: c["ip_version"] > 0),
    "ip.src": _addr(("src",)),
    "ip.dst": _addr(("dst",)),
    "ip.addr": _addr(("src", "dst")),
    "ipv6.src": _addr(("src",), 6),
    "ipv6.dst": _addr(("dst",), 6),
    "ipv6.addr": _addr(("src", "dst"), 6),
    "src": _addr(("src",)),
    "dst": _addr(("dst",)),
    "ip.id": _one("ip_id"),
    "ip_id": _one("ip_id"),
    "ip.ttl": _one("ttl"),
    "ipv6.hlim": _one("ttl", lambda c: c["ip_version"] == 6),
    "ttl": _one("ttl"),
    "ip.proto": _one("proto"),
    "proto": _one("proto"),
    "ip.len": _one("ip_len", lambda c: c["ip_version"] > 0),
    "ip.flags.df": _presence(lambda c: (c["ip_version"] == 4) & c["df"]),
    "tcp": _presence(_is_tcp),
    "udp": _presence(_is_udp),
    "icmp": _presence(lambda c: (c["proto"] == 1) & (c["icmp_type"] >= 0)),
    "icmpv6": _presence(lambda c: (c["proto"] == 58) & (c["icmp_type"] >= 0)),
    "tcp.srcport": _SPORT_TCP,
    "tcp.dstport": _DPORT_TCP,
    "tcp.port": _either(_SPORT_TCP, _DPORT_TCP),
    "udp.srcport": _SPORT_UDP,
    "udp.dstport": _DPORT_UDP,
    "udp.port": _either(_SPORT_UDP, _DPORT_UDP),
    "sport": _one("sport"),
    "dport": _one("dport"),
    "port": _either(_one("sport"), _one("dport")),
    "tcp.seq_raw": _one("seq", _tcp_full),
    "seq": _one("seq", _tcp_full),
    "tcp.ack_raw": _one("ack", _tcp_full),
    "ack": _one("ack", _tcp_full),
    "tcp.flags": _one("tcp_flags", _tcp_full),
    "tcp_flags": _one("tcp_flags", _tcp_full),
    "tcp.flags.fin": _flagbit(0x001),
    "tcp.flags.syn": _flagbit(0x002),
    "tcp.flags.reset": _flagbit(0x004),
    "tcp.flags.push": _flagbit(0x008),
    "tcp.flags.ack": _flagbit(0x010),
    "tcp.flags.urg": _flagbit(0x020),
    "tcp.flags.ece": _flagbit(0x040),
    "tcp.flags.cwr": _flagbit(0x080),
    "tcp.window_size_value": _one("win"),
    "win": _one("win"),
    "tcp.len": _one("payload_len", lambda c: _tcp_full(c) & (c["payload_len"] >= 0)),
    "tcp_len": _one("payload_len", lambda c: _tcp_full(c) & (c["payload_len"] >= 0)),
    "tcp.hdr_len": _one("tcp_hdr_len"),
    "tcp.options.mss_val": _one("opt_mss"),
    "tcp.options.wscale.shift": _one("opt_wscale"),
    "tcp.options.sack_perm": _presence(lambda c: c["opt_sack_perm"]),
    "tcp.options.sack": _presence(lambda c: c["sack_n"] > 0),
    "tcp.options.timestamp.tsval": _one("opt_ts_val"),
    "udp.length": _one("payload_len", _is_udp),
    "icmp.type": _one("icmp_type", lambda c: (c["proto"] == 1) & (c["icmp_type"] >= 0)),
    "icmp.code": _one("icmp_code", lambda c: (c["proto"] == 1) & (c["icmp_code"] >= 0)),
    "icmpv6.type": _one("icmp_type", lambda c: (c["proto"] == 58) & (c["icmp_type"] >= 0)),
    "icmpv6.code": _one("icmp_code", lambda c: (c["proto"] == 58) & (c["icmp_code"] >= 0)),
    "icmp.mtu": _one("icmp_mtu"),
}
# Wireshark names we deliberately do not offer, and what to use instead.
_HINTS = {
    "tcp.seq": " (Wireshark's tcp.seq is relative; use tcp.seq_raw or seq for the raw number)",
    "tcp.ack": " (Wireshark's tcp.ack is relative; use tcp.ack_raw or ack for the raw number)",
}
for _bit, _name in WARN_NAMES.items():
    FIELDS["warn." + _name] = _warn(_bit)


# --- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\))
    | (?P<v6>[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:/\d+)?)
    | (?P<num>0[xX][0-9A-Fa-f]+|\d+(?:\.\d+){3}(?:/\d+)?|\d+)
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "and": "&&", "or": "||"}
_WORD_OPS["not"] = "!"
_CMP = ("==", "!=", "<", "<=", ">", ">=")


@dataclass
class _Tok:
    kind: str  # "op", "value", "word"
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    if len(text) > 10_000:
        raise FilterError("filter expression too long")
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        kind = m.lastgroup
        if kind is None:  # only whitespace left
            break
        val = m.group(kind)
        start = m.start(kind)
        if kind == "bad":
            raise FilterError(f"unexpected character {val!r} at position {start + 1}")
        if kind == "word" and val.lower() in _WORD_OPS:
            out.append(_Tok("op", _WORD_OPS[val.lower()], start))
        elif kind in ("v6", "num"):
            out.append(_Tok("value", val, start))
        elif kind == "word":
            out.append(_Tok("word", val, start))
        else:
            out.append(_Tok("op", val, start))
        pos = m.end()
    return out


# --- tree ---------------------------------------------------------------------------------------

Node = tuple  # ("or", a, b) | ("and", a, b) | ("not", a) | ("has", field) | ("cmp", field, op, value)


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise FilterError("filter expression ends too early")
        self.i += 1
        return tok

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > 100:
            raise FilterError("filter expression nested too deeply")
        node = self.and_()
        while (t := self.peek()) is not None and t.kind == "op" and t.text == "||":
            self.i += 1
            node = ("or", node, self.and_())
        self.depth -= 1
        return node

    def and_(self) -> Node:
        node = self.unary()
        while (t := self.peek()) is not None and t.kind == "op" and t.text == "&&":
            self.i += 1
            node = ("and", node, self.unary())
        return node

    def unary(self) -> Node:
        tok = self.take()
        if tok.kind == "op" and tok.text == "!":
            self.depth += 1
            if self.depth > 100:
                raise FilterError("filter expression nested too deeply")
            node = ("not", self.unary())
            self.depth -= 1
            return node
        if tok.kind == "op" and tok.text == "(":
            node = self.expr()
            close = self.take()
            if close.text != ")":
                raise FilterError(f"expected ')' at position {close.pos + 1}")
            return node
        if tok.kind != "word":
            raise FilterError(f"expected a field name at position {tok.pos + 1}, got {tok.text!r}")
        name = tok.text.lower()
        if name not in FIELDS:
            hint = _HINTS.get(name, "")
            raise FilterError(f"unknown field {tok.text!r} at position {tok.pos + 1}{hint}")
        nxt = self.peek()
        if nxt is not None and nxt.kind == "op" and nxt.text in _CMP:
            self.i += 1
            val = self.take()
            if val.kind == "word" and val.text.lower() in ("true", "false"):
                return ("cmp", name, nxt.text, ("int", 1 if val.text.lower() == "true" else 0))
            if val.kind != "value":
                raise FilterError(f"expected a value at position {val.pos + 1}, got {val.text!r}")
            return ("cmp", name, nxt.text, _value(val))
        return ("has", name)


def _value(tok: _Tok) -> tuple:
    text = tok.text
    try:
        if ":" in text or text.count(".") == 3:
            addr, _, plen = text.partition("/")
            hi, lo = parse_addr(addr)
            bits = 128 if ":" in addr else 32
            prefix = int(plen) if plen else bits
            if not 0 <= prefix <= bits:
                raise ValueError("prefix length out of range")
            if bits == 32:
                prefix += 96
            return ("addr", hi, lo, prefix)
        return ("int", int(text, 16) if text.lower().startswith("0x") else int(text))
    except ValueError as exc:
        raise FilterError(f"bad value {text!r} at position {tok.pos + 1}: {exc}") from exc


def _prefix_masks(prefix: int) -> tuple[np.uint64, np.uint64]:
    full = (1 << 128) - 1
    m = (full << (128 - prefix)) & full
    return np.uint64(m >> 64), np.uint64(m & 0xFFFF_FFFF_FFFF_FFFF)


def _compare(values: np.ndarray, op: str, value: tuple) -> Mask:
    if value[0] == "addr":
        if values.ndim != 2:
            raise FilterError("an address can only be compared with an address field")
        if op not in ("==", "!="):
            raise FilterError(f"operator {op} does not apply to addresses")
        mh, ml = _prefix_masks(value[3])
        hi, lo = np.uint64(value[1]), np.uint64(value[2])
        return ((values[:, 0] & mh) == (hi & mh)) & ((values[:, 1] & ml) == (lo & ml))
    if values.ndim == 2:
        raise FilterError("an address field needs an address value")
    v = values.astype(np.int64)
    x = value[1]
    if op == "==":
        return v == x
    if op == "<":
        return v < x
    if op == "<=":
        return v <= x
    if op == ">":
        return v > x
    if op == ">=":
        return v >= x
    return v != x


class Filter:
    """A compiled filter; ``mask(table)`` gives the frames that match."""

    def __init__(self, text: str, tree: Node) -> None:
        self.text = text
        self.tree = tree

    def mask(self, table: PacketTable) -> Mask:
        return self._eval(self.tree, table.columns)

    def _eval(self, node: Node, c: Cols) -> Mask:
        kind = node[0]
        if kind == "or":
            return self._eval(node[1], c) | self._eval(node[2], c)
        if kind == "and":
            return self._eval(node[1], c) & self._eval(node[2], c)
        if kind == "not":
            return ~self._eval(node[1], c)
        if kind == "has":
            out = np.zeros(c["frame"].shape[0], np.bool_)
            for _v, p in FIELDS[node[1]](c):
                out |= p
            return out
        _, name, op, value = node
        eq_op = "==" if op == "!=" else op
        out = np.zeros(c["frame"].shape[0], np.bool_)
        for vals, present in FIELDS[name](c):
            out |= present & _compare(vals, eq_op, value)
        if op == "!=":
            # Wireshark >= 3.6: "a != b" is "not (a == b)"; absent fields still do not match
            has = np.zeros_like(out)
            for _v, p in FIELDS[name](c):
                has |= p
            return has & ~out
        return out


def compile_filter(text: str) -> Filter:
    """Parse ``text``; raises :class:`FilterError` with the position of the problem."""
    toks = _tokens(text)
    if not toks:
        raise FilterError("empty filter expression")
    parser = _Parser(toks)
    tree = parser.expr()
    rest = parser.peek()
    if rest is not None:
        raise FilterError(f"unexpected {rest.text!r} at position {rest.pos + 1}")
    return Filter(text, tree)


__all__ = ["FIELDS", "Filter", "FilterError", "compile_filter"]
