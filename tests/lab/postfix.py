"""A private Postfix instance inside the sender namespace: config, start, inject, log, stop.

Owns: writing ``main.cf``/``master.cf`` into the scenario's own directory (queue, data and log
there too, no chroot), starting it with ``postfix -c DIR start``, injecting messages with
``sendmail -C DIR`` (each with a unique Message-ID so its queue id can be found in the log),
reading each message's delivery status lines from its ``maillog_file``, and stopping it by the
master's PID (``queue_directory/pid/master.pid``). Timeouts are shortened so a scenario ends in
seconds; retries are pushed an hour away so each message makes exactly one delivery attempt.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.netns import MX_ADDR, SENDER_ADDR, Lab

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# Postfix's settings for the lab. Values that matter for the captures are commented.
MAIN_CF = """\
compatibility_level = 3.6
config_directory = {cfg}
queue_directory = {queue}
data_directory = {data}
maillog_file = {maillog}
maillog_file_prefixes = {maillog}
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.sender.test
mydomain = sender.test
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
smtp_bind_address = {sender_addr}
# All mail to the MX by address: no DNS at all.
relayhost = {relayhost}
transport_maps = inline:{{ sender.test=discard:{transports} }}
smtp_host_lookup = native
smtp_dns_support_level = disabled
smtp_tls_security_level = none
# One message per connection, so each message's fate is its own connection's.
smtp_connection_cache_on_demand = no
# Short timeouts: every scenario ends in seconds.
smtp_connect_timeout = {connect_timeout}s
smtp_helo_timeout = 6s
smtp_mail_timeout = 6s
smtp_rcpt_timeout = 6s
smtp_data_init_timeout = 6s
smtp_data_xfer_timeout = {xfer_timeout}s
smtp_data_done_timeout = {done_timeout}s
smtp_quit_timeout = 2s
# One attempt per message: retries an hour away, and a failed connection never suspends the
# destination for the messages still queued.
queue_run_delay = 3600s
minimal_backoff_time = 3600s
maximal_backoff_time = 4000s
default_destination_concurrency_failed_cohort_limit = 1000
default_destination_concurrency_limit = 20
initial_destination_concurrency = 20
delay_warning_time = 0
biff = no
notify_classes =
"""

STATUS_RE = re.compile(
    r"postfix/(?:smtp|error|discard)\[\d+\]: (?P<qid>[0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}): "
    r"to=<(?P<to>[^>]*)>.*? relay=(?P<relay>\S+), .*?dsn=(?P<dsn>\d\.\d+\.\d+), "
    r"status=(?P<status>\w+) \((?P<reason>.*)\)$"
)
MSGID_RE = re.compile(r"postfix/cleanup\[\d+\]: (?P<qid>\w+): message-id=<(?P<mid>[^>]+)>")
SIZE_RE = re.compile(r"postfix/qmgr\[\d+\]: (?P<qid>\w+): from=<[^>]*>, size=(?P<size>\d+)")


@dataclass
class Delivery:
    """One status line of the log for one message."""

    status: str
    dsn: str
    relay: str
    reason: str
    line: int


@dataclass
class Postfix:
    lab: Lab
    directory: Path
    relayhost: str = f"[{MX_ADDR}]"
    routes: dict[str, str] = field(default_factory=dict)  # domain → MX address (else relayhost)
    connect_timeout: int = 3
    xfer_timeout: int = 6
    done_timeout: int = 6
    master_pid: int | None = None
    _seq: int = field(default=0, repr=False)

    @property
    def maillog(self) -> Path:
        return self.directory / "maillog"

    def configure(self) -> None:
        d = self.directory
        for sub in ("etc", "queue", "data"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        # Postfix daemons drop to the postfix user and open paths under this directory: every
        # directory on the way must be traversable (a 0700 pytest tmp dir is not).
        d.chmod(0o755)
        os.chown(d / "data", *_postfix_ids())
        (d / "etc" / "master.cf").write_text(MASTER_CF, encoding="utf-8")
        (d / "etc" / "main.cf").write_text(
            MAIN_CF.format(
                cfg=d / "etc",
                queue=d / "queue",
                data=d / "data",
                maillog=self.maillog,
                sender_addr=SENDER_ADDR,
                relayhost=self.relayhost,
                connect_timeout=self.connect_timeout,
                transports="".join(f", {dom}=smtp:[{addr}]" for dom, addr in self.routes.items()),
                xfer_timeout=self.xfer_timeout,
                done_timeout=self.done_timeout,
            ),
            encoding="utf-8",
        )
        self.maillog.touch()

    def start(self, timeout: float = 20.0) -> None:
        self.configure()
        self.lab.run("sender", ["postfix", "-c", str(self.directory / "etc"), "start"], timeout=timeout)
        pidfile = self.directory / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text().strip().isdigit():
                self.master_pid = int(pidfile.read_text().strip())
                break
            time.sleep(0.05)
        if self.master_pid is None:
            raise RuntimeError(
                f"Postfix did not write {pidfile} within {timeout}s; log:\n"
                + self.maillog.read_text(errors="replace")[-2000:]
            )

    def inject(self, rcpt: str, size: int, *, sender: str = "app@sender.test") -> str:
        """Queue one message of about ``size`` bytes; return its Message-ID."""
        self._seq += 1
        mid = f"lab-{os.getpid()}-{time.monotonic_ns()}-{self._seq}@sender.test"
        header = (
            f"From: <{sender}>\nTo: <{rcpt}>\nSubject: lab message {self._seq} ({size} bytes)\n"
            f"Message-ID: <{mid}>\n\n"
        )
        line = "The quick brown fox jumps over the lazy dog, message body line for the lab.\n"
        body_len = max(0, size - len(header))
        body = (line * (body_len // len(line) + 1))[:body_len]
        if body and not body.endswith("\n"):
            body = body[:-1] + "\n"
        cmd = ["sendmail", "-C", str(self.directory / "etc"), "-f", sender, "--", rcpt]
        proc = subprocess.run(
            self.lab.argv("sender", cmd),
            input=(header + body).encode(),
            capture_output=True,
            timeout=15,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"sendmail failed: {proc.stderr.decode(errors='replace')}")
        return mid

    def log_lines(self) -> list[str]:
        return self.maillog.read_text(encoding="utf-8", errors="replace").splitlines()

    def queue_ids(self) -> dict[str, str]:
        """Message-ID → queue id, from the cleanup lines."""
        out: dict[str, str] = {}
        for line in self.log_lines():
            m = MSGID_RE.search(line)
            if m:
                out[m.group("mid")] = m.group("qid")
        return out

    def sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.log_lines():
            m = SIZE_RE.search(line)
            if m:
                out[m.group("qid")] = int(m.group("size"))
        return out

    def deliveries(self) -> dict[str, list[Delivery]]:
        """Queue id → its status lines (delivery attempts), in log order."""
        out: dict[str, list[Delivery]] = {}
        for n, line in enumerate(self.log_lines(), 1):
            m = STATUS_RE.search(line)
            if m:
                out.setdefault(m.group("qid"), []).append(
                    Delivery(m.group("status"), m.group("dsn"), m.group("relay"), m.group("reason"), n)
                )
        return out

    def wait_final(self, mids: list[str], timeout: float) -> dict[str, str]:
        """Wait (bounded) until every message has a status line; return Message-ID → queue id."""
        deadline = time.monotonic() + timeout
        while True:
            qids = self.queue_ids()
            done = self.deliveries()
            if all(m in qids and qids[m] in done for m in mids) or time.monotonic() > deadline:
                return {m: qids[m] for m in mids if m in qids}
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the master by PID (it takes its children with it), bounded; then SIGKILL."""
        pid = self.master_pid
        if pid is None:
            return
        for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                continue
            break
        self.master_pid = None


def _postfix_ids() -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam("postfix")
    return pw.pw_uid, pw.pw_gid
