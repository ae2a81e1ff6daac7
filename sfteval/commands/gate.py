"""`sfteval gate RUN_OR_COMPARISON [--rules FILE]`: a CI verdict as an exit code.

`--format json` prints the verdict and every check (also written as OUT/gate.json).
Exit codes: 0 pass, 1 fail, 2 error or uninformative (a metric that measured nothing),
3 inconclusive (or as the rules' `inconclusive` says: "fail" -> 1, "warn" -> 0 plus a
GitHub warning annotation per inconclusive check, "pass" -> 0). Writes junit.xml and summary.md (appended to
$GITHUB_STEP_SUMMARY when set). The judging lives in `sfteval.gate`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer

from sfteval.errors import SftevalError
from sfteval.fileio import atomic_write_json
from sfteval.trackers.hooks import LOG_TO_HELP

GATE_SCHEMA = "sfteval.gate/1"


def gate_document(result: Any) -> dict[str, Any]:
    """The gate's result as JSON: verdict, exit code, what was gated, notes, every check."""
    return {"schema": GATE_SCHEMA, "verdict": result.verdict, "exit_code": result.exit_code,
            "subject": result.subject, "inconclusive_mode": result.inconclusive_mode, "notes": list(result.notes),
            "checks": [dataclasses.asdict(c) for c in result.checks]}


def register(app: typer.Typer) -> None:
    @app.command("gate")
    def gate(
        target: Path = typer.Argument(..., help="a run folder / results.json, or a comparison folder / comparison.json"),
        rules: Path = typer.Option(None, "--rules", help="rules TOML (default: [tool.sfteval.gate] in ./pyproject.toml)"),
        out: Path = typer.Option(Path("reports/gate"), "--out", help="where junit.xml and summary.md go"),
        log_to: list[str] = typer.Option([], "--log-to", help=LOG_TO_HELP, rich_help_panel="Trackers"),
        fmt: str = typer.Option("md", "--format", help="md (a table that survives a CI log) | json (the verdict "
                                "and every check, as OUT/gate.json holds them)."),
    ) -> None:
        """Pass/fail a run or a comparison against minimum scores, non-inferiority margins and no-drop rules."""
        from sfteval.gate import evaluate, load_rules, load_target, markdown_summary, warn_annotations, write_outputs
        from sfteval.trackers import parse_log_to
        from sfteval.trackers.hooks import log_gate

        if fmt not in ("md", "json"):
            raise SftevalError(f"unknown format {fmt!r}", field="--format", hint="md | json")
        trackers = parse_log_to(log_to)
        result = evaluate(load_rules(rules), load_target(target))
        junit, summary = write_outputs(result, out)
        doc = gate_document(result)
        atomic_write_json(Path(out) / "gate.json", doc)  # the machine-readable verdict beside junit.xml
        if fmt == "json":
            typer.echo(json.dumps(doc, indent=1))
            raise typer.Exit(result.exit_code)
        typer.echo(markdown_summary(result))
        for line in warn_annotations(result):  # GitHub Actions turns these into warnings on the run
            typer.echo(line)
        typer.echo(f"junit: {junit}\nsummary: {summary}\nverdict: {Path(out) / 'gate.json'}")
        log_gate(trackers, result, target)
        raise typer.Exit(result.exit_code)
