"""What `sfteval demo` found, read back from the files it wrote, and how it says so.

`summarise` builds demo_summary.json from comparison.json, sweep.json and the gate
result; `format_summary` turns it into the lines the command prints. Pure functions
over dicts: no model is loaded here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sfteval.runfolder import read_comparison
from sfteval.sweep import sweep_dir

SUMMARY_SCHEMA = "sfteval.demo/1"
TARGET = "demo_heldout"
SELECT = "demo_heldout/rougeL"


def _delta(entry: dict[str, Any]) -> dict[str, Any]:
    m = entry["metrics"][entry["primary_metric"]]
    return {"metric": entry["primary_metric"], "base": m["base"]["value"], "tuned": m["tuned"]["value"],
            "delta": m["delta"]["value"], "ci95": m["delta"]["ci95"], "p_holm": m.get("p_holm")}


def _findings(comparison_dir: Path) -> dict[str, Any]:
    comp = read_comparison(comparison_dir).to_dict()
    benches = comp["benchmarks"]
    return {
        "comparison": str(comparison_dir / "comparison.json"),
        "report_html": str(comparison_dir / "report.html"),
        "report_md": str(comparison_dir / "report.md"),
        "tuned_run": comp["tuned"]["run_id"],
        "target": _delta(benches[TARGET]) if TARGET in benches else None,
        "forgetting": {b: {**_delta(e), "verdict": e["forgetting"]["verdict"], "detail": e["forgetting"]["detail"]}
                       for b, e in benches.items() if e.get("forgetting")},
        "margin": comp["settings"]["margin"],
    }


def summarise(out: Path, s: Any, pre: Any, sft: Any, backend: str, sweep: dict[str, Any],
              best_dir: Path, final_dir: Path, verdict: Any, seconds: dict[str, float]) -> dict[str, Any]:
    """demo_summary.json: settings, losses, the best checkpoint, findings of both
    comparisons (read back from comparison.json), the gate's verdict, paths, timings."""
    best = sweep["best"]
    steps = [c["step"] for c in sweep["checkpoints"]]
    return {
        "schema": SUMMARY_SCHEMA,
        "out": str(out),
        "fast": s.fast,
        "settings": json.loads(json.dumps(dataclasses.asdict(s))),
        "backend": backend,
        "pretrain": asdict(pre),
        "sft": {"steps": sft.steps, "train_loss": sft.train_loss, "eval_loss": sft.eval_loss, "checkpoints": steps},
        "best_checkpoint": {"step": best["step"], "run_id": best["run_id"], "metric": sweep["select"]["metric"],
                            "value": best["value"], "final_step": max(steps)},
        "best": _findings(best_dir),
        "final": _findings(final_dir),
        "gate": {"verdict": verdict.verdict, "exit_code": verdict.exit_code, "rules": str(out / "gate.toml"),
                 "summary": str(best_dir / "gate" / "summary.md"),
                 "checks": [{"target": c.target, "verdict": c.verdict, "reason": c.reason} for c in verdict.checks]},
        "sweep": str(sweep_dir(Path(out) / "reports", sweep["source"], "demo-sft") / "sweep.json"),
        "reports": str(out / "reports"),
        "dashboard": f"sfteval dashboard --reports {out / 'reports'}",
        "seconds": seconds,
    }


# ----------------------------------------------------------------------------- what it prints


def _ci(ci: list[float | None]) -> str:
    lo, hi = ci
    return "[-, -]" if lo is None or hi is None else f"[{lo:+.3f}, {hi:+.3f}]"


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The lines `sfteval demo` ends with: findings first, then where to look."""
    best, pre, ck = summary["best"], summary["pretrain"], summary["best_checkpoint"]
    lines = [
        "",
        "What the demo found (every number read from the files it wrote):",
        f"  base model: held-out corpus loss {pre['eval_loss_init']:.3f} (random init) -> {pre['eval_loss']:.3f} "
        f"after {pre['steps']} steps",
        f"  best checkpoint by {ck['metric']}: step {ck['step']} of {ck['final_step']} ({ck['value']:.3f}); "
        f"backend {summary['backend']}",
    ]
    t = best["target"]
    if t:
        lines.append(f"  target task {TARGET}/{t['metric']}: {t['base']:.3f} -> {t['tuned']:.3f}, "
                     f"delta {t['delta']:+.3f}, 95% CI {_ci(t['ci95'])}")
    for label, findings in (("best", best), ("final", summary["final"])):
        if label == "final" and ck["step"] == ck["final_step"]:
            continue
        for bench, f in findings["forgetting"].items():
            lines.append(f"  forgetting ({label}, step {ck['step'] if label == 'best' else ck['final_step']}) "
                         f"{bench}/{f['metric']}: {f['base']:.3f} -> {f['tuned']:.3f}, delta {f['delta']:+.3f}, "
                         f"95% CI {_ci(f['ci95'])} -> {f['verdict']} ({f['detail']}, margin {findings['margin']:g})")
    g = summary["gate"]
    lines.append(f"  gate (base vs best, {g['rules']}): {g['verdict'].upper()}")
    for c in g["checks"]:
        lines.append(f"    {c['verdict']:<12} {c['target']}: {c['reason']}")
    lines += [
        "",
        "Where to look:",
        f"  report:      {best['report_html']}",
        f"               {best['report_md']}",
        f"  comparison:  {best['comparison']}",
        f"  sweep:       {summary['sweep']}",
        f"  gate:        {g['summary']}",
        f"  dashboard:   {summary['dashboard']}",
        f"  summary:     {Path(summary['out']) / 'demo_summary.json'}",
        "  time (s):    " + ", ".join(f"{k} {v:g}" for k, v in summary["seconds"].items()),
    ]
    return lines
