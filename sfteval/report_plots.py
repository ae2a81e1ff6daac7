"""Plots of a report as PNG bytes (matplotlib, Agg backend, imported only when drawing).

Each function returns None when matplotlib is missing (the `dashboard` extra), and the
report then says which plots it left out. Not covered: interactive plots (dashboard).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sfteval.runfolder.diagnosed import SweepAnalysis


def pyplot() -> Any | None:
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


def _outside_legend(ax: Any) -> None:
    """The legend right of the axes, where no point or bar can sit under it (inside, at
    "lower right", it covered the lowest benchmark's point)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)


def forest_plot(rows: list[tuple[str, float, float, float]], margin: float) -> bytes | None:
    """rows: (label, delta, lo, hi)."""
    fig = forest_figure(rows, margin)
    return None if fig is None else _png(fig)


def forest_figure(rows: list[tuple[str, float, float, float]], margin: float) -> Any | None:
    """The forest plot's matplotlib figure (tests measure where its legend sits)."""
    plt = pyplot()
    if plt is None or not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]
    for y, (_, d, lo, hi) in zip(ys, rows):
        color = "#c0392b" if hi < 0 else ("#27ae60" if lo > 0 else "#34495e")
        ax.errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", color=color, capsize=3)
    if margin > 0:
        ax.axvspan(-margin, margin, color="#bbbbbb", alpha=0.3, label=f"margin ±{margin:g}")
        _outside_legend(ax)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys, [r[0] for r in rows])
    ax.set_xlabel("tuned - base (95% CI)")
    return fig


def group_bars(title: str, groups: list[tuple[str, float, float | None, float | None, float | None]]
               ) -> bytes | None:
    """groups: (name, base, tuned, base_stderr, tuned_stderr); tuned None = one run, one bar each."""
    plt = pyplot()
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
        _outside_legend(ax)
    ax.set_xticks(x, [g[0] for g in groups], rotation=60, ha="right", fontsize=7)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def sweep_plot(sweep: SweepAnalysis) -> bytes | None:
    plt = pyplot()
    if plt is None or not sweep.points:
        return None
    loss = sweep.loss
    curves = loss is not None and bool(loss.steps)
    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(10, 3.4), squeeze=False,
                             layout="constrained")  # room for the legends outside the axes
    ax = axes[0][0]
    pts = sweep.points
    steps = [p.step for p in pts]
    ax.plot(steps, [p.value for p in pts], "o-", color="#2980b9")
    lows = [p.ci95[0] for p in pts]
    if None not in lows:
        ax.fill_between(steps, lows, [p.ci95[1] for p in pts], color="#2980b9", alpha=0.2)
    if sweep.keep is not None:
        ax.axvline(sweep.keep.step, color="#27ae60", ls="--", label="keep")
        _outside_legend(ax)
    ax.set_xlabel("step")
    ax.set_title(sweep.metric or "", fontsize=10)
    if loss is not None and curves:
        ax2 = axes[0][1]
        ax2.plot(loss.steps, loss.train_loss, label="train loss", color="#7f8c8d")
        if loss.eval_steps:
            ax2.plot(loss.eval_steps, loss.eval_loss, "o-", label="eval loss", color="#c0392b")
        ax2.set_xlabel("step")
        _outside_legend(ax2)
    return _png(fig)


