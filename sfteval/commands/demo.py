"""`sfteval demo [--out DIR]`: the whole loop offline, on a model it builds.

Builds a tiny base model from nothing (tokenizer + Llama pretrained on a synthetic
corpus), fine-tunes it with train/ to answer chat questions about facts it read, evaluates the base and every
checkpoint, compares, gates, writes the report and seeds a blind rating study of base
vs best, then prints one sentence that says what happened, the findings, how to rate
the pairs and where to look. The steps
live in `sfteval.demo.pipeline`; this module only turns flags into settings.

Exit codes: 0 when the demo ran (whatever the gate's verdict, which it prints), 2 on an
error.
"""

from __future__ import annotations

from pathlib import Path

import typer

HELP = """Run the whole loop offline in minutes: pretrain a tiny model, fine-tune it, evaluate, compare, gate, report.

\b
Examples:
  sfteval demo                    about 4 minutes on 2 CPU cores (hf backend; what CI runs)
  sfteval demo --out /tmp/demo    then: sfteval dashboard --reports /tmp/demo/reports (Rate page)

Re-running with the same --out reuses what is already there.
"""


def register(app: typer.Typer) -> None:
    @app.command("demo", help=HELP)
    def demo(
        out: Path = typer.Option(Path("sfteval-demo"), "--out", help="Folder for everything the demo writes."),
        fast: bool = typer.Option(False, "--fast", hidden=True, help="Kept for old scripts: the demo has one recipe "
                                  "now, which fits the old --fast budget."),
        backend: str = typer.Option("auto", "--backend", help="auto (by model size: hf for the demo's tiny model, "
                                    "the reason printed) | hf | vllm."),
        seed: int = typer.Option(0, "--seed", help="One seed for corpus, model init, training and bootstrap."),
    ) -> None:
        from sfteval.demo.pipeline import run_demo, settings_for
        from sfteval.demo.summary import format_summary

        if fast:
            typer.echo("note: --fast is no longer needed: the demo has one recipe, about 4 minutes on 2 CPU cores", err=True)
        summary = run_demo(out, settings_for(backend, seed), say=lambda line: typer.echo(line, err=True))
        for line in format_summary(summary):
            typer.echo(line)
        raise typer.Exit(0)
