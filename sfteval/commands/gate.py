"""`sfteval gate RUN_OR_COMPARISON [--rules FILE]`: a CI verdict as an exit code.

Exit codes: 0 pass, 1 fail, 2 error or uninformative (a metric that measured nothing),
3 inconclusive (or as the rules' `inconclusive` says: "fail" -> 1, "warn" -> 0 plus a
GitHub warning annotation per inconclusive check, "pass" -> 0). Writes junit.xml and summary.md (appended to
$GITHUB_STEP_SUMMARY when set). The judging lives in `sfteval.gate`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sfteval.trackers.hooks import LOG_TO_HELP


def register(app: typer.Typer) -> None:
    @app.command("gate")
    def gate(
        target: Path = typer.Argument(..., help="a run folder / results.json, or a comparison folder / comparison.json"),
        rules: Path = typer.Option(None, "--rules", help="rules TOML (default: [tool.sfteval.gate] in ./pyproject.toml)"),
        out: Path = typer.Option(Path("reports/gate"), "--out", help="where junit.xml and summary.md go"),
        log_to: list[str] = typer.Option([], "--log-to", help=LOG_TO_HELP, rich_help_panel="Trackers"),
    ) -> None:
        """Pass/fail a run or a comparison against minimum scores, non-inferiority margins and no-drop rules."""
        from sfteval.gate import evaluate, load_rules, load_target, markdown_summary, warn_annotations, write_outputs
        from sfteval.trackers import parse_log_to
        from sfteval.trackers.hooks import log_gate

        trackers = parse_log_to(log_to)
        result = evaluate(load_rules(rules), load_target(target))
        junit, summary = write_outputs(result, out)
        typer.echo(markdown_summary(result))
        for line in warn_annotations(result):  # GitHub Actions turns these into warnings on the run
            typer.echo(line)
        typer.echo(f"junit: {junit}\nsummary: {summary}")
        log_gate(trackers, result, target)
        raise typer.Exit(result.exit_code)
