"""The ``mailwire`` commands. Thin: parse arguments, call the stages, render.

Each command lives in its own small function below; the stages it calls do the work.
"""

from __future__ import annotations

import typer

from mailwire import __version__

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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """mailwire: mail log triage, capture analysis, capture comparison, one diagnosis."""


# --- commands: one block per command, each owned by its stage ------------------------------------


def main() -> None:
    app()


if __name__ == "__main__":
    main()
