"""`sfteval merge SHARD_DIR...`: join the run folders of `sfteval run --shard I/N` into
one run folder, the same as an unsharded run apart from timings (see sfteval.shard)."""

from __future__ import annotations

from pathlib import Path

import typer

MERGE_HELP = """Join the N shard run folders of one evaluation into one run folder.

\b
Example (a Slurm array of 4 shards, then one merge):
  sfteval run ./ckpt --suite default --shard ${SLURM_ARRAY_TASK_ID}/4 --out shards/
  sfteval merge shards/runs/*-shard*of4 --out reports/

\b
Writes OUT/runs/<run_id>/ (the id an unsharded run would have). Exit 0 on success,
2 when a shard is missing, repeated, from another run or unfinished.
"""


def merge_command(
    shards: list[Path] = typer.Argument(..., help="The shard run folders (OUT/runs/<id>-shard<I>of<N>), any order."),
    out: Path = typer.Option(Path("reports"), "--out", help="Output root for the merged run folder."),
) -> None:
    from sfteval.shard import merge_shards

    run_dir = merge_shards(shards, out)
    typer.echo(f"merged {len(shards)} shards: {run_dir / 'results.json'}")
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    app.command("merge", help=MERGE_HELP, no_args_is_help=True)(merge_command)
