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
from typing import Any

from sfteval.report_blocks import Block, Section, Table, fmt, fmt_ci

VERDICT_TITLE = "Verdict"


def _targets(c: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for b, e in c["benchmarks"].items():
        role = e.get("role")
        target = role == "target" if role else not e.get("general") and b != "train"
        m = e.get("primary_metric")
        if target and m in e["metrics"]:
            out.append((b, m, e["metrics"][m]))
    return out


def _change(x: dict[str, Any]) -> str:
    d = x["delta"]
    value = "-" if d.get("value") is None else f"{d['value']:+.3f}"
    return f"{fmt(x['base']['value'])} -> {fmt(x['tuned']['value'])} ({value} {fmt_ci(d.get('ci95'), True)})"


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


def verdict_section(c: dict[str, Any], gate: str | None = None) -> Section:
    """The card: one table of findings, each with the number that backs it."""
    rows: list[tuple[str, str]] = []
    targets = _targets(c)
    for b, m, x in targets:
        rows.append((f"target: {b}/{m}", _change(x)))
    if not targets:
        rows.append(("target", "none in this comparison (every benchmark is general)"))
    by_verdict: dict[str, list[str]] = {}
    for b, e in c["benchmarks"].items():
        f = e.get("forgetting")
        if f:
            by_verdict.setdefault(f["verdict"], []).append(
                f"{b} {'-' if f.get('delta') is None else format(f['delta'], '+.3f')} {fmt_ci(f.get('ci95'), True)}")
    margin = (c.get("forgetting") or {}).get("margin", c["settings"].get("margin"))
    for verdict in ("forgot", "no evidence", "not measured", "improved"):
        if by_verdict.get(verdict):
            rows.append((f"forgetting: {verdict}", "; ".join(by_verdict[verdict])))
    if not by_verdict:
        rows.append(("forgetting", "no general benchmark judged"))
    if gate:
        rows.append(("gate", gate))
    sw = ((c.get("overfitting") or {}).get("sweep") or {})
    if sw.get("available") and sw.get("keep"):
        keep = sw["keep"]
        rows.append(("checkpoint to keep", f"step {keep['step']} ({keep.get('reason', '')})".replace(" ()", "")))
    blocks: list[Block] = [Table(("finding", "evidence (base -> tuned, delta [95% CI])"), tuple(rows))]
    if margin is not None:
        blocks.append(f"Forgetting margin {margin:g}: forgot when the delta's whole 95% CI is below -{margin:g}; "
                      "not measured when both runs score the same constant (the metric carries no information).")
    return Section(VERDICT_TITLE, tuple(blocks))
