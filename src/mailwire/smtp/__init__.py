"""SMTP: reassembled byte streams -> sessions (transcript, phases, replies) -> verdicts -> findings.

Modules, in data-flow order: ``replies`` (reply lines, RFC 3463 codes), ``machine`` (the sans-I/O
dissector and its transition table), ``session`` (the session record), ``verdict`` (outcome rules;
reply categories from :mod:`mailwire.signatures`), ``findings`` (capture-level findings) and
``pipeline`` (capture -> tcp -> smtp for ``mailwire analyze``).
"""

from mailwire.smtp.machine import SmtpMachine, looks_like_smtp
from mailwire.smtp.session import SessionBuilder, SmtpSession

__all__ = ["SessionBuilder", "SmtpMachine", "SmtpSession", "looks_like_smtp"]
