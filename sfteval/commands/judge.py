"""`sfteval judge BASE_RUN TUNED_RUN --judge MODEL`: pairwise judging of the same items'
outputs, both orders per item; writes a run-like folder and prints win/tie/loss."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

JUDGE_HELP = """Judge TUNED_RUN against BASE_RUN item by item with a judge model.

\b
Each pair is judged twice with the positions swapped, under a fixed rubric (recorded);
a verdict that changes with the order counts as a tie. Writes OUT/runs/judge-<name>-<hash>/
(results.json + samples with the judge's raw replies), which compare, gate, report and
the dashboard read. Re-running the same command resumes.

\b
Examples:
  sfteval judge reports/runs/base-1a2b reports/runs/sft-3c4d --judge ./judge-ckpt
  sfteval judge BASE TUNED --judge Qwen2.5-7B-Instruct --backend openai --base-url http://127.0.0.1:8000/v1
  sfteval judge BASE TUNED --judge ./judge-ckpt --ratings-db reports/ratings.sqlite   (votes as judge:<name>)

\b
Gate on it:  [min] "judge_heldout/win_rate" = 0.5   (sfteval gate JUDGE_RUN --rules gate.toml)
"""


def judge_command(
    base_run: Path = typer.Argument(..., help="The base model's run folder."),
    tuned_run: Path = typer.Argument(..., help="The tuned model's run folder (same items)."),
    judge: str = typer.Option(..., "--judge", help="Judge checkpoint folder (hf/vllm), or the model id at --base-url (openai)."),
    backend: str = typer.Option("auto", "--backend", help="auto | hf | vllm | vllm-server | openai."),
    benchmark: list[str] = typer.Option([], "--benchmark", "-b", help="Benchmark to judge (repeatable; default: every generative one in both runs)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Judge the first N shared items of each benchmark."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="Length of the judge's reply."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai: the endpoint, e.g. http://127.0.0.1:8000/v1."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="openai: requests in flight."),
    ratings_db: Optional[str] = typer.Option(None, "--ratings-db", help="Also cast the verdicts as votes of rater judge:<name> in this ratings database."),
    study: Optional[str] = typer.Option(None, "--study", help="With --ratings-db: the (existing) study to vote in; default: the one study of these two runs there, else a new default one."),
    calibrate: Optional[float] = typer.Option(None, "--calibrate", min=0.01, max=2.0, help="With --ratings-db: make the study judge-calibrated with this target width of the judge-vs-human kappa CI, and report the human votes needed so far."),
    seed: int = typer.Option(0, "--seed", help="Recorded with the run (no judge metric is resampled; kept so scripts passing it still work)."),
    out: Path = typer.Option(Path("reports"), "--out", help="Output root."),
) -> None:
    from rich.console import Console

    from sfteval.config import EngineSettings
    from sfteval.judge_run import JudgeSettings, record_votes, run_judge

    settings = JudgeSettings(
        judge=judge, backend=backend, benchmarks=tuple(benchmark), limit=limit, max_new_tokens=max_new_tokens,
        seed=seed, out=str(out),
        engine=EngineSettings(base_url=base_url, model_name=judge if backend == "openai" else None, concurrency=concurrency),
    )
    console = Console(stderr=True)

    def report(bench: str, done: int, total: int) -> None:
        console.print(f"judge {bench}: {done}/{total} items", highlight=False)

    run_dir = run_judge(base_run, tuned_run, settings, progress=report)
    _print(run_dir)
    if calibrate is not None and not ratings_db:
        from sfteval.errors import SftevalError

        raise SftevalError("--calibrate needs --ratings-db", field="calibrate")
    if ratings_db:
        sid, rater, n = record_votes(run_dir, ratings_db, study)
        typer.echo(f"votes: {n} new vote(s) of rater {rater} in study {sid}")
        if calibrate is not None:
            _calibrate(ratings_db, sid, rater, calibrate)
    raise typer.Exit(0)


def _calibrate(db: str, study: str, rater: str, width: float) -> None:
    from sfteval import agreement
    from sfteval.ratings import VoteStore

    store = VoteStore(db)
    agreement.set_calibration(store, study, width, rater)
    cal = agreement.calibration(store.votes(study), rater, width)
    if cal.votes_needed is not None:
        typer.echo(f"judge-calibrated: the kappa CI was narrower than {width:g} after {cal.votes_needed} of "
                   f"{cal.human_votes} human votes")
    else:
        now = "n/a" if cal.width_now is None else f"{cal.width_now:.3f}"
        typer.echo(f"not calibrated yet: kappa CI width {now} after {cal.human_votes} human votes (target {width:g})")


def _print(run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from sfteval.fileio import read_json

    doc = read_json(run_dir / "results.json")
    table = Table(title=f"{doc['label']}: {doc['judged']['tuned']['run_id']} vs {doc['judged']['base']['run_id']}")
    for col in ("benchmark", "win", "tie", "loss", "win rate [95% CI]", "position bias [95% CI]", "n"):
        table.add_column(col, justify="left" if col == "benchmark" else "right", no_wrap=True)
    for bench, res in doc["benchmarks"].items():
        m, c = res["metrics"], res["counts"]
        w, p = m["win_rate"], m["position_bias"]
        table.add_row(bench, str(c["win"]), str(c["tie"]), str(c["loss"]),
                      f"{_f(w['value'])} [{_f(w['ci95'][0])}, {_f(w['ci95'][1])}]",
                      f"{_f(p['value'], '+.3f')} [{_f(p['ci95'][0], '+.3f')}, {_f(p['ci95'][1], '+.3f')}]", str(res["n"]))
    console = Console()
    console.print(table)
    console.print(f"results: {run_dir / 'results.json'}\nsamples (with the judge's replies): {run_dir / 'samples'}/")


def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None or x != x else format(x, spec)


def register(app: typer.Typer) -> None:
    app.command("judge", help=JUDGE_HELP, no_args_is_help=True)(judge_command)
