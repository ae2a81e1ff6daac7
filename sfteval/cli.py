"""The `sfteval` command line: a thin shell over library functions.

Each subcommand lives in `sfteval/commands/<name>.py` and exposes `register(app)`.
The list below is the registry (grep it). Command modules import only light things at
module level; the heavy work is imported inside the command function, so
`sfteval --help` stays fast and never imports torch.

Exit codes: 0 success, 1 a gate failed, 2 an error (bad input, missing file...),
3 a gate was inconclusive, 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys

import typer

from sfteval.errors import SftevalError

COMMANDS: tuple[str, ...] = (
    "sfteval.commands.run",
    "sfteval.commands.compare",
    "sfteval.commands.gate",
    "sfteval.commands.report",
    "sfteval.commands.dashboard",
    "sfteval.commands.ratings",
    "sfteval.commands.interop",
    "sfteval.commands.demo",
    "sfteval.commands.judge",
    "sfteval.commands.merge",
)

app = typer.Typer(
    name="sfteval",
    help=(
        "Evaluate and diagnose supervised fine-tuning.\n\n"
        "Typical loop:\n\n"
        "  sfteval run CKPT --suite default        score a checkpoint (results + every sample)\n\n"
        "  sfteval compare BASE_RUN TUNED_RUN      paired deltas, forgetting, overfitting\n\n"
        "  sfteval gate COMPARISON --rules gate.toml   CI verdict as an exit code\n\n"
        "Outputs go to reports/ by default; everything after `run` reads files only."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    # A parse-time callback: the root callback's body only runs once a subcommand was
    # found, so `sfteval --version` alone used to stop at "Missing command."
    if value:
        from sfteval import __version__

        typer.echo(f"sfteval {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    pass


def _register() -> None:
    for name in COMMANDS:
        importlib.import_module(name).register(app)


_register()


def resume_hint(args: list[str]) -> str:
    """What Ctrl-C prints: the exact command that picks up where this one stopped.

    Runs and judge runs skip every sample already in samples/*.jsonl, so the same command
    line resumes; it is quoted so that it pastes back into a shell as it was typed."""
    import shlex

    return ("interrupted; samples written so far are kept. Resume with:\n"
            f"  {shlex.join(['sfteval', *args])}")


def main() -> None:
    try:
        rc = app(standalone_mode=False)  # commands end with `raise typer.Exit(code)`
    except SftevalError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.secho(resume_hint(sys.argv[1:]), err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:
        # Usage errors (unknown option, bad value) are click exceptions; typer may vendor
        # click, so recognise them by shape rather than by class.
        if callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            sys.exit(2)
        if type(e).__name__ == "Abort":
            typer.secho(resume_hint(sys.argv[1:]), err=True)
            sys.exit(130)
        raise
    if rc == 130:  # typer turns Ctrl-C inside a command into a silent Exit(130)
        typer.secho(resume_hint(sys.argv[1:]), err=True)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
