"""Reports: Markdown and one self-contained HTML file for a run or a comparison.

A report is built once as a list of sections (paragraphs, tables, figures, verbatim
text) and rendered twice: `report.md` (figures as PNG files in `report_files/`) and
`report.html` (figures inlined as base64 PNG, no external assets, opens offline).

Comparison reports read comparison.json only: the forest plot of deltas with CIs,
forgetting verdicts, per-subject bars, train/heldout gap, memorisation, sweep curves,
drift, contamination, and the top flips with prompts and outputs. Run reports read the
run folder: scores with CIs, per-subject bars and output health.

Not covered: interactive views (the dashboard does that). Plots need matplotlib (the
`dashboard` extra); without it the report says which plots it left out.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from sfteval.fileio import atomic_write_text

MAX_GROUPS = 30
FLIP_TEXT_CHARS = 800


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Figure:
    name: str  # file stem
    png: bytes
    caption: str


@dataclass(frozen=True)
class Pre:
    label: str
    text: str


Block = Union[str, Table, Figure, Pre]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


# ----------------------------------------------------------------------------- formatting


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_ci(ci: Sequence[Any] | None, sign: bool = False) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "-"
    f = "{:+.3f}" if sign else "{:.3f}"
    return f"[{f.format(ci[0])}, {f.format(ci[1])}]"


def fmt_p(p: float | None) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


# ----------------------------------------------------------------------------- plots


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def forest_plot(rows: list[tuple[str, float, float, float]], margin: float) -> bytes | None:
    """rows: (label, delta, lo, hi)."""
    plt = _pyplot()
    if plt is None or not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]
    for y, (_, d, lo, hi) in zip(ys, rows):
        color = "#c0392b" if hi < 0 else ("#27ae60" if lo > 0 else "#34495e")
        ax.errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", color=color, capsize=3)
    if margin > 0:
        ax.axvspan(-margin, margin, color="#bbbbbb", alpha=0.3, label=f"margin ±{margin:g}")
        ax.legend(loc="lower right", fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys, [r[0] for r in rows])
    ax.set_xlabel("tuned - base (95% CI)")
    return _png(fig)


def group_bars(title: str, groups: list[tuple[str, float, float | None, float | None, float | None]]
               ) -> bytes | None:
    """groups: (name, base, tuned, base_stderr, tuned_stderr); tuned None = one run, one bar each."""
    plt = _pyplot()
    if plt is None or not groups:
        return None
    import numpy as np

    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(groups) + 2), 3.6))
    be = [1.96 * (g[3] or 0) for g in groups]
    if all(g[2] is None for g in groups):
        ax.bar(x, [g[1] for g in groups], 0.6, yerr=be, color="#2980b9")
    else:
        te = [1.96 * (g[4] or 0) for g in groups]
        ax.bar(x - 0.2, [g[1] for g in groups], 0.4, yerr=be, label="base", color="#95a5a6")
        ax.bar(x + 0.2, [g[2] or 0 for g in groups], 0.4, yerr=te, label="tuned", color="#2980b9")
        ax.legend(fontsize=8)
    ax.set_xticks(x, [g[0] for g in groups], rotation=60, ha="right", fontsize=7)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def sweep_plot(sweep: dict[str, Any]) -> bytes | None:
    plt = _pyplot()
    if plt is None or not sweep.get("points"):
        return None
    loss = sweep.get("loss") or {}
    fig, axes = plt.subplots(1, 2 if loss.get("steps") else 1, figsize=(10, 3.4), squeeze=False)
    ax = axes[0][0]
    pts = sweep["points"]
    steps = [p["step"] for p in pts]
    ax.plot(steps, [p["value"] for p in pts], "o-", color="#2980b9")
    lows = [p["ci95"][0] for p in pts]
    if None not in lows:
        ax.fill_between(steps, lows, [p["ci95"][1] for p in pts], color="#2980b9", alpha=0.2)
    if sweep.get("keep"):
        ax.axvline(sweep["keep"]["step"], color="#27ae60", ls="--", label="keep")
        ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_title(sweep.get("metric", ""), fontsize=10)
    if loss.get("steps"):
        ax2 = axes[0][1]
        ax2.plot(loss["steps"], loss["train_loss"], label="train loss", color="#7f8c8d")
        if loss.get("eval_steps"):
            ax2.plot(loss["eval_steps"], loss["eval_loss"], "o-", label="eval loss", color="#c0392b")
        ax2.set_xlabel("step")
        ax2.legend(fontsize=8)
    return _png(fig)


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


def figure(name: str, png: bytes | None, caption: str, missing: list[str]) -> list[Block]:
    if png is None:
        missing.append(caption)
        return []
    return [Figure(name, png, caption)]


def plots_note(missing: list[str]) -> list[Section]:
    if not missing or _pyplot() is not None:
        return []
    return [Section("Plots left out", (f"matplotlib is not installed (pip install 'sfteval[dashboard]'); "
                                       f"left out: {', '.join(missing)}.",))]


def build_report(data: dict[str, Any], run_dir: str | Path | None = None) -> tuple[str, list[Section]]:
    """(title, sections) for a comparison.json dict, or for results.json + its run folder."""
    if str(data.get("schema", "")).startswith("sfteval.compare/"):
        from sfteval.report_sections import comparison_sections

        return comparison_sections(data)
    from sfteval.report_sections import run_sections

    return run_sections(data, run_dir)
