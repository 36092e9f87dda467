"""Delay beyond the edge: hold every queued packet for a fixed time, then let it go (NFQUEUE).

This kernel has no ``sch_netem``, so the lab delays packets in user space: an iptables rule in the
edge namespace sends forwarded packets to NFQUEUE, and this process, bound to that queue over a
raw netfilter netlink socket (standard library only), gives each packet its ACCEPT verdict
``--ms`` milliseconds after it arrived, in arrival order. Metadata only is copied (the kernel keeps
the packet). The iptables rule uses ``--queue-bypass`` and the queue is fail-open, so packets flow
undelayed, never dropped, when this process is absent or overwhelmed. It prints ``READY`` once bound
and ends by itself after ``--max-seconds``.

    ip netns exec NS python -m tests.lab.delay --queue 0 --ms 15
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _msg(msg_type: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def _check_ack(sock: socket.socket, what: str) -> None:
    data = sock.recv(65536)
    _, mtype = struct.unpack_from("=IH", data, 0)
    if mtype == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, 16)
        if err != 0:
            raise OSError(-err, f"netlink {what}: {os.strerror(-err)}")


def bind_queue(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    cmd = _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET))
    sock.send(_msg(NFQNL_MSG_CONFIG, queue, cmd, NLM_F_REQUEST | NLM_F_ACK, 1))
    _check_ack(sock, "bind")
    params = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    flags = _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
    mask = _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
    sock.send(_msg(NFQNL_MSG_CONFIG, queue, params + flags + mask, NLM_F_REQUEST | NLM_F_ACK, 2))
    _check_ack(sock, "params")
    return sock


def packet_ids(data: bytes) -> list[int]:
    """The packet ids in one recv() worth of netlink messages (several may share a datagram)."""
    ids = []
    off = 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if mtype == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + 20
            end = off + length
            while a + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, a + 4)[0])
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return ids


def run(queue: int, delay_s: float, max_seconds: float) -> None:
    # Late verdicts are extra delay: on a busy machine that jitter could fire the sender's tail-loss
    # probe in a healthy session. Real-time scheduling keeps the hold close to --ms; the loop
    # sleeps in select() between verdicts, so it cannot hog a CPU.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            os.nice(-10)
    sock = bind_queue(queue)
    print("READY", flush=True)
    held: collections.deque[tuple[float, int]] = collections.deque()
    stop = time.monotonic() + max_seconds
    while time.monotonic() < stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, pid = held.popleft()
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))
            sock.send(_msg(NFQNL_MSG_VERDICT, queue, verdict))
        wait = max(0.0, held[0][0] - now) if held else 0.5
        ready, _, _ = select.select([sock], [], [], wait)
        if ready:
            try:
                data = sock.recv(1 << 16)
            except OSError:  # ENOBUFS: the kernel dropped notifications; fail-open covers it
                continue
            t = time.monotonic() + delay_s
            held.extend((t, pid) for pid in packet_ids(data))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.delay")
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--ms", type=float, required=True)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args(argv)
    run(args.queue, args.ms / 1000.0, args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
