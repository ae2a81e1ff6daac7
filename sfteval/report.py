"""Reports: Markdown and one self-contained HTML file for a run or a comparison.

A report is built once as a list of sections (paragraphs, tables, figures, verbatim
text) and rendered twice: `report.md` (figures as PNG files in `report_files/`) and
`report.html` (figures inlined as base64 PNG, no external assets, opens offline).

Comparison reports read comparison.json only: the forest plot of deltas with CIs,
forgetting verdicts, per-subject bars, train/heldout gap, memorisation, sweep curves,
drift, contamination, and the top flips with prompts and outputs. Run reports read the
run folder: scores with CIs, per-subject bars and output health.

Modules: `report_blocks` (sections, tables, formats), `report_plots` (PNG plots),
`report_sections` (what a report says; one section per diagnosis of
`sfteval.diagnoses.DIAGNOSES`, same keys), this one (rendering). Dependencies run one
way: report -> report_sections -> report_blocks -> report_plots.

Not covered: interactive views (the dashboard does that). Plots need matplotlib (the
`dashboard` extra); without it the report says which plots it left out.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sfteval.fileio import atomic_write_text
from sfteval.report_blocks import Block, Figure, Pre, Section, Table
from sfteval.report_sections import comparison_sections, run_sections
from sfteval.runfolder import Comparison, RunResults

__all__ = ["Block", "Figure", "Pre", "Section", "Table", "build_report", "render_html", "render_markdown",
           "write_report"]


# ----------------------------------------------------------------------------- rendering


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: Sequence[Section], files_dir: str = "report_files") -> str:
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, str):
                out += [b, ""]
            elif isinstance(b, Table):
                out.append("| " + " | ".join(_cell(h) for h in b.headers) + " |")
                out.append("|" + "---|" * len(b.headers))
                out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in b.rows]
                out.append("")
            elif isinstance(b, Figure):
                out += [f"![{b.caption}]({files_dir}/{b.name}.png)", ""]
            else:
                fence = "````" if "```" in b.text else "```"
                if b.folded:  # GitHub and most Markdown viewers render <details>
                    out += [f"<details><summary>{html.escape(b.label)}</summary>", "", fence, b.text, fence, "",
                            "</details>", ""]
                else:
                    out += [f"**{b.label}**", "", fence, b.text, fence, ""]
    return "\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.2em;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f3f3f3}pre{background:#f7f7f7;padding:0.6em;white-space:pre-wrap;font-size:0.85em;
max-height:20em;overflow:auto}img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:0.2em}"""


def _code_spans(escaped: str) -> str:
    """Markdown `code` spans in an already escaped paragraph become <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def render_html(title: str, sections: Sequence[Section]) -> str:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"]
    for sec in sections:
        out.append(f"<h2>{e(sec.title)}</h2>")
        for b in sec.blocks:
            if isinstance(b, str):
                out.append(f"<p>{_code_spans(e(b))}</p>")
            elif isinstance(b, Table):
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows]
                out.append("</table>")
            elif isinstance(b, Figure):
                data = base64.b64encode(b.png).decode("ascii")
                out.append(f"<figure><img alt='{e(b.caption)}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{e(b.caption)}</figcaption></figure>")
            elif b.folded:
                out.append(f"<details><summary><b>{e(b.label)}</b></summary><pre>{e(b.text)}</pre></details>")
            else:
                out.append(f"<p><b>{e(b.label)}</b></p><pre>{e(b.text)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(title: str, sections: Sequence[Section], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    files = out_dir / "report_files"
    figures = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    if figures:
        files.mkdir(parents=True, exist_ok=True)
    for f in figures:
        (files / f"{f.name}.png").write_bytes(f.png)
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md, render_markdown(title, sections))
    atomic_write_text(page, render_html(title, sections))
    return md, page


def build_report(data: Comparison | RunResults | Mapping[str, Any], run_dir: str | Path | None = None,
                 gate: str | None = None) -> tuple[str, list[Section]]:
    """(title, sections) for a comparison (typed, or its comparison.json dict; its verdict
    card shows `gate`, the gate's one-line result, when given), or for results.json + its
    run folder. Dicts are read through the run-folder records first."""
    if isinstance(data, Comparison):
        return comparison_sections(data, gate)
    if isinstance(data, RunResults):
        return run_sections(data, run_dir)
    if str(data.get("schema", "")).startswith("sfteval.compare/"):
        return comparison_sections(Comparison.from_dict(data), gate)
    return run_sections(RunResults.from_dict(data), run_dir)
