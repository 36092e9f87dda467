"""Writing a diagnosis out: terminal, JSON (validated against the shipped schema), HTML, extracts.

Called by ``mailwire diagnose``; each output is optional and independent, so a failure to write
one (a full disk, a bad path) is reported and the others are still produced.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import jsonschema
from rich.console import Console

from mailwire import jsonout
from mailwire.capture.read import CaptureError
from mailwire.cliutil import PipeConsole
from mailwire.report.extract import extract_connections
from mailwire.report.html import write_html
from mailwire.report.page import build_page, spec_at
from mailwire.report.terminal import render_terminal

if TYPE_CHECKING:
    from mailwire.diagnose.engine import DiagnoseRun


@cache
def diagnose_schema() -> dict[str, Any]:
    text = resources.files("mailwire").joinpath("schemas/diagnose.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def diagnosis_json(run: DiagnoseRun) -> dict[str, Any]:
    """The JSON document; raises ``jsonschema.ValidationError`` if it breaks the schema (a bug)."""
    doc = run.diagnosis.to_json()
    jsonschema.validate(doc, diagnose_schema())
    return doc


def write_extracts(run: DiagnoseRun, out_dir: str | Path) -> list[dict[str, Any]]:
    """One pcap per capture with the cited connections; returns what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cap in run.diagnosis.captures:
        if not run.cited or not run.rereadable(cap):
            continue
        # Every cited connection as it appears at this capture point (through NAT where compare
        # matched it); overlapping specs only widen the selection, frames are never doubled.
        specs = list(dict.fromkeys(spec_at(run, s, cap) for s in run.cited))
        target = out / f"{Path(cap).name.split('.', 1)[0]}.cited.pcap"
        try:
            res = extract_connections(cap, specs, target)
        except CaptureError as exc:  # changed since the analysis read it: the others still go out
            run.diagnosis.warnings.append(f"--extract: {exc}")
            continue
        written.append(
            {
                "capture": cap,
                "path": str(target),
                "frames": res.frames,
                "skipped_other_link": res.skipped_other_link,
            }
        )
    run.diagnosis.extracts = written
    return written


def emit(
    run: DiagnoseRun,
    *,
    html: str | None,
    json_out: str | None,
    extract: str | None,
    stdout: IO[str],
    stderr: IO[str],
) -> int:
    """Produce the requested outputs; returns the exit status (0, or 1 when an output failed)."""
    status = 0
    if extract:
        try:
            for w in write_extracts(run, extract):
                stderr.write(f"extract: {w['path']} ({w['frames']} frames from {w['capture']})\n")
        except OSError as exc:
            stderr.write(f"mailwire: --extract {extract}: {exc}\n")
            status = 1
    if html:
        try:
            write_html(build_page(run), html)
            stderr.write(f"HTML report: {html}\n")
        except OSError as exc:
            stderr.write(f"mailwire: --html {html}: {exc}\n")
            status = 1
    doc = diagnosis_json(run) if json_out else None
    if json_out == "-":
        jsonout.write(doc, stdout)
        return status
    if json_out:
        try:
            Path(json_out).write_text(jsonout.dumps(doc) + "\n", encoding="utf-8")
        except OSError as exc:
            stderr.write(f"mailwire: --json {json_out}: {exc}\n")
            status = 1
    width = min(Console(file=stdout).width, 100)
    render_terminal(run.diagnosis, PipeConsole(file=stdout, width=width))
    return status


__all__ = ["diagnose_schema", "diagnosis_json", "emit", "write_extracts"]
