"""Command summaries as plain tables that survive a pipe.

Every command's end-of-run summary (run, sweep, compare) is built here as a `Table` and
printed in one of three formats:

- `text`: columns padded with spaces, nothing truncated or wrapped whatever the width
  (a CI log is not a terminal; rich's tables turned `0.000 ± 0.012` into `0.000 ± 0.0…`
  there), no colour codes;
- `md`: a GitHub-flavoured Markdown table (paste into a PR or a job summary);
- `json`: the same rows as objects, with the raw numbers kept next to the formatted cells.

Covered: the formatting of what the command already computed. Not covered: choosing what
is worth showing; each command picks its rows (primary metrics unless `--all-metrics`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import typer

Format = Literal["text", "md", "json"]
FORMATS: tuple[str, ...] = ("text", "md", "json")

FORMAT_OPTION_HELP = "Summary format: text (plain columns, never truncated) | md (Markdown table) | json."
ALL_METRICS_HELP = "Show every metric in the summary, not only each benchmark's primary metric."


@dataclass(frozen=True)
class Table:
    """One summary table: header, string cells, and the raw values behind them (for json)."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    right: frozenset[int] = frozenset()  # column indices aligned right (numbers)
    notes: tuple[str, ...] = ()  # lines printed under the table (text/md); a list in json
    records: tuple[dict[str, Any], ...] = field(default=())  # raw values per row, for json


def check_format(fmt: str) -> Format:
    if fmt not in FORMATS:
        from sfteval.errors import SftevalError

        raise SftevalError(f"unknown format {fmt!r}", field="--format", hint="text, md or json")
    return fmt  # type: ignore[return-value]


def render_text(t: Table) -> str:
    widths = [max(len(h), *(len(r[i]) for r in t.rows)) if t.rows else len(h) for i, h in enumerate(t.header)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in t.right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    lines = [t.title] if t.title else []
    lines += [line(t.header), line(["-" * w for w in widths]), *(line(r) for r in t.rows)]
    lines += list(t.notes)
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def render_md(t: Table) -> str:
    lines = [f"**{t.title}**", ""] if t.title else []
    lines.append("| " + " | ".join(_md_cell(h) for h in t.header) + " |")
    lines.append("|" + "|".join("---:" if i in t.right else "---" for i in range(len(t.header))) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in t.rows]
    if t.notes:
        lines += ["", *t.notes]
    return "\n".join(lines)


def as_json_obj(t: Table) -> dict[str, Any]:
    rows = list(t.records) if t.records else [dict(zip(t.header, r)) for r in t.rows]
    return {"title": t.title, "columns": list(t.header), "rows": rows, "notes": list(t.notes)}


def render(tables: Sequence[Table], fmt: Format) -> str:
    """All tables of one summary in one format (json: one object holding a list)."""
    if fmt == "json":
        return json.dumps({"tables": [as_json_obj(t) for t in tables]}, indent=2, default=str, allow_nan=True)
    sep = "\n\n"
    return sep.join(render_md(t) if fmt == "md" else render_text(t) for t in tables)


def echo(tables: Sequence[Table], fmt: Format) -> None:
    """Print to stdout: the summary is the command's output; progress and status go to stderr."""
    typer.echo(render(tables, fmt))


def f3(x: Any) -> str:
    """A metric value to 3 decimals; '' for a missing one, 'nan' kept visible."""
    if x is None:
        return ""
    return f"{float(x):.3f}"


def ci3(ci: Any, signed: bool = False) -> str:
    if not ci or ci[0] is None:
        return ""
    spec = "+.3f" if signed else ".3f"
    return f"[{float(ci[0]):{spec}}, {float(ci[1]):{spec}}]"
