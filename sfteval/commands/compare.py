"""`sfteval compare BASE TUNED`: paired deltas, forgetting, overfitting, drift, contamination.

BASE and TUNED are run folders, or checkpoints (folders, or hub ids ORG/NAME[@REV]) that
are first evaluated through the runner with one set of settings: the [checkpoints] flags
and every engine setting `run` takes (shared in `commands.engine_options`). Writes
comparison.json (docs/compare-format.md), report.md and report.html. The work lives in
`sfteval.compare`; this module only turns flags into settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from sfteval.commands import engine_options as eo
from sfteval.config import parse_name_paths
from sfteval.errors import SftevalError
from sfteval.tables import ALL_METRICS_HELP, FORMAT_OPTION_HELP
from sfteval.trackers.hooks import LOG_TO_HELP


def _as_run(path: Path, run_kwargs: dict) -> Path:
    """A run folder as is; a checkpoint folder is evaluated first (same settings for both)."""
    from sfteval.compare import is_run_dir

    from sfteval.runfolder import is_unfinished_run

    if is_run_dir(path):
        return path
    if is_unfinished_run(path):
        raise SftevalError("an unfinished run folder (no results.json): still running, or stopped", path=str(path),
                           hint="re-run the same `sfteval run` command to finish it, then compare")
    from sfteval.hub import parse_ref

    if path.is_dir() or parse_ref(str(path)):  # a checkpoint, a trainer output holding checkpoint-*, or ORG/NAME[@REV]
        from sfteval.config import RunConfig
        from sfteval.runner import execute_run

        typer.echo(f"evaluating checkpoint {path} ...", err=True)
        return Path(execute_run(RunConfig(checkpoint=str(path), **run_kwargs)))
    raise SftevalError("neither a run folder (results.json), a checkpoint folder nor a hub id (ORG/NAME)", path=str(path))


def summary_tables(comparison: Any, all_metrics: bool = False) -> list[Any]:
    """base -> tuned per benchmark (primary metric, or every metric), paired delta and its
    CI, and the forgetting verdict where the benchmark is judged for it. By default the
    metric names go under the table, which keeps it within 80 columns for usual names."""
    import textwrap

    from sfteval.runfolder import Comparison
    from sfteval.tables import Table, ci3, f3

    if not isinstance(comparison, Comparison):  # the dict compare_runs returns, read typed
        comparison = Comparison.from_dict(comparison)
    rows, records, primaries = [], [], []
    for b, e in comparison.benchmarks.items():
        primary = e.primary_metric
        for m, p in e.metrics.items():
            if not all_metrics and m != primary:
                continue
            d = p.delta
            verdict = e.forgetting.verdict if m == primary and e.forgetting is not None else ""
            ci = list(d.ci95)
            cells = (f3(p.base.value), f3(p.tuned.value), "-" if d.value is None else f"{float(d.value):+.3f}",
                     ci3(ci, signed=True), verdict)
            rows.append((b, m + (" *" if m == primary else ""), *cells) if all_metrics else (b, *cells))
            records.append({"benchmark": b, "metric": m, "primary": m == primary, "base": p.base.value,
                            "tuned": p.tuned.value, "delta": d.value, "ci95": ci,
                            "forgetting": verdict or None})
            if m == primary:
                primaries.append(f"{b} {m}")
    numbers = ("base", "tuned", "delta", "95% CI", "forgetting")
    if all_metrics:
        header, right, notes = ("benchmark", "metric", *numbers), frozenset({2, 3, 4, 5}), ("* primary metric",)
    else:
        header, right = ("benchmark", *numbers), frozenset({1, 2, 3, 4})
        notes = tuple(textwrap.wrap("metrics: " + "; ".join(primaries), 80, subsequent_indent="  ")) if primaries else ()
    return [Table("base -> tuned (paired, 95% CI)", header, tuple(rows), right=right, notes=notes, records=tuple(records))]


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare(
        base: Path = typer.Argument(..., help="base run folder, checkpoint folder or hub id ORG/NAME[@REV]"),
        tuned: Path = typer.Argument(..., help="tuned run folder or checkpoint folder (a LoRA adapter's base may be a hub id)"),
        out: Path = typer.Option(None, "--out", help="default: REPORTS/compare/<base>__<tuned>"),
        reports: Path = typer.Option(Path("reports"), "--reports", help="output root (runs of checkpoints go here too)"),
        allow_mismatch: bool = typer.Option(False, "--allow-mismatch", help="compare even if prompts/settings/data differ"),
        margin: float = typer.Option(0.01, "--margin", help="forgetting margin, absolute in metric units"),
        general: list[str] = typer.Option([], "--general", help="also judge this benchmark for forgetting (repeat)"),
        train_data: list[str] = typer.Option([], "--train-data", help="SFT data for memorisation/contamination (repeat); with checkpoints the first is also scored as `train`"),
        sweep: Path = typer.Option(None, "--sweep", help="a sweep.json to analyse for overfitting over checkpoints"),
        seed: int = typer.Option(0, "--seed", help="bootstrap seed (recorded)"),
        resamples: int = typer.Option(10_000, "--resamples", help="bootstrap resamples (corpus BLEU)"),
        items: str = typer.Option("all", "--items", help="all | report | select: compare only one hashed half of "
                                  "the items (report: the half a sweep did not choose its checkpoint on)"),
        suite: str = typer.Option(None, "--suite", help="[checkpoints] benchmark suite to run"),
        benchmark: list[str] = typer.Option([], "--benchmark", "-b", help="[checkpoints] benchmark to run (repeat)"),
        data: list[str] = typer.Option([], "--data", help="[checkpoints] NAME=PATH local data for a benchmark"),
        limit: int = typer.Option(None, "--limit", help="[checkpoints] items per benchmark"),
        backend: str = typer.Option("auto", "--backend", help="[checkpoints] hf | vllm | ..."),
        chat_template: str = typer.Option("auto", "--chat-template", help="[checkpoints] auto | on | off"),
        fewshot_data: list[str] = eo.FEWSHOT_DATA,
        bertscore_model: str = eo.BERTSCORE_MODEL,
        trust_remote_code: bool = eo.TRUST_REMOTE_CODE,
        dtype: str = eo.DTYPE,
        batch_size: int = eo.BATCH_SIZE,
        base_url: Optional[str] = eo.BASE_URL,
        max_model_len: Optional[int] = eo.MAX_MODEL_LEN,
        tensor_parallel_size: int = eo.TENSOR_PARALLEL,
        data_parallel_size: int = eo.DATA_PARALLEL,
        gpu_memory_utilization: Optional[float] = eo.GPU_MEMORY,
        model_name: Optional[str] = eo.MODEL_NAME,
        concurrency: int = eo.CONCURRENCY,
        log_to: list[str] = typer.Option([], "--log-to", help=LOG_TO_HELP, rich_help_panel="Trackers"),
        fmt: str = typer.Option("text", "--format", help=FORMAT_OPTION_HELP, rich_help_panel="Summary"),
        all_metrics: bool = typer.Option(False, "--all-metrics", help=ALL_METRICS_HELP, rich_help_panel="Summary"),
    ) -> None:
        """Compare a tuned model with its base, item by item."""
        from sfteval.tables import check_format, echo

        fmt = check_format(fmt)
        from sfteval.compare import CompareSettings, compare_runs, default_out, load_run, write_comparison
        from sfteval.report import build_report, write_report
        from sfteval.trackers import parse_log_to
        from sfteval.trackers.hooks import log_comparison

        trackers = parse_log_to(log_to)

        if margin < 0:
            raise SftevalError("must be >= 0", field="--margin")
        if items not in ("all", "report", "select"):
            raise SftevalError("must be all, report or select", field="--items")
        if chat_template not in ("auto", "on", "off"):
            raise SftevalError("must be auto, on or off", field="--chat-template")
        # one set of settings for both checkpoints, so their runs are comparable by construction
        run_kwargs = {"benchmarks": tuple(benchmark), "suite": suite, "data": parse_name_paths(data), "limit": limit,
                      "backend": backend, "chat_template": chat_template, "out": str(reports),
                      "train_data": train_data[0] if train_data else None,
                      "fewshot_data": parse_name_paths(fewshot_data, "--fewshot-data"), "bertscore_model": bertscore_model,
                      "engine": eo.engine_settings(
                          dtype=dtype, batch_size=batch_size, base_url=base_url, max_model_len=max_model_len,
                          tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
                          gpu_memory_utilization=gpu_memory_utilization, model_name=model_name,
                          concurrency=concurrency, trust_remote_code=trust_remote_code)}
        base_dir, tuned_dir = _as_run(base, run_kwargs), _as_run(tuned, run_kwargs)
        settings = CompareSettings(seed=seed, resamples=resamples, margin=margin, general=tuple(general),
                                   allow_mismatch=allow_mismatch, train_data=tuple(train_data),
                                   sweep=str(sweep) if sweep else None, split=None if items == "all" else items)
        comparison = compare_runs(load_run(base_dir), load_run(tuned_dir), settings)
        if comparison["lineage"]:  # recorded in comparison.json and on the report's card too
            typer.secho(f"warning: {comparison['lineage']}", fg=typer.colors.YELLOW, err=True)
        out_dir = out or default_out(reports, comparison)
        path = write_comparison(comparison, out_dir)
        title, sections = build_report(comparison)
        md, page = write_report(title, sections, out_dir)
        echo(summary_tables(comparison, all_metrics), fmt)
        for m in comparison["mismatches"]:
            if m["blocking"]:
                typer.secho(f"accepted mismatch: {m['benchmark']}: {m['field']}", fg=typer.colors.YELLOW, err=True)
        if fmt != "json":
            typer.echo(f"wrote {path}\nwrote {md}\nwrote {page}")
        log_comparison(trackers, comparison, path)
        raise typer.Exit(0)
