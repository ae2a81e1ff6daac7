"""The vocabulary of a report: sections of paragraphs, tables, figures and verbatim text,
and the number formats every section uses.

Not covered: what goes into a report (`sfteval.report_sections`), plots
(`sfteval.report_plots`) and rendering to files (`sfteval.report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from sfteval.report_plots import pyplot

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
    folded: bool = False  # rendered inside <details> (long few-shot prompts would fill the page)


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


def figure(name: str, png: bytes | None, caption: str, missing: list[str]) -> list[Block]:
    if png is None:
        missing.append(caption)
        return []
    return [Figure(name, png, caption)]


def plots_note(missing: list[str]) -> list[Section]:
    if not missing or pyplot() is not None:
        return []
    return [Section("Plots left out", (f"matplotlib is not installed (pip install 'sfteval[dashboard]'); "
                                       f"left out: {', '.join(missing)}.",))]


