"""Verdicts on a synthetic busy-relay capture, held to the generator's own truth file.

``bench/gen_smtp_capture.py`` (seeded) plans every session's fate — delivered, 4xx/5xx at RCPT or
after the body, 421 at the greeting, SYNs unanswered, a DATA segment lost and recovered, or a
stall ending in 421 4.4.2 — and writes it to ``FILE.truth.json`` independently of mailwire.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mailwire.smtp.pipeline import analyze_captures

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "bench" / "gen_smtp_capture.py"

# generator outcome -> analyze outcome
EXPECTED = {
    "delivered": "delivered",
    "rto_recovered": "delivered",  # a lost DATA segment, recovered by retransmission
    "fast_recovered": "delivered",  # recovered by fast retransmission
    "syn_lost_once": "delivered",
    "550_rcpt": "rejected",
    "554_data": "rejected",
    "450_rcpt": "deferred",
    "451_data": "deferred",
    "421_greeting": "deferred",
    "syn_timeout": "connect_timeout",
    "stall_421": "path_loss_timeout",
}


def test_verdicts_follow_generator_truth(tmp_path: Path) -> None:
    out = tmp_path / "gen.pcap"
    argv = [sys.executable, str(GEN), "--packets", "20000", "--seed", "7", "--out", str(out),
            "--rate", "4", "--body-median", "6000", "--trouble", "3"]  # fmt: skip
    subprocess.run(argv, check=True, timeout=300, capture_output=True)
    truth = json.loads(Path(str(out) + ".truth.json").read_text())
    result = analyze_captures([out])
    ours = {(j.session.client, j.session.client_port): j for j in result.judged if j.session is not None}
    tally: Counter[tuple[str, bool]] = Counter()
    wrong = []
    for s in truth["sessions"]:
        j = ours.get((s["client"], s["sport"]))
        got = j.verdict.outcome if j is not None else None
        want = EXPECTED[s["outcome"]]
        # a session the capture cut short may also be "incomplete" (capture ended first)
        if got == want or (s["truncated"] and got == "incomplete"):
            tally[(s["outcome"], True)] += 1
        else:
            wrong.append(f"{s['outcome']} truncated={s['truncated']} port {s['sport']}: {got}")
            tally[(s["outcome"], False)] += 1
    print(sorted(tally.items()))
    assert not wrong, "\n".join(wrong)
    kinds = {o for o, _ in tally}
    assert {"delivered", "stall_421", "550_rcpt", "450_rcpt", "421_greeting"} <= kinds, kinds
