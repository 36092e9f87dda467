"""Address formatting: 128-bit (hi, lo) address halves to text, one at a time or for whole columns.

IPv4 travels as IPv4-mapped IPv6 (``::ffff:a.b.c.d``: hi == 0, lo == 0xFFFF_0000_0000 | ipv4) and
prints as a dotted quad; everything else prints as RFC 5952 IPv6 text (``ipaddress`` does that).
The column formatter formats each distinct address once (captures repeat a few addresses many
times), then maps the strings back to rows.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt


V4_MAPPED = 0xFFFF_0000_0000
_V4_MASK = 0xFFFF_FFFF_0000_0000


def is_v4(hi: int, lo: int) -> bool:
    return hi == 0 and (lo & _V4_MASK) == V4_MAPPED


def format_addr(hi: int, lo: int) -> str:
    """Text form of one address given as two unsigned 64-bit halves."""
    hi, lo = int(hi), int(lo)
    if is_v4(hi, lo):
        v = lo & 0xFFFF_FFFF
        return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def parse_addr(text: str) -> tuple[int, int]:
    """(hi, lo) of an IPv4 or IPv6 address; IPv4 becomes IPv4-mapped. Raises ValueError."""
    ip = ipaddress.ip_address(text.strip())
    if isinstance(ip, ipaddress.IPv4Address):
        return 0, V4_MAPPED | int(ip)
    v = int(ip)
    return v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF


def format_addrs(
    hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64], present: npt.NDArray[np.bool_] | None = None
) -> list[str]:
    """Text for every row (``""`` where ``present`` is False), formatting each distinct address once."""
    n = hi.shape[0]
    if n == 0:
        return []
    pairs = np.empty(n, dtype=[("hi", np.uint64), ("lo", np.uint64)])
    pairs["hi"] = hi
    pairs["lo"] = lo
    uniq, inv = np.unique(pairs, return_inverse=True)
    texts = [format_addr(int(u["hi"]), int(u["lo"])) for u in uniq]
    out = [texts[i] for i in inv.ravel().tolist()]
    if present is not None:
        for i in np.nonzero(~present)[0].tolist():
            out[i] = ""
    return out


__all__ = ["V4_MAPPED", "format_addr", "format_addrs", "is_v4", "parse_addr"]
