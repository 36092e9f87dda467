#!/usr/bin/env python3
"""Side-by-side timing of mailwire and its peers on the same capture, in one run.

Each tool runs as its own child process, one at a time (wall time, and peak RSS from ``wait4`` as
``/usr/bin/time`` reports it, mapped file pages included), after the capture has been read
once to warm the page cache. Outputs go to /dev/null so terminal speed is not measured. A tool
that is not installed is reported as missing; one that runs past ``--timeout`` is killed (its
process group, by id) and reported as timed out. Ratios are peer time / mailwire time for the
same kind of work: decoding (tcpdump, tshark fields, dpkt vs ``iter_tables``), and TCP analysis
(tshark expert, tcptrace vs ``mailwire analyze``).

    python bench/gen_smtp_capture.py --out bench/out/smtp-1m.pcap
    python bench/run.py bench/out/smtp-1m.pcap [--repeat 3] [--json results.json]

The ``--child`` entry points are the Python decoders timed here (kept in this file so that what
is timed is visible next to how it is timed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve()
TIME = Path("/usr/bin/time")
TSHARK_FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.id",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.flags",
    "tcp.window_size_value",
    "tcp.len",
]


@dataclass
class Tool:
    name: str
    kind: str  # "decode" or "analysis"
    argv: list[str]
    what: str
    needs: str  # executable that must exist
    child: bool = False  # one of this file's --child decoders (prints a JSON summary)
    result: dict[str, object] = field(default_factory=dict)


def child_dpkt(path: str) -> None:
    """dpkt, as a user would script it: decode Ethernet / IPv4|IPv6 / TCP of every frame."""
    import dpkt

    n = tcp_n = payload = 0
    t0, c0 = time.perf_counter(), time.process_time()
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.UniversalReader(f):
            n += 1
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                tcp = ip.data
                if isinstance(tcp, dpkt.tcp.TCP):
                    tcp_n += 1
                    payload += len(tcp.data)
                    _ = (ip.src, ip.dst, tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.win)
    loop = time.perf_counter() - t0
    loop_cpu = time.process_time() - c0
    print(
        json.dumps(
            {
                "packets": n,
                "tcp": tcp_n,
                "payload": payload,
                "loop_s": round(loop, 3),
                "loop_cpu_s": round(loop_cpu, 3),
            }
        )
    )


def child_mailwire_decode(path: str) -> None:
    """mailwire's capture stage alone: every chunk decoded into a PacketTable, then dropped."""
    from mailwire.capture.read import iter_tables, read_table

    # Load the compiled (Numba) functions first on the capture's own first frames, so that the
    # loop below times decoding, not JIT cache loading.
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    end = _whole_records(head)
    if end:
        with tempfile.NamedTemporaryFile(suffix=".pcap") as tmp:
            tmp.write(head[:end])
            tmp.flush()
            read_table(tmp.name)
    n = tcp_n = payload = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for t in iter_tables(path):
        n += len(t)
        is_tcp = t["proto"] == 6
        tcp_n += int(is_tcp.sum())
        payload += int(t["payload_len"][is_tcp].sum())
    loop = time.perf_counter() - t0  # decoding alone: no interpreter start, imports or JIT load
    loop_cpu = time.process_time() - c0
    print(
        json.dumps(
            {
                "packets": n,
                "tcp": tcp_n,
                "payload": payload,
                "loop_s": round(loop, 3),
                "loop_cpu_s": round(loop_cpu, 3),
            }
        )
    )


def child_mailwire_tcp(path: str) -> None:
    """mailwire's TCP stage as a library (capture decode + ``mailwire.tcp.analyze``, no stream
    reassembly, no SMTP): the work ``tshark -z expert`` and ``tcptrace`` do. When the capture
    has a generator truth sidecar, the frames flagged as retransmissions are checked against it."""
    import numpy as np

    from mailwire.capture.read import iter_tables
    from mailwire.tcp import analyze

    t0, c0 = time.perf_counter(), time.process_time()
    res = analyze(iter_tables(path), reassemble=False)
    loop = time.perf_counter() - t0
    loop_cpu = time.process_time() - c0
    rtx_bits = 0b111  # retransmission, fast_retransmission, spurious_retransmission
    dup_bit = 1 << 6  # duplicate_ack (mailwire.tcp.Flag, Wireshark's names)
    flagged = res.frames["frame"][(res.frames["wireshark"] & rtx_bits) != 0]
    dups = res.frames["frame"][(res.frames["wireshark"] & dup_bit) != 0]
    out: dict[str, object] = {
        "packets": int(res.n_frames),
        "connections": len(res.connections),
        "retransmissions": int(flagged.size),
        "duplicate_acks": int(dups.size),
        "loop_s": round(loop, 3),
        "loop_cpu_s": round(loop_cpu, 3),
    }
    truth = Path(path + ".truth.json")
    if truth.is_file():
        doc = json.loads(truth.read_text())
        want = np.array(sorted({f for c in doc["retransmissions"] for f in c["frames"][1:]}), dtype=np.int64)
        out["truth_retransmissions"] = int(want.size)
        out["agree"] = int(np.intersect1d(want, flagged).size)
        want_dup = np.array(doc.get("duplicate_ack_frames", []), dtype=np.int64)
        out["truth_duplicate_acks"] = int(want_dup.size)
        out["agree_duplicate_acks"] = int(np.intersect1d(want_dup, dups).size)
    print(json.dumps(out))


def _whole_records(head: bytes) -> int:
    """Length of the prefix of a classic pcap holding only whole records (0 if not classic pcap)."""
    if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        fmt = "<I"
    elif head[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        fmt = ">I"
    else:
        return 0
    off = 24
    while off + 16 <= len(head):
        (caplen,) = struct.unpack_from(fmt, head, off + 8)
        if off + 16 + caplen > len(head):
            break
        off += 16 + caplen
    return off


def pcap_counts(path: Path) -> tuple[int, int]:
    """(frames, file bytes) of a classic pcap by walking its record headers; pcapng via capinfos."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(24)
        magic = head[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            fmt = "<I"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            fmt = ">I"
        else:
            out = subprocess.run(["capinfos", "-c", "-M", "-T", str(path)], capture_output=True, text=True)
            return int(out.stdout.strip().splitlines()[-1].split("\t")[-1]), size
        # Streamed in blocks: this process must stay small, because a child's peak RSS as wait4
        # reports it starts from the parent's at the moment of the fork.
        unpack = struct.Struct(fmt).unpack_from
        n, skip, data = 0, 0, b""
        while block := f.read(4 << 20):
            if skip >= len(block):
                skip -= len(block)
                continue
            data = data + block[skip:]
            skip, off = 0, 0
            while off + 16 <= len(data):
                (caplen,) = unpack(data, off + 8)
                n += 1
                off += 16 + caplen
            if off > len(data):
                skip, data = off - len(data), b""
            else:
                data = data[off:]
    return n, size


def warm(path: Path) -> float:
    t = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(4 << 20):
            pass
    return time.perf_counter() - t


def prepare_mailwire() -> str:
    """Byte-compile the mailwire package (an installed package has its bytecode; a checkout run
    with PYTHONDONTWRITEBYTECODE would recompile every module at each start and time that) and
    say where its kernels come from: ``aot`` (compiled at install) or ``jit``."""
    import compileall

    try:
        import mailwire
        from mailwire import compiled
    except ImportError:
        return "mailwire not importable"
    compileall.compile_dir(str(Path(mailwire.__file__).parent), quiet=1)
    return compiled.mode()


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 4096:  # bounded: a tool's process tree is small
        q = todo.pop()
        try:
            for task in os.listdir(f"/proc/{q}/task"):
                with open(f"/proc/{q}/task/{task}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out.extend(kids)
                todo.extend(kids)
        except (OSError, ValueError):
            continue
    return out


def _sample_tree(pid: int, done: threading.Event, peak: list[int], skip_root: bool) -> None:
    """Every 20 ms until ``done``: the summed RSS of ``pid``'s processes (``skip_root``: its
    descendants only, /usr/bin/time being the root). Pages shared after a fork count in each."""
    page = os.sysconf("SC_PAGE_SIZE")
    while not done.wait(0.02):
        pids = _descendants(pid) + ([] if skip_root else [pid])
        total = 0
        for q in pids:
            try:
                with open(f"/proc/{q}/statm") as f:
                    total += int(f.read().split()[1]) * page
            except (OSError, ValueError, IndexError):
                continue
        peak[0] = max(peak[0], total)


def run_one(tool: Tool, timeout: float) -> dict[str, object]:
    """Run one tool as a child process; returns wall time, peak RSS, exit status, its JSON line.

    Peak RSS: a child's peak as ``wait4`` reports it starts from its parent's RSS at the fork, so
    when ``/usr/bin/time`` exists the tool is started through it (a tiny parent) and its ``%M`` is
    used; otherwise ``wait4`` on the tool itself (never below this runner's own RSS, recorded as
    ``rss_floor_mb``). CPU time comes from ``wait4``. A child still running after ``timeout`` is
    killed with its process group (the group created for it here, addressed by its id)."""
    if shutil.which(tool.needs) is None:
        return {"status": "missing", "detail": f"{tool.needs} not found"}
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".time") as tf,
    ):
        # peers' outputs go to /dev/null; only our child decoders print (one JSON line)
        stdout = out if tool.child else subprocess.DEVNULL
        argv = tool.argv
        if TIME.exists():
            argv = [str(TIME), "-f", "%M", "-o", tf.name, *argv]
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=stdout, stderr=err, start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        done = threading.Event()
        tree_peak = [0]
        sampler = threading.Thread(target=_sample_tree, args=(p.pid, done, tree_peak, TIME.exists()))
        sampler.start()
        try:
            _pid, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
            done.set()
            sampler.join()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout_text = out.read().decode(errors="replace")
        stderr_text = err.read().decode(errors="replace")
        time_out = tf.read().split()
    if timed_out.is_set():
        return {"status": "timeout", "detail": f"killed after {timeout:g} s"}
    res: dict[str, object] = {
        "wall_s": round(wall, 3),
        # CPU time (user + system) is what other load on a shared machine disturbs least
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
    }
    if time_out and time_out[-1].isdigit():  # /usr/bin/time's %M (KiB), the tool alone
        res["peak_rss_mb"] = round(int(time_out[-1]) / 1024, 1)
    # /usr/bin/time's %M is the largest single process; a tool with workers uses their sum
    res["tree_rss_mb"] = round(tree_peak[0] / 2**20, 1)
    if p.returncode != 0:
        last = (stderr_text.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        res["status"] = "failed"
        res["detail"] = f"exit {p.returncode}: {last[:200]}"
        return res
    res["status"] = "ok"
    tail = stdout_text.strip().splitlines()
    if tail and tail[-1].startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):
            res["output"] = json.loads(tail[-1])
    return res


def mailwire_commands() -> set[str]:
    """Which of the timed mailwire commands exist in this checkout (``mailwire CMD --help`` works)."""
    exe = shutil.which("mailwire")
    if exe is None:
        return set()
    have = set()
    probe = [sys.executable, "-c", "from mailwire.tcp import analyze"]
    if subprocess.run(probe, capture_output=True, timeout=120).returncode == 0:
        have.add("tcp-lib")
    for cmd in ("packets", "analyze"):
        r = subprocess.run([exe, cmd, "--help"], capture_output=True, timeout=120)
        if r.returncode == 0:
            have.add(cmd)
    return have


def tools(capture: Path, have: set[str]) -> list[Tool]:
    f = str(capture)
    py = sys.executable
    fields = [a for x in TSHARK_FIELDS for a in ("-e", x)]
    ts: list[Tool] = [
        Tool(
            "tcpdump",
            "decode",
            ["tcpdump", "-r", f, "-w", "/dev/null"],
            "tcpdump -r F -w /dev/null",
            "tcpdump",
        ),
        Tool(
            "tshark fields",
            "decode",
            ["tshark", "-n", "-r", f, "-T", "fields", *fields],
            f"tshark -r F -T fields ({len(TSHARK_FIELDS)} fields)",
            "tshark",
        ),
        Tool(
            "dpkt",
            "decode",
            [py, str(HERE), "--child", "dpkt", f],
            "dpkt loop: Ethernet/IP/TCP per frame",
            py,
            child=True,
        ),
        Tool(
            "mailwire decode",
            "decode",
            [py, str(HERE), "--child", "mailwire-decode", f],
            "mailwire.capture.read.iter_tables",
            py,
            child=True,
        ),
    ]
    if "packets" in have:
        ts.append(
            Tool(
                "mailwire packets",
                "decode",
                ["mailwire", "packets", f],
                "mailwire packets F (JSONL)",
                "mailwire",
            )
        )
    ts += [
        Tool(
            "tshark expert",
            "analysis",
            ["tshark", "-n", "-r", f, "-q", "-z", "expert"],
            "tshark -n -r F -q -z expert",
            "tshark",
        ),
        Tool("tcptrace", "analysis", ["tcptrace", "-n", "-l", f], "tcptrace -n -l F (no DNS)", "tcptrace"),
    ]
    ok = "analyze" in have
    ts.append(
        Tool(
            "mailwire analyze",
            "analysis",
            ["mailwire", "analyze", f] if ok else [],
            "mailwire analyze F (worker per CPU: the capture split by connection)",
            "mailwire",
        )
    )
    ts.append(
        Tool(
            "mailwire analyze -j1",
            "analysis",
            ["mailwire", "analyze", "-j", "1", f] if ok else [],
            "mailwire analyze -j 1 F (one process)",
            "mailwire",
        )
    )
    ts.append(
        Tool(
            "mailwire tcp (lib)",
            "analysis",
            [py, str(HERE), "--child", "mailwire-tcp", f] if "tcp-lib" in have else [],
            "iter_tables + mailwire.tcp.analyze(reassemble=False)",
            py,
            child=True,
        )
    )
    return ts


CHILDREN = {"dpkt": child_dpkt, "mailwire-decode": child_mailwire_decode, "mailwire-tcp": child_mailwire_tcp}

RATIOS = [  # (peer, reference) pairs printed as "peer / reference = N×"
    ("tcpdump", "mailwire decode"),
    ("tshark fields", "mailwire decode"),
    ("dpkt", "mailwire decode"),
    ("tshark fields", "mailwire packets"),
    ("tshark expert", "mailwire analyze"),
    ("tcptrace", "mailwire analyze"),
    ("tshark expert", "mailwire analyze -j1"),
    ("tcptrace", "mailwire analyze -j1"),
    ("tshark expert", "mailwire tcp (lib)"),
    ("tcptrace", "mailwire tcp (lib)"),
]


def memory_scaling(
    a: argparse.Namespace,
    have: set[str],
    packets: int,
    small: dict[str, object],
    log: TextIO,
    name: str = "mailwire analyze -j1",
) -> dict[str, object] | None:
    """Tool ``name`` on a second capture: peak RSS against capture size, as a straight line
    through the two runs (MB per million packets, the fixed part, and where it reaches 512 MB).
    ``mailwire analyze -j1`` has all the memory in one process; ``mailwire analyze`` as a user
    runs it (workers for a large capture) is reported by its largest process, which is the
    calling one, holding every shard's records at the end."""
    if small.get("status") != "ok":
        print(f"  memory scaling: {name} did not run on the first capture", file=log)
        return None
    big_packets, big_size = pcap_counts(a.scale)
    warm(a.scale)
    tool = next(t for t in tools(a.scale, have) if t.name == name)
    r = run_one(tool, a.timeout)
    print(f"  {name} ({a.scale.name}) {r.get('status')} {r.get('wall_s', '')} s", file=log)
    if r.get("status") != "ok" or big_packets == packets:
        return {"status": r.get("status"), "detail": r.get("detail", "same packet count")}
    r1, r2 = float(small["peak_rss_mb"]), float(r["peak_rss_mb"])  # type: ignore[arg-type]
    per_m = (r2 - r1) / ((big_packets - packets) / 1e6)
    fixed = r1 - per_m * packets / 1e6
    at_512 = (512 - fixed) / per_m if per_m > 0 else None
    text = (
        f"memory scaling, {name}: {packets:,} packets {r1:.0f} MB, {big_packets:,} packets "
        f"{r2:.0f} MB ({float(r['wall_s']):.2f} s): {per_m:.0f} MB per million packets over "  # type: ignore[arg-type]
        f"{fixed:.0f} MB; 512 MB "
        + (f"reached at about {at_512:.1f} M packets" if at_512 is not None else "not reached")
    )
    return {
        "capture": str(a.scale),
        "packets": big_packets,
        "bytes": big_size,
        "wall_s": r["wall_s"],
        "peak_rss_mb": r2,
        "mb_per_million_packets": round(per_m, 1),
        "fixed_mb": round(fixed, 1),
        "million_packets_at_512_mb": round(at_512, 2) if at_512 is not None else None,
        "text": text,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Time mailwire and its peers on one capture, side by side.")
    ap.add_argument("capture", nargs="?", type=Path, help="capture file (see bench/gen_smtp_capture.py)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the fastest counts (default 1)")
    ap.add_argument("--timeout", type=float, default=900.0, help="per-run limit in seconds (default 900)")
    ap.add_argument("--only", action="append", default=[], help="run only tools whose name contains this")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file ('-' = stdout)")
    ap.add_argument(
        "--scale",
        type=Path,
        help="a second, larger capture: mailwire analyze is run on it too, and its peak RSS growth "
        "per million packets is reported",
    )
    ap.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        CHILDREN[a.child](str(a.capture))
        return 0
    if a.capture is None or not a.capture.is_file():
        ap.error(f"capture not found: {a.capture}")
    if a.scale is not None and not a.scale.is_file():
        ap.error(f"capture not found: {a.scale}")

    packets, size = pcap_counts(a.capture)
    warm_s = warm(a.capture)
    kernels = prepare_mailwire()
    have = mailwire_commands()
    selected = [t for t in tools(a.capture, have) if not a.only or any(o in t.name for o in a.only)]
    log = sys.stderr
    load = os.getloadavg()
    floor_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{a.capture}: {packets} packets, {size / 1e6:.1f} MB (page cache warmed in {warm_s:.1f} s); "
        f"load average {load[0]:.2f} (other work on the machine skews timings: use --repeat); "
        f"mailwire kernels: {kernels}",
        file=log,
    )
    for t in selected:
        if not t.argv:
            t.result = {"status": "missing", "detail": f"not available in this checkout: {t.what}"}
            print(f"  {t.name:18s} missing", file=log)
            continue
        best: dict[str, object] | None = None
        rss = tree = 0.0
        for _ in range(max(1, a.repeat)):
            r = run_one(t, a.timeout)
            if r.get("status") != "ok":
                best = r
                break
            rss = max(rss, float(r.get("peak_rss_mb", 0.0)))  # type: ignore[arg-type]
            tree = max(tree, float(r.get("tree_rss_mb", 0.0)))  # type: ignore[arg-type]
            if best is None or float(r["wall_s"]) < float(best["wall_s"]):  # type: ignore[arg-type]
                best = r
        assert best is not None
        if best.get("status") == "ok":
            best["peak_rss_mb"] = rss
            best["tree_rss_mb"] = tree
            if tree > 1.2 * rss:  # workers: say what they hold together
                best["detail"] = f"processes together {tree:.0f} MB (sampled; shared pages in each)"
            w = float(best["wall_s"])  # type: ignore[arg-type]
            best["packets_per_s"] = round(packets / w) if w > 0 else None
            best["mb_per_s"] = round(size / 1e6 / w, 1) if w > 0 else None
            o = best.get("output")
            if isinstance(o, dict) and o.get("packets") != packets:
                best["detail"] = f"counted {o.get('packets')} packets, file has {packets}"
            elif isinstance(o, dict) and o.get("loop_s"):
                loop = float(o["loop_s"])
                best["loop_s"] = loop
                best["loop_packets_per_s"] = round(packets / loop)
                cpu = float(o.get("loop_cpu_s", 0)) or loop
                best["loop_cpu_s"] = cpu
                detail = (
                    f"in-process loop alone {loop:.2f} s wall, {cpu:.2f} s CPU "
                    f"= {packets / cpu / 1e6:.2f} M pkt/s per CPU second"
                )
                if "truth_retransmissions" in o:
                    detail += (
                        f"; retransmissions flagged {o['retransmissions']}, "
                        f"truth {o['truth_retransmissions']}, both {o['agree']}; "
                        f"duplicate ACKs {o['duplicate_acks']}, truth {o['truth_duplicate_acks']}, "
                        f"both {o['agree_duplicate_acks']}"
                    )
                best["detail"] = detail
        t.result = best
        print(f"  {t.name:18s} {best.get('status')} {best.get('wall_s', '')} s", file=log)

    by = {t.name: t.result for t in selected}
    mw, dp = by.get("mailwire decode", {}).get("output"), by.get("dpkt", {}).get("output")
    if isinstance(mw, dict) and isinstance(dp, dict):  # two decoders, one answer
        same = (mw.get("tcp"), mw.get("payload")) == (dp.get("tcp"), dp.get("payload"))
        agree = "TCP frames and payload bytes = dpkt's" if same else f"DIFFERS from dpkt: {mw} vs {dp}"
        by["mailwire decode"]["detail"] = f"{by['mailwire decode'].get('detail', '')}; {agree}"
    ratios = []
    for peer, ref in RATIOS:
        p, r = by.get(peer, {}), by.get(ref, {})
        if p.get("status") == "ok" and r.get("status") == "ok":
            x = float(p["wall_s"]) / max(float(r["wall_s"]), 1e-9)  # type: ignore[arg-type]
            y = float(p["cpu_s"]) / max(float(r["cpu_s"]), 1e-9)  # type: ignore[arg-type]
            ratios.append({"peer": peer, "reference": ref, "ratio": round(x, 3), "cpu_ratio": round(y, 3)})

    print(
        f"\n{a.capture.name}: {packets:,} packets, {size / 1e6:.0f} MB, {os.cpu_count()} cores, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    hdr = (
        f"| {'tool':18s} | {'work':8s} | {'wall s':>7s} | {'CPU s':>7s} | {'packets/s':>10s} | {'MB/s':>7s} "
        f"| {'peak RSS MB':>11s} | note"
    )
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|------|")
    for t in selected:
        r = t.result
        if r.get("status") == "ok":
            cells = [
                f"{r['wall_s']:7.2f}",
                f"{r['cpu_s']:7.2f}",
                f"{r['packets_per_s']:>10,}",
                f"{r['mb_per_s']:7.1f}",
                f"{r['peak_rss_mb']:11.0f}",
            ]
        else:
            cells = [f"{'-':>7s}", f"{'-':>7s}", f"{'-':>10s}", f"{'-':>7s}", f"{'-':>11s}"]
        note = (
            str(r.get("detail", ""))
            if r.get("status") == "ok"
            else f"{r.get('status')}: {r.get('detail', '')}"
        )
        print(f"| {t.name:18s} | {t.kind:8s} | " + " | ".join(cells) + f" | {note}")
    print()

    def fmt(v: object) -> str:
        x = float(v)  # type: ignore[arg-type]
        return f"{x:.1f}×" if x >= 1 else f"{x:.2f}×"

    for rr in ratios:
        print(f"{rr['peer']} / {rr['reference']} = {fmt(rr['ratio'])} wall ({fmt(rr['cpu_ratio'])} CPU)")

    scale = memory_scaling(a, have, packets, by.get("mailwire analyze -j1", {}), log) if a.scale else None
    if scale is not None:
        print(scale["text"])
    scale_w = None
    if a.scale and "mailwire analyze" in by:
        scale_w = memory_scaling(a, have, packets, by["mailwire analyze"], log, "mailwire analyze")
        if scale_w is not None:
            print(scale_w["text"])

    if a.json:
        doc = {
            "capture": str(a.capture),
            "packets": packets,
            "bytes": size,
            "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "repeat": a.repeat,
            "mailwire_kernels": kernels,
            "load_average_at_start": [round(x, 2) for x in load],
            # a child's peak RSS (wait4) cannot be below its parent's at fork time: this runner's
            "rss_floor_mb": round(floor_mb, 1),
            "tools": [{"name": t.name, "kind": t.kind, "command": t.what, **t.result} for t in selected],
            "ratios": ratios,
            "memory_scaling": scale,
            "memory_scaling_workers": scale_w,
        }
        text = json.dumps(doc, indent=2)
        if str(a.json) == "-":
            print(text)
        else:
            a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
