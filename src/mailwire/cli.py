"""The ``mailwire`` commands. Thin: parse arguments, call the stages, render.

Each command lives in its own small function below; the stages it calls do the work.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mailwire import __version__

_JOBS_HELP = (
    "Worker processes: several captures at once, a large capture split by connection "
    "(default: one per CPU for inputs of 64 MB or more; 1: none)."
)

app = typer.Typer(
    name="mailwire",
    help="Find out why outbound mail delivery fails: mail logs, captures, several capture points.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mailwire {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """mailwire: mail log triage, capture analysis, capture comparison, one diagnosis."""


# --- commands: one block per command, each owned by its stage ------------------------------------


# logs (owned by maillog) -------------------------------------------------------------------------
@app.command("logs")
def logs_command(
    logs: Annotated[list[str], typer.Argument(help="Postfix/Exim/Sendmail logs (.gz/.xz/.zst; - = stdin).")],
    since: Annotated[str | None, typer.Option(help="Only attempts from this ISO time (naive = UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Only attempts before this ISO time (naive=UTC).")] = None,
    domain: Annotated[str | None, typer.Option(help="Only this recipient domain (and subdomains).")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="Write JSON to FILE (- = stdout).")] = None,
    tz: Annotated[str | None, typer.Option(help="Zone of stamps without one (default: local).")] = None,
    year: Annotated[
        int | None, typer.Option(min=1970, max=9999, help="Year of BSD syslog stamps (default: mtime).")
    ] = None,
) -> None:
    """Mail log triage: per destination, MX and IP — reputation, rate limiting or the network?"""
    from datetime import datetime

    from mailwire.cliutil import console, quiet_broken_pipe
    from mailwire.maillog import triage_logs
    from mailwire.maillog.render import nothing_found, render

    def _when(s: str | None, name: str) -> datetime | None:
        if s is None:
            return None
        try:
            return datetime.fromisoformat(s)
        except ValueError:
            raise typer.BadParameter(f"not an ISO 8601 time: {s!r}", param_hint=name) from None

    try:
        result = triage_logs(logs, _when(since, "--since"), _when(until, "--until"), domain, tz=tz, year=year)
    except (ValueError, KeyError) as exc:  # e.g. an unknown --tz
        raise typer.BadParameter(str(exc)) from None
    if json_out and json_out != "-":
        with open(json_out, "w", encoding="utf-8") as fh:
            fh.write(result.to_json() + "\n")
    with quiet_broken_pipe():  # e.g. | head: stop quietly
        if json_out == "-":
            typer.echo(result.to_json())
            if not result.attempts:
                typer.echo(nothing_found(result), err=True)
        else:
            render(result, console(100))
    if result.nothing_read:  # files read but without deliveries: exit 0, the output says so
        raise typer.Exit(2)


# packets (owned by capture) ----------------------------------------------------------------------
@app.command("packets")
def packets_command(
    capture: Annotated[str, typer.Argument(help="pcap/pcapng, optionally gzip/bzip2/xz/zstd; - = stdin.")],
    filter_expr: Annotated[
        str | None, typer.Option("--filter", "-Y", help="Filter, e.g. 'tcp.port == 25 and tcp.len > 0'")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (a JSON object per frame) or table")] = "jsonl",
) -> None:
    """One record per frame, like tshark -T fields (raw seq/ack/window, Wireshark frame numbers)."""
    import sys

    from mailwire.tcp.packets import run_packets_tcp  # capture.output's records + tcp stream/analysis

    try:
        code = run_packets_tcp(capture, filter_expr, fmt, sys.stdout, sys.stderr)
    except BrokenPipeError:  # e.g. piped into head
        code = 0
    if code:
        raise typer.Exit(code)


# info (owned by capture) -------------------------------------------------------------------------
@app.command("info")
def info_command(
    captures: Annotated[list[str], typer.Argument(help="pcap/pcapng captures, compressed or not; - = stdin")],
    json_out: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """What capinfos tells (format, links, interfaces, counts, time span, snaplen, TSO) + decode issues."""
    import sys

    from mailwire.capture.info import run_info

    code = run_info(captures, json_out, sys.stdout, sys.stderr)
    if code:
        raise typer.Exit(code)


# analyze (owned by smtp) -------------------------------------------------------------------------
@app.command("analyze")
def analyze_command(
    captures: Annotated[list[str], typer.Argument(help="pcap/pcapng captures, compressed or not.")],
    json_out: Annotated[str | None, typer.Option("--json", help="Write JSON to FILE (- = stdout).")] = None,
    frames: Annotated[
        bool, typer.Option("--frames", help="List the evidence frames of every session.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help=_JOBS_HELP),
    ] = None,
) -> None:
    """Per SMTP session: transcript, phase reached, verdict with evidence; findings across the capture."""
    import sys

    from mailwire.analyze import run_analyze
    from mailwire.cliutil import quiet_broken_pipe

    with quiet_broken_pipe():  # e.g. | head: stop quietly
        code = run_analyze(captures, json_out, frames, sys.stdout, sys.stderr, jobs=jobs)
    if code:
        raise typer.Exit(code)


# diagnose (owned by diagnose + report) -------------------------------------------------------------
@app.command("diagnose")
def diagnose_command(
    captures: Annotated[
        list[str] | None, typer.Argument(help="Captures in path order, the sending server's first.")
    ] = None,
    log: Annotated[list[str] | None, typer.Option("--log", help="A mail log (repeatable; - = stdin)")] = None,
    html: Annotated[str | None, typer.Option("--html", help="Write the self-contained HTML report.")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="Write JSON to FILE (- = stdout).")] = None,
    extract: Annotated[
        str | None, typer.Option("--extract", help="Write a pcap per capture with the cited connections.")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help=_JOBS_HELP),
    ] = None,
) -> None:
    """One diagnosis from any mix of logs and captures: the root cause, its evidence, the next step."""
    import sys

    from rich.console import Console

    from mailwire.cliutil import quiet_broken_pipe
    from mailwire.diagnose.engine import run_diagnosis
    from mailwire.heap import paused
    from mailwire.report.outputs import emit

    if not captures and not log:
        raise typer.BadParameter("give at least one --log LOG or one CAPTURE")
    err = Console(stderr=True)
    with paused():  # from the analysis to the last report written (mailwire.heap)
        if err.is_terminal:  # a progress line on large inputs, never in pipes or files
            with err.status("diagnosing") as st:
                run = run_diagnosis(log or [], captures or [], status=st.update, jobs=jobs)
        else:
            run = run_diagnosis(log or [], captures or [], jobs=jobs)
        with quiet_broken_pipe():  # e.g. | head: stop quietly
            code = emit(
                run, html=html, json_out=json_out, extract=extract, stdout=sys.stdout, stderr=sys.stderr
            )
    if run.readable_inputs == 0:
        code = code or 2  # no input could be read at all
    if code:
        raise typer.Exit(code)


# compare (owned by compare) ---------------------------------------------------------------------
@app.command("compare")
def compare_command(
    captures: Annotated[
        list[str], typer.Argument(help="Two or more captures in path order, sender's first.")
    ],
    json_out: Annotated[str | None, typer.Option("--json", help="Write JSON to FILE (- = stdout).")] = None,
    order: Annotated[
        str, typer.Option("--order", help="given (path order as listed) or infer (by TTL)")
    ] = "given",
) -> None:
    """Where packets vanish between capture points: loss per hop, by size and direction; clock offset."""
    import sys

    from mailwire.capture.read import CaptureError
    from mailwire.cliutil import console, quiet_broken_pipe
    from mailwire.compare import compare_captures
    from mailwire.compare.render import render

    if len(captures) < 2:
        raise typer.BadParameter("compare needs at least two captures")
    if order not in ("given", "infer"):
        raise typer.BadParameter("--order is 'given' or 'infer'")
    try:
        result = compare_captures(captures, order=order)
    except (CaptureError, OSError) as exc:
        typer.echo(f"mailwire compare: {exc}", err=True)
        raise typer.Exit(2) from None
    with quiet_broken_pipe():  # e.g. | head: stop quietly
        if json_out == "-":
            sys.stdout.write(result.dumps() + "\n")
            return
        if json_out:
            with open(json_out, "w", encoding="utf-8") as fh:
                fh.write(result.dumps())
        render(result, console(120))


def main() -> None:
    """The ``mailwire`` program: run the command, then leave without tearing the heap down.

    An analysis leaves millions of small objects behind; letting the interpreter free them one by
    one at exit took about 0.2 s on a 1 M-packet capture, for nothing. Output is flushed first;
    every file a command writes is closed by the command itself.
    """
    import contextlib
    import os
    import sys

    try:
        app()
        code: int = 0
    except SystemExit as exc:  # how Typer ends every command
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # the reader left (| head): nothing to deliver
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
