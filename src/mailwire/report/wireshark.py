"""Wireshark display filters for the connections a report cites.

A filter on the two endpoints is stable across captures (``tcp.stream`` numbers differ from one
capture point to the next, and NAT changes addresses, so each capture gets its own filter from
the endpoints seen in it).
"""

from __future__ import annotations

import ipaddress


def _addr_field(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return "ipv6.addr"
    return "ip.addr"


def _plain(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def connection_filter(client: str, client_port: int, server: str, server_port: int) -> str:
    """The display filter for one TCP connection, e.g.
    ``ip.addr==192.0.2.10 && tcp.port==40312 && ip.addr==198.51.100.25 && tcp.port==25``."""
    c, s = _plain(client), _plain(server)
    return (
        f"{_addr_field(c)}=={c} && tcp.port=={int(client_port)} && "
        f"{_addr_field(s)}=={s} && tcp.port=={int(server_port)}"
    )


def any_of(filters: list[str]) -> str:
    """One filter matching any of several connections."""
    uniq = list(dict.fromkeys(filters))
    if len(uniq) == 1:
        return uniq[0]
    return " || ".join(f"({f})" for f in uniq)


__all__ = ["any_of", "connection_filter"]
