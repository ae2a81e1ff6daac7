"""The verdict card that opens a comparison report: the answers before the evidence.

One short section, every line read from comparison.json (and the gate's summary when one
is given): the target task's change with its 95% CI, the forgetting verdicts per general
benchmark, the gate's result, and the checkpoint to keep when a sweep was analysed.

Target benchmarks are those not judged for forgetting (not `general`) and not the `train`
sample; a comparison of general benchmarks only says so. Not covered: anything that is
not already in the files (no recomputation here).
"""

from __future__ import annotations

from pathlib import Path

from sfteval.report_blocks import Block, Section, Table, fmt, fmt_ci
from sfteval.runfolder import Comparison
from sfteval.runfolder.compared import MetricComparison

VERDICT_TITLE = "Verdict"


def _targets(c: Comparison) -> list[tuple[str, str, MetricComparison]]:
    out = []
    for b, e in c.benchmarks.items():
        x = e.primary()
        if e.is_target(b) and x is not None and e.primary_metric is not None:
            out.append((b, e.primary_metric, x))
    return out


def _change(x: MetricComparison) -> str:
    d = x.delta
    value = "-" if d.value is None else f"{d.value:+.3f}"
    return f"{fmt(x.base.value)} -> {fmt(x.tuned.value)} ({value} {fmt_ci(d.ci95, True)})"


def read_gate(folder: str | Path) -> str | None:
    """The gate's one-line result: from its gate.json (verdict, exit code, checks by
    verdict), else the first line of summary.md (`## sfteval gate: PASS`), else None."""
    doc_path = Path(folder) / "gate.json"
    if doc_path.is_file():
        import json
        from collections import Counter

        try:
            doc = json.loads(doc_path.read_text(encoding="utf-8"))
            counts = Counter(str(c.get("verdict")) for c in doc.get("checks") or [])
            tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            return f"{str(doc['verdict']).upper()} (exit {doc['exit_code']}; {tally or 'no checks'})"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # a damaged gate.json: fall back to the summary
    path = Path(folder) / "summary.md"
    try:
        first = path.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return None
    return first.removeprefix("## sfteval gate:").strip() or None


def verdict_section(c: Comparison, gate: str | None = None) -> Section:
    """The card: one table of findings, each with the number that backs it."""
    rows: list[tuple[str, str]] = []
    if c.lineage:  # a comparison against the wrong base reads as a finding about the wrong model
        rows.append(("warning", c.lineage))
    targets = _targets(c)
    for b, m, x in targets:
        rows.append((f"target: {b}/{m}", _change(x)))
    if not targets:
        rows.append(("target", "none in this comparison (every benchmark is general)"))
    by_verdict: dict[str, list[str]] = {}
    for b, e in c.benchmarks.items():
        f = e.forgetting
        if f is not None:
            by_verdict.setdefault(f.verdict, []).append(
                f"{b} {'-' if f.delta is None else format(f.delta, '+.3f')} {fmt_ci(f.ci95, True)}")
    margin = c.forgetting.margin if c.forgetting is not None and c.forgetting.margin is not None else c.margin
    for verdict in ("forgot", "no evidence", "not measured", "improved"):
        if by_verdict.get(verdict):
            rows.append((f"forgetting: {verdict}", "; ".join(by_verdict[verdict])))
    if not by_verdict:
        rows.append(("forgetting", "no general benchmark judged"))
    if gate:
        rows.append(("gate", gate))
    sw = c.overfitting.sweep if c.overfitting is not None else None
    if sw is not None and sw.available and sw.keep is not None:
        keep = sw.keep
        rows.append(("checkpoint to keep", f"step {keep.step} ({keep.reason})".replace(" ()", "")))
    blocks: list[Block] = [Table(("finding", "evidence (base -> tuned, delta [95% CI])"), tuple(rows))]
    if margin is not None:
        blocks.append(f"Forgetting margin {margin:g}: forgot when the delta's whole 95% CI is below -{margin:g}; "
                      "not measured when both runs score the same constant (the metric carries no information).")
    return Section(VERDICT_TITLE, tuple(blocks))
