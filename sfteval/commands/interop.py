"""`sfteval import lm-eval DIR` and `sfteval export lm-eval RUN`: lm-evaluation-harness in and out.

Import turns lm-eval's `--log_samples` output into sfteval run folders, so `compare`,
`gate`, `report` and the dashboard work on any lm-eval task with paired statistics.
Export writes a run's metrics as an lm-eval results file for leaderboard tooling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

import_app = typer.Typer(help="Bring another harness's results in as sfteval run folders.", no_args_is_help=True)
export_app = typer.Typer(help="Write a run in another harness's results format.", no_args_is_help=True)

# The options every importer takes, declared once (typer reads these as metadata only).
NAME_OPTION = typer.Option(None, "--name", help="Run label (default: the model's folder name).")
OUT_OPTION = typer.Option(Path("reports"), "--out", help="Reports folder to write runs/<label>-<hash>/ into.")
TARGET_OPTION = typer.Option([], "--target", help="A task that is the fine-tuning's target (repeatable); "
                             "others count as general (forgetting checks).")

IMPORT_HELP = """Import lm-eval's per-sample logs as sfteval run folders (one per model).

\b
  lm_eval --model hf --model_args pretrained=BASE --tasks mmlu,gsm8k \\
      --output_path lmeval-base --log_samples
  lm_eval ... pretrained=TUNED ... --output_path lmeval-tuned --log_samples
  sfteval import lm-eval lmeval-base --name base
  sfteval import lm-eval lmeval-tuned --name tuned
  sfteval compare reports/runs/base-* reports/runs/tuned-*

Reads the current layout (results_<date>.json + samples_<task>_<date>.jsonl) and the
one before it (results.json + <model>_<task>.jsonl). Metrics averaged per sample get
sfteval's intervals; their values equal lm-eval's exactly.
"""


@import_app.command("lm-eval", help=IMPORT_HELP)
def import_lm_eval(
    folder: Path = typer.Argument(..., help="lm_eval's --output_path folder (or one results file)."),
    name: Optional[str] = NAME_OPTION,
    out: Path = OUT_OPTION,
    target: list[str] = TARGET_OPTION,
) -> None:
    from sfteval.interop.lmeval_import import import_lmeval

    _print_imported(import_lmeval(folder, out, name=name, targets=target))
    raise typer.Exit(0)


LIGHTEVAL_HELP = """Import lighteval's details (per-sample) files as sfteval run folders (one per model).

\b
  lighteval accelerate "model_name=BASE" "mmlu|5" --output-dir le-base --save-details
  lighteval accelerate "model_name=TUNED" "mmlu|5" --output-dir le-tuned --save-details
  sfteval import lighteval le-base --name base
  sfteval import lighteval le-tuned --name tuned
  sfteval compare reports/runs/base-* reports/runs/tuned-*

Reads lighteval 0.13.0's layout (results/<model>/results_<date>.json and
details/<model>/<date>/details_<task>|<n>_<date>.parquet). Metrics lighteval averages per
sample get sfteval's intervals; their values equal lighteval's exactly.
"""


@import_app.command("lighteval", help=LIGHTEVAL_HELP)
def import_lighteval_cmd(
    folder: Path = typer.Argument(..., help="lighteval's --output-dir folder (or one results file)."),
    name: Optional[str] = NAME_OPTION,
    out: Path = OUT_OPTION,
    target: list[str] = TARGET_OPTION,
) -> None:
    from sfteval.interop.lighteval_import import import_lighteval

    _print_imported(import_lighteval(folder, out, name=name, targets=target))
    raise typer.Exit(0)


def _print_imported(run_dirs: list[Path]) -> None:
    from sfteval.runfolder import read_results

    for run_dir in run_dirs:
        res = read_results(run_dir)
        typer.echo(f"imported {len(res.benchmarks)} task(s) -> {run_dir}")
        for b, r in res.benchmarks.items():
            est = r.primary()
            shown = "-" if est is None else f"{r.primary_metric} {est.value:.4f} [{est.ci95[0]:.4f}, {est.ci95[1]:.4f}]"
            typer.echo(f"  {b}: n={r.n} {shown}")


@export_app.command("lm-eval")
def export_lm_eval(
    run: Path = typer.Argument(..., help="An sfteval run folder."),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write (default: standard output)."),
) -> None:
    """Write a run's metrics in lm-eval's aggregated-results schema."""
    from sfteval.commands.output import write_or_print
    from sfteval.interop.lmeval_export import export_lmeval

    write_or_print(json.dumps(export_lmeval(run), indent=2, ensure_ascii=False) + "\n", output)
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.add_typer(export_app, name="export")
