"""`sfteval run`: score a checkpoint (or a trainer output's checkpoints, or replayed
outputs) on benchmarks; writes OUT/runs/<run_id>/ and prints a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from sfteval.commands import engine_options as eo
from sfteval.errors import SftevalError
from sfteval.tables import ALL_METRICS_HELP, FORMAT_OPTION_HELP
from sfteval.trackers.hooks import LOG_TO_HELP

RUN_HELP = """Score CHECKPOINT on benchmarks, with error bars and every sample recorded.

\b
Examples:
  sfteval run ./ckpt --suite offline                  the project's own small items
  sfteval run Qwen/Qwen2.5-0.5B-Instruct -b gsm8k     a hub id (its cache works offline)
  sfteval run ./ckpt -b mmlu --data mmlu=./mmlu/      a folder holding test.jsonl and dev.jsonl
  sfteval run ./ckpt -b gsm8k -b mmlu --limit 200     first 200 items of each
  sfteval run ./ckpt --suite default --data heldout=val.jsonl
  sfteval run ./sft-out/                              every checkpoint-*/ in step order
  sfteval run --replay outs.jsonl --name gpt -b offline_gsm8k   score outputs made elsewhere

\b
Writes OUT/runs/<run_id>/results.json and samples/<benchmark>.jsonl. Re-running the same
command resumes where it stopped. Exit 0 on success, 2 on bad input.
"""


def run_command(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint folder, a trainer output holding checkpoint-*/ folders, or a hub id ORG/NAME[@REV]."),
    benchmark: list[str] = typer.Option([], "--benchmark", "-b", help="Benchmark name (a built-in: sfteval/catalog/NAME.toml) or TOML path; repeatable."),
    suite: Optional[str] = typer.Option(None, "--suite", help="A set of benchmarks: offline, default, or a suite TOML."),
    data: list[str] = typer.Option([], "--data", help="NAME=PATH: local data for a benchmark, a file or a folder of split files (test.jsonl, dev.jsonl, ...); repeatable."),
    train_data: Optional[str] = typer.Option(None, "--train-data", help="A sample of the SFT training data, scored as benchmark 'train' (overfitting gap)."),
    backend: str = typer.Option("auto", "--backend", help="auto (vllm if usable, else hf) | hf | vllm | vllm-server | openai."),
    chat_template: str = typer.Option("auto", "--chat-template", help="auto (use the tokenizer's if it has one) | on | off. Recorded per run."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate the first N items of each benchmark."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and bootstrap; recorded."),
    out: Path = typer.Option(Path("reports"), "--out", help="Output root."),
    replay: Optional[str] = typer.Option(None, "--replay", help='JSONL of {"id", "output"} to score without a model.'),
    name: Optional[str] = typer.Option(None, "--name", help="Label for the run (default: the checkpoint folder name)."),
    select: Optional[str] = typer.Option(None, "--select", help="Sweeps: BENCH/METRIC that names the best checkpoint."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub ids: branch, tag or commit (same as ORG/NAME@REV); the resolved commit is recorded."),
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
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: evaluate only shard I of N (Slurm arrays); join the N run folders with `sfteval merge`.", rich_help_panel="Scale"),
    ray: bool = typer.Option(False, "--ray", help="Sweeps: one Ray task per checkpoint on a local Ray cluster (pip install 'sfteval[ray]').", rich_help_panel="Scale"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Sweeps: the same on a running Ray cluster, HOST:PORT (implies --ray).", rich_help_panel="Scale"),
    allow_unsafe_exec: bool = typer.Option(False, "--allow-unsafe-exec", help="Code benchmarks: run model-written programs even where no sandbox isolation is possible (no namespaces: they can reach the network and your files). Recorded in results.json."),
    log_to: list[str] = typer.Option([], "--log-to", help=LOG_TO_HELP, rich_help_panel="Trackers"),
    fmt: str = typer.Option("text", "--format", help=FORMAT_OPTION_HELP, rich_help_panel="Summary"),
    all_metrics: bool = typer.Option(False, "--all-metrics", help=ALL_METRICS_HELP, rich_help_panel="Summary"),
) -> None:
    from sfteval.config import RunConfig, parse_name_paths
    from sfteval.tables import check_format

    check_format(fmt)  # a bad --format fails before anything loads
    from sfteval.execute import allow_unsafe_exec as set_unsafe_exec
    from sfteval.trackers import parse_log_to
    from sfteval.trackers.hooks import log_run, log_sweep

    trackers = parse_log_to(log_to)  # an unknown tracker fails before anything loads

    set_unsafe_exec(allow_unsafe_exec)

    if replay and not name:
        raise SftevalError("--replay needs --name LABEL", field="name")
    if not replay and not checkpoint:
        raise SftevalError("give a CHECKPOINT folder, or --replay FILE --name LABEL", field="checkpoint")
    if not benchmark and not suite:
        raise SftevalError("no benchmarks selected", field="benchmark", hint="pass -b NAME (repeatable) or --suite offline|default")
    cfg = RunConfig(
        checkpoint=checkpoint,
        label=name,
        benchmarks=tuple(benchmark),
        suite=suite,
        data=parse_name_paths(data),
        train_data=train_data,
        backend=backend,
        chat_template=chat_template,  # type: ignore[arg-type]
        limit=limit,
        seed=seed,
        out=str(out),
        replay=replay,
        engine=eo.engine_settings(
            dtype=dtype, batch_size=batch_size, base_url=base_url, max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, model_name=model_name, concurrency=concurrency,
            trust_remote_code=trust_remote_code,
        ),
        revision=revision,
        fewshot_data=parse_name_paths(fewshot_data, "--fewshot-data"),
        bertscore_model=bertscore_model,
        allow_unsafe_exec=allow_unsafe_exec,
        shard=shard,
    )
    from sfteval.shard import parse_shard

    parse_shard(shard)  # a bad I/N fails here, before anything loads
    sweeping = bool(checkpoint and not replay and _is_sweep(Path(checkpoint)))
    if (ray or ray_address) and not sweeping:
        raise SftevalError("--ray runs sweeps (a folder of checkpoint-*/); one checkpoint runs here", field="ray",
                           hint="use --data-parallel-size N for replicas of one checkpoint")
    if checkpoint and not replay and backend == "auto" and Path(checkpoint).is_dir():  # else the run names the error
        from sfteval.backends.auto import choose_backend

        first = min(Path(checkpoint).glob("checkpoint-*"), default=Path(checkpoint)) if sweeping else Path(checkpoint)
        chosen, why = choose_backend("auto", str(first))
        typer.secho(f"backend: {chosen} ({why})", err=True)
    if sweeping:
        from sfteval.sweep import run_sweep

        sweep_dir = run_sweep(Path(checkpoint), cfg, select, ray=ray_address or ("local" if ray else None),
                              fmt=fmt, all_metrics=all_metrics)
        if fmt != "json":
            typer.echo(f"sweep summary: {sweep_dir / 'sweep.json'}")
        log_sweep(trackers, sweep_dir / "sweep.json")
        raise typer.Exit(0)
    run_dir = run_with_progress(cfg)
    print_summary(run_dir, fmt, all_metrics)
    log_run(trackers, run_dir)
    raise typer.Exit(0)


def _is_sweep(path: Path) -> bool:
    return path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file() and any(
        p.is_dir() for p in path.glob("checkpoint-*")
    )


def run_with_progress(cfg: Any) -> Path:
    """execute_run with a rich progress bar per benchmark (stderr, so stdout stays clean)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from sfteval.runner import execute_run

    console = Console(stderr=True)
    tasks: dict[str, Any] = {}
    status = load_status(cfg)
    plain = [not console.is_terminal]  # a CI log gets the status as one plain line (no live bar there)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    ) as bar:
        # The model or engine opens inside the first chunk (10-20 s for a vLLM engine): until
        # a first sample is done, a status line says what is happening instead of a bar at 0/N.
        loading: list[Any] = [bar.add_task(status, total=None)]

        def report(bench: str, done: int, total: int) -> None:
            if plain[0] and done < total:  # data is read; the model or engine opens next, inside the first chunk
                plain[0] = False
                console.print(f"{bench}: {done}/{total} done; {status}", markup=False, highlight=False)
            if bench not in tasks:
                tasks[bench] = bar.add_task(bench, total=total, completed=done)
            bar.update(tasks[bench], completed=done)
            if loading and (done > 0 or done >= total):
                bar.remove_task(loading.pop())

        try:
            return execute_run(cfg, report=report)
        finally:
            if loading:
                bar.remove_task(loading.pop())


def load_status(cfg: Any) -> str:
    """The status line shown while data is read and the model or engine starts."""
    if cfg.replay:
        return f"reading benchmarks and replayed outputs ({cfg.replay}) ..."
    return f"loading {cfg.checkpoint} ({cfg.backend} backend); the first samples follow ..."


def summary_tables(doc: dict[str, Any], all_metrics: bool = False) -> list[Any]:
    """The run's summary: one row per benchmark (its primary metric), or per metric."""
    from sfteval.tables import Table, ci3, f3

    rows, records = [], []
    for bench, res in doc["benchmarks"].items():
        primary = res.get("primary_metric")
        for metric, est in res["metrics"].items():
            if not all_metrics and primary and metric != primary:
                continue
            star = " *" if all_metrics and metric == primary else ""
            rows.append((bench, metric + star, f3(est["value"]), f3(est.get("stderr")), ci3(est.get("ci95")), str(est["n"])))
            records.append({"benchmark": bench, "metric": metric, "primary": metric == primary, "value": est["value"],
                            "stderr": est.get("stderr"), "ci95": est.get("ci95"), "n": est["n"]})
    notes = ["* primary metric"] if all_metrics else []
    notes += [f"skipped {bench}: {why}" for bench, why in doc.get("skipped", {}).items()]
    title = f"{doc['label']}  ({doc['backend'].get('name')}, run {doc['run_id']})"
    return [Table(title, ("benchmark", "metric", "value", "± se", "95% CI", "n"), tuple(rows),
                  right=frozenset({2, 3, 4, 5}), notes=tuple(notes), records=tuple(records))]


def print_summary(run_dir: Path, fmt: str = "text", all_metrics: bool = False) -> None:
    """The summary on stdout as a plain table (never truncated, also off a terminal)."""
    from sfteval.fileio import read_json
    from sfteval.tables import check_format, echo

    doc = read_json(run_dir / "results.json")
    fmt = check_format(fmt)
    echo(summary_tables(doc, all_metrics), fmt)
    if fmt != "json":
        typer.echo(f"results: {run_dir / 'results.json'}\nsamples: {run_dir / 'samples'}/")


def register(app: typer.Typer) -> None:
    app.command("run", help=RUN_HELP, no_args_is_help=True)(run_command)
