"""Small helpers the ``mailwire`` commands share (owned by maillog; any command may adopt them).

``quiet_broken_pipe``: a reader that goes away early (``mailwire logs x | head -1``) ends the
command quietly with status 0, the way ``packets`` does, instead of the exit 1 that Rich
(``Console.on_broken_pipe``) and Click/Typer (EPIPE in ``main``) give, or Python's "Exception
ignored … BrokenPipeError" at interpreter exit. ``PipeConsole`` (and ``console``, which sizes one for
stdout) is a Rich console that leaves the broken pipe to ``quiet_broken_pipe``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console


def _stdout_to_devnull() -> None:
    # Python docs (signal module, "Note on SIGPIPE"): point stdout at devnull so the flush at
    # interpreter exit does not raise a second BrokenPipeError.
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (tests' in-memory streams): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@contextmanager
def quiet_broken_pipe(exit_code: int = 0) -> Iterator[None]:
    """Run a command's output inside this; a closed stdout ends it with ``exit_code``, no message.

    The flush at the end surfaces a broken pipe here rather than at interpreter exit. The reader
    left on purpose, so the default exit status is 0 (as ``packets`` already does).
    """
    try:
        try:
            yield
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        raise typer.Exit(exit_code) from None


class PipeConsole(Console):
    """A Rich console whose broken pipe is an exception for ``quiet_broken_pipe``, not an exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to write: the reader is gone
        raise BrokenPipeError  # let quiet_broken_pipe decide the exit


def console(max_width: int = 100) -> Console:
    """A Rich console for stdout, at most ``max_width`` columns, for use in ``quiet_broken_pipe``."""
    return PipeConsole(width=min(Console().width, max_width))
