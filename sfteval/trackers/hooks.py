"""The one call each command makes after its files are written: `--log-to` -> trackers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOG_TO_HELP = ("Also send the results to an experiment tracker: mlflow | wandb | tensorboard (repeatable or "
               "comma-separated; each is an optional extra, configured by its own environment variables).")


def _echo(msg: str) -> None:
    import typer

    typer.echo(msg, err=True)


def log_run(names: Sequence[str], run_dir: Path) -> None:
    if not names:
        return
    from sfteval.runfolder import read_results
    from sfteval.trackers import send_all
    from sfteval.trackers.records import run_record

    send_all(names, run_record(read_results(run_dir), run_dir), echo=_echo)


def log_sweep(names: Sequence[str], sweep_json: Path) -> None:
    if not names:
        return
    from sfteval.runfolder import read_sweep
    from sfteval.trackers import send_all
    from sfteval.trackers.records import sweep_record

    send_all(names, sweep_record(read_sweep(sweep_json), sweep_json), echo=_echo)


def log_comparison(names: Sequence[str], comparison: dict[str, Any], path: Path) -> None:
    if not names:
        return
    from sfteval.trackers import send_all
    from sfteval.trackers.records import comparison_record

    send_all(names, comparison_record(comparison, path), echo=_echo)


def log_gate(names: Sequence[str], result: Any, path: Path) -> None:
    if not names:
        return
    from sfteval.trackers import send_all
    from sfteval.trackers.records import gate_record

    send_all(names, gate_record(result, path), echo=_echo)
