"""The whole ``mailwire diagnose --html`` path on hostile inputs, opened in headless Chromium.

A capture whose SMTP banner, EHLO name and addresses carry ``<script>`` and ``"><img onerror>``
payloads, and a mail log whose recipient and reply text carry them too: the report must render
them as text, run no script, fetch nothing, log no console error — and still show the session's
ladder diagram and time-sequence graph. Also the bundled incident's report, as a user sees it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import report_chromium
from report_synth import smtp_dialogue_frames

from mailwire.capture.write import write_pcap

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
INCIDENT = ROOT / "examples" / "incident"

SCRIPT = "<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script>"
IMG = "\"><img src=x onerror=\"document.title='PWNED';document.body.setAttribute('data-pwned','2')\">"

pytestmark = pytest.mark.skipif(
    not report_chromium.available(), reason="chromium not installed at /usr/bin/chromium"
)

CHECKS = {
    "title": "document.title",
    "pwned": "document.body.getAttribute('data-pwned')",
    "scripts": "document.querySelectorAll('script').length",
    "imgs": "document.querySelectorAll('img').length",
    "text": "document.body.innerText",
    "ladder_msgs": "document.querySelectorAll('svg.ladder g.msg').length",
    "tsg": "Array.from(document.querySelectorAll('svg.tsg')).map(s=>{const r=s.getBoundingClientRect();"
    "return [r.width, r.height, s.querySelectorAll(':scope > path').length]})",
    "cause": "(document.querySelector('#conclusion .card.top')||{}).dataset?.cause",
    "nodes": "document.getElementsByTagName('*').length",
}


def _diagnose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "diagnose", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _assert_clean(v: report_chromium.PageVisit, page: Path) -> None:
    assert v.loaded
    assert [u for u in v.requests if u != page.resolve().as_uri()] == []
    assert v.exceptions == []
    assert [c for c in v.console if c[0] in ("error", "warning", "assert")] == []
    assert [e for e in v.log_entries if e[0] in ("error", "warning")] == []


def test_hostile_capture_and_log_render_as_text(tmp_path: Path) -> None:
    dialogue = [
        ("s", f"220 mx.example.net ESMTP {SCRIPT}\r\n".encode()),
        ("c", f"EHLO {IMG}\r\n".encode()),
        ("s", b"250 mx.example.net\r\n"),
        ("c", f"MAIL FROM:<{IMG}@example.org>\r\n".encode()),
        ("s", b"250 2.1.0 Ok\r\n"),
        ("c", f"RCPT TO:<{SCRIPT}@example.net>\r\n".encode()),
        (
            "s",
            f"554 5.7.1 Service unavailable; Client host blocked by zen.spamhaus.org {SCRIPT}\r\n".encode(),
        ),
        ("c", b"QUIT\r\n"),
        ("s", b"221 2.0.0 Bye\r\n"),
    ]
    cap = tmp_path / "hostile.pcap"
    write_pcap(cap, smtp_dialogue_frames(dialogue))
    log = tmp_path / "maillog"
    log.write_text(
        "Nov 14 22:13:20 mail postfix/smtp[4242]: 3F2A81C0123: to=<" + SCRIPT + "@example.net>, "
        "relay=198.51.100.25[198.51.100.25]:25, delay=0.2, delays=0/0/0.1/0.1, dsn=5.7.1, status=bounced "
        "(host 198.51.100.25[198.51.100.25] said: 554 5.7.1 Service unavailable; Client host blocked using "
        "zen.spamhaus.org " + IMG + " (in reply to RCPT TO command))\n",
        encoding="utf-8",
    )
    page = tmp_path / "report.html"
    r = _diagnose("--log", str(log), str(cap), "--html", str(page))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    v = report_chromium.visit(page, CHECKS, height=2400)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-hostile-capture.png").write_bytes(v.screenshot)
    _assert_clean(v, page)
    assert v.values["title"] == "mailwire diagnosis"
    assert v.values["pwned"] is None
    assert v.values["scripts"] == 0 and v.values["imgs"] == 0
    text = v.values["text"]
    assert "<script>document.title='PWNED'" in text  # from the banner / RCPT, shown as text
    assert "<img src=x onerror=" in text  # from MAIL FROM / EHLO / the log, shown as text
    assert v.values["cause"] == "blocklist"
    assert v.values["ladder_msgs"] >= 8  # the whole dialogue is drawn
    assert v.values["tsg"] and v.values["tsg"][0][2] >= 3  # the graph has data, ACK and window paths


def test_incident_report_as_a_user_sees_it(tmp_path: Path) -> None:
    if not (INCIDENT / "sender.pcap").is_file():
        pytest.skip("examples/incident missing")
    page = tmp_path / "incident.html"
    caps = [str(INCIDENT / "sender.pcap"), str(INCIDENT / "edge.pcap")]
    r = _diagnose("--log", str(INCIDENT / "maillog"), *caps, "--html", str(page))
    assert r.returncode == 0, r.stderr
    v = report_chromium.visit(page, CHECKS, height=4200)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-incident.png").write_bytes(v.screenshot)
    _assert_clean(v, page)
    assert v.values["cause"] == "path_loss_size_dependent"
    # One graph per stalled session plus the side-by-side sender/edge panels, each drawn with
    # segments, retransmissions and the ACK line.
    graphs = v.values["tsg"]
    assert len(graphs) >= 3
    assert all(w > 200 and h > 100 and n >= 3 for w, h, n in graphs)
    assert "vanished" in v.values["text"] or "never reached" in v.values["text"]
    assert v.values["nodes"] < 5000
