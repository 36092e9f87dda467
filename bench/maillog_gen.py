"""Seeded generator of a large, realistic Postfix mail log (BSD syslog headers).

Each message runs its real lifecycle: smtpd connect/client, cleanup message-id, qmgr from/size,
per-recipient smtp status lines (sent, 4xx/5xx replies, connect/greeting/body timeouts, lost
connections), non-final MX info lines, postfix/error suspended deferrals, TLS lines, qmgr removed,
smtpd disconnect — interleaved with unrelated daemons. Addresses come from documentation ranges.

    python bench/maillog_gen.py OUT [--lines 1000000] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
from datetime import datetime, timedelta

DESTS = [
    # domain, MX hosts, IP prefix
    ("gmail.com", ["gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"], "198.51.100."),
    ("yahoo.com", ["mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"], "203.0.113."),
    ("outlook.com", ["outlook-com.olc.protection.outlook.com"], "192.0.2."),
    ("example.org", ["mx1.example.org", "mx2.example.org"], "198.51.100.2"),
    ("example.net", ["mail.example.net"], "203.0.113.2"),
]
REPLIES_4XX = [
    "450-4.2.1 The user you are trying to contact is receiving mail at a rate that 450-4.2.1 prevents "
    "additional messages from being delivered. 450 4.2.1 Please try again later. - gsmtp",
    "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to user complaints",
    "451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (S77714)",
]
REPLIES_5XX = [
    "550-5.7.1 Our system has detected that this message is likely unsolicited mail. 550 5.7.1 - gsmtp",
    "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org",
    "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
]
NOISE = [
    "CRON[{pid}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
    "kernel: [12345.678901] IPv4: martian source 192.0.2.1 from 192.0.2.2, on dev eth0",
    "dovecot: imap-login: Login: user=<u{n}@example.com>, method=PLAIN, rip=192.0.2.{h}",
    "systemd[1]: Started Session {n} of user root.",
]


def qid(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(10))


def generate(out: str, lines: int, seed: int) -> int:
    rng = random.Random(seed)
    t = datetime(2024, 12, 30, 22, 0, 0)
    written = 0
    with open(out, "w", encoding="utf-8") as fh:

        def w(prog: str, pid: int, msg: str) -> None:
            nonlocal written
            fh.write(f"{t:%b} {t.day:2d} {t:%H:%M:%S} mx1 {prog}[{pid}]: {msg}\n")
            written += 1

        while written < lines:
            t += timedelta(seconds=rng.expovariate(1 / 0.6))
            if rng.random() < 0.12:
                fh.write(
                    f"{t:%b} {t.day:2d} {t:%H:%M:%S} mx1 "
                    + rng.choice(NOISE).format(
                        pid=rng.randint(100, 99999), n=rng.randint(1, 999), h=rng.randint(1, 254)
                    )
                    + "\n"
                )
                written += 1
                continue
            q = qid(rng)
            spid = rng.randint(1000, 40000)
            w("postfix/smtpd", spid, "connect from web1.example.com[192.0.2.5]")
            w("postfix/smtpd", spid, f"{q}: client=web1.example.com[192.0.2.5]")
            w("postfix/cleanup", spid + 1, f"{q}: message-id=<{rng.getrandbits(48):x}@example.com>")
            size = int(rng.lognormvariate(8.5, 1.3))
            nrcpt = 1 if rng.random() < 0.8 else 2
            w("postfix/qmgr", 999, f"{q}: from=<app@example.com>, size={size}, nrcpt={nrcpt} (queue active)")
            w(
                "postfix/smtpd",
                spid,
                "disconnect from web1.example.com[192.0.2.5] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
            )
            dom, mxs, pfx = rng.choice(DESTS)
            opid = rng.randint(1000, 40000)
            ip = pfx + str(rng.randint(10, 99)) if pfx.endswith(".") else pfx + str(rng.randint(0, 9))
            mx = rng.choice(mxs)
            relay = f"{mx}[{ip}]:25"
            r = rng.random()
            if r < 0.05 and len(mxs) > 1:
                w("postfix/smtp", opid, f"connect to {mxs[0]}[{pfx}7]:25: Connection timed out")
            if r < 0.5:
                w(
                    "postfix/smtp",
                    opid,
                    f"Trusted TLS connection established to {relay}: TLSv1.3 with cipher "
                    "TLS_AES_256_GCM_SHA384 (256/256 bits)",
                )
            for _ in range(nrcpt):
                rcpt = f"user{rng.randint(1, 50000)}@{dom}"
                x = rng.random()
                head = f"{q}: to=<{rcpt}>, relay={relay}, delay={rng.uniform(0.2, 9):.1f}, "
                if x < 0.80:
                    w(
                        "postfix/smtp",
                        opid,
                        head + f"delays=0.1/0.01/0.2/{rng.uniform(0.1, 3):.2f}, dsn=2.0.0, "
                        f"status=sent (250 2.0.0 OK {rng.getrandbits(32):x} - gsmtp)",
                    )
                elif x < 0.86:
                    w(
                        "postfix/smtp",
                        opid,
                        head + "delays=0.1/0/0.3/180, dsn=4.4.2, status=deferred "
                        f"(conversation with {mx}[{ip}] timed out while sending message body)",
                    )
                elif x < 0.90:
                    rep = rng.choice(REPLIES_4XX)
                    w(
                        "postfix/smtp",
                        opid,
                        head + f"delays=0.1/0/0.3/0.1, dsn={rep[4:9].strip()}, status=deferred "
                        f"(host {mx}[{ip}] said: {rep} (in reply to RCPT TO command))",
                    )
                elif x < 0.93:
                    rep = rng.choice(REPLIES_5XX)
                    w(
                        "postfix/smtp",
                        opid,
                        head + f"delays=0.1/0/0.3/0.1, dsn=5.7.1, status=bounced "
                        f"(host {mx}[{ip}] said: {rep} (in reply to end of DATA command))",
                    )
                elif x < 0.96:
                    w(
                        "postfix/smtp",
                        opid,
                        f"{q}: to=<{rcpt}>, relay=none, delay=30, delays=0.1/0/30/0, "
                        f"dsn=4.4.1, status=deferred (connect to {mx}[{ip}]:25: Connection timed out)",
                    )
                elif x < 0.98:
                    w(
                        "postfix/error",
                        opid,
                        f"{q}: to=<{rcpt}>, relay=none, delay=0.2, delays=0.1/0/0/0.1, "
                        "dsn=4.4.1, status=deferred (delivery temporarily suspended: "
                        f"connect to {mx}[{ip}]:25: Connection timed out)",
                    )
                else:
                    w(
                        "postfix/smtp",
                        opid,
                        f"{q}: lost connection with {mx}[{ip}] while sending end of data -- "
                        "message may be sent more than once",
                    )
                    w(
                        "postfix/smtp",
                        opid,
                        head + "delays=0.1/0/0.3/600, dsn=4.4.2, status=deferred "
                        f"(conversation with {mx}[{ip}] timed out while sending end of data -- "
                        "message may be sent more than once)",
                    )
            w("postfix/qmgr", 999, f"{q}: removed")
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    n = generate(a.out, a.lines, a.seed)
    print(f"wrote {n} lines to {a.out}")


if __name__ == "__main__":
    main()
