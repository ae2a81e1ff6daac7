"""`sfteval report RUN_OR_COMPARISON [--out DIR]`: report.md + a self-contained report.html.

Also takes a sweep folder / sweep.json (checkpoint curves, loss divergence, which to keep).
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        target: Path = typer.Argument(..., help="a run, comparison or sweep folder (or its results/comparison/sweep.json)"),
        out: Path = typer.Option(None, "--out", help="default: the comparison's folder, or <run folder>/report"),
        gate: Path = typer.Option(None, "--gate", help="a `sfteval gate` output folder (its summary.md): the "
                                  "verdict card shows the gate's result"),
    ) -> None:
        """Write a Markdown and an HTML report (plots inlined) for a run or a comparison."""
        from sfteval.gate import load_target
        from sfteval.report import build_report, write_report

        folder = target if target.is_dir() else target.parent
        if target.name == "sweep.json" or (target.is_dir() and (target / "sweep.json").is_file()):
            from sfteval.diagnoses.sweep import sweep_analysis
            from sfteval.report_sections import sweep_sections

            title, sections = sweep_sections(sweep_analysis(folder / "sweep.json"))
            md, page = write_report(title, sections, out or folder)
            typer.echo(f"wrote {md}\nwrote {page}")
            raise typer.Exit(0)
        data = load_target(target)
        is_comparison = str(data.get("schema", "")).startswith("sfteval.compare/")
        from sfteval.errors import SftevalError
        from sfteval.report_verdict import read_gate

        gate_line = read_gate(gate) if gate is not None else None
        if gate is not None and gate_line is None:
            raise SftevalError("no gate summary here", path=str(gate / "summary.md"),
                               hint="pass the folder `sfteval gate --out` wrote")
        title, sections = build_report(data, None if is_comparison else folder, gate_line)
        md, page = write_report(title, sections, out or (folder if is_comparison else folder / "report"))
        typer.echo(f"wrote {md}\nwrote {page}")
        raise typer.Exit(0)
