"""What `sfteval demo` found, read back from the files it wrote, and how it says so.

`summarise` builds demo_summary.json from comparison.json (base vs best and base vs
final), sweep.json, the gate result and the seeded rating study; `story` reduces it to
the structured facts of the headline and `headline` to the one sentence a newcomer can
repeat ("the tuned model solves X% of the held-out task, up from Y%; it lost Z points on
...; keep step N; the gate says ..."); `format_summary` turns it all into the lines the
command prints: plain text, no table or terminal width involved, so a pipe or a log file
gets every word. Pure functions over dicts: no model is loaded here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sfteval.runfolder import read_comparison
from sfteval.sweep import sweep_dir

SUMMARY_SCHEMA = "sfteval.demo/2"
TARGET = "demo_heldout"
TARGET_METRIC = "exact_match"  # every row has one right reply: solved or not (the headline)
# Selection by the headline's metric; ties go to the earliest step (less drift from the base).
SELECT = f"{TARGET}/{TARGET_METRIC}"


def _delta(entry: dict[str, Any], metric: str | None = None) -> dict[str, Any]:
    name = metric or entry["primary_metric"]
    m = entry["metrics"][name]
    return {"metric": name, "base": m["base"]["value"], "tuned": m["tuned"]["value"],
            "delta": m["delta"]["value"], "ci95": m["delta"]["ci95"], "p_holm": m.get("p_holm")}


def _findings(comparison_dir: Path) -> dict[str, Any]:
    comp = read_comparison(comparison_dir).to_dict()
    benches = comp["benchmarks"]
    target = benches.get(TARGET)
    return {
        "comparison": str(comparison_dir / "comparison.json"),
        "report_html": str(comparison_dir / "report.html"),
        "report_md": str(comparison_dir / "report.md"),
        "tuned_run": comp["tuned"]["run_id"],
        "target": _delta(target, TARGET_METRIC) if target and TARGET_METRIC in target["metrics"] else None,
        "target_rougeL": _delta(target, "rougeL") if target and "rougeL" in target["metrics"] else None,
        "forgetting": {b: {**_delta(e), "verdict": e["forgetting"]["verdict"], "detail": e["forgetting"]["detail"]}
                       for b, e in benches.items() if e.get("forgetting")},
        "margin": comp["settings"]["margin"],
    }


def summarise(out: Path, s: Any, pre: Any, sft: Any, backend: tuple[str, str], sweep: dict[str, Any],
              best_dir: Path, final_dir: Path, verdict: Any, study: dict[str, Any] | None,
              seconds: dict[str, float]) -> dict[str, Any]:
    """demo_summary.json: settings, losses, the best checkpoint, findings of both
    comparisons (read back from comparison.json), the gate's verdict, the rating study,
    the headline's facts and sentence, paths, timings."""
    best = sweep["best"]
    steps = [c["step"] for c in sweep["checkpoints"]]
    summary = {
        "schema": SUMMARY_SCHEMA,
        "out": str(out),
        "settings": json.loads(json.dumps(dataclasses.asdict(s))),
        "backend": backend[0],
        "backend_reason": backend[1],
        "pretrain": asdict(pre),
        "sft": {"steps": sft.steps, "train_loss": sft.train_loss, "eval_loss": sft.eval_loss, "checkpoints": steps},
        "best_checkpoint": {"step": best["step"], "run_id": best["run_id"], "metric": sweep["select"]["metric"],
                            "value": best["value"], "final_step": max(steps)},
        "curve": [{"step": c["step"], **{f"{b}/{m}": c["metrics"][b][m]["value"] for b, m in _curve_keys(c)}}
                  for c in sweep["checkpoints"]],
        "best": _findings(best_dir),
        "final": _findings(final_dir),
        "gate": {"verdict": verdict.verdict, "exit_code": verdict.exit_code, "rules": str(out / "gate.toml"),
                 "summary": str(best_dir / "gate" / "summary.md"),
                 "checks": [{"target": c.target, "verdict": c.verdict, "reason": c.reason} for c in verdict.checks]},
        "study": study,
        "sweep": str(sweep_dir(Path(out) / "reports", sweep["source"], "demo-sft") / "sweep.json"),
        "reports": str(out / "reports"),
        "dashboard": f"sfteval dashboard --reports {out / 'reports'}",
        "seconds": seconds,
    }
    summary["story"] = story(summary)
    summary["headline"] = headline(summary["story"])
    return summary


def _curve_keys(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The target's exact match and rougeL, and every other benchmark's first metric."""
    keys = []
    for b, ms in entry["metrics"].items():
        names = [m for m in (TARGET_METRIC, "rougeL") if m in ms] if b == TARGET else list(ms)[:1]
        keys += [(b, m) for m in names]
    return keys


# ----------------------------------------------------------------------------- the headline


def story(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline's facts, each read from the comparisons, sweep and gate above:
    the target's exact match at the best checkpoint and the base; general benchmarks
    that dropped beyond the margin (`forgot`), those whose drop is significant (the 95%
    CI below 0) but not shown beyond the margin (`dropped`: a headline that left them
    out would say nothing was lost), and those whose delta's 95% CI reaches 0 or above
    (`kept`: no significant drop); general benchmarks on which the final
    checkpoint scores below the best (`final_worse`); the gate's verdict and the
    targets of its failing checks."""
    best, final, ck = summary["best"], summary["final"], summary["best_checkpoint"]
    forgot, dropped, kept = [], [], []
    for bench, f in best["forgetting"].items():
        row = {"benchmark": bench, "metric": f["metric"], "base": f["base"], "tuned": f["tuned"], "delta": f["delta"],
               "ci95": f["ci95"]}
        hi = f["ci95"][1]
        if f["verdict"] == "forgot":
            forgot.append(row)
        elif f["verdict"] == "not measured" or hi is None:
            continue
        elif hi < 0:
            dropped.append(row)
        else:
            kept.append(row)
    final_worse = []
    if ck["step"] != ck["final_step"]:
        for bench, f in final["forgetting"].items():
            b = best["forgetting"].get(bench)
            measured = b is not None and "not measured" not in (f["verdict"], b["verdict"])
            if measured and f["tuned"] < b["tuned"]:
                final_worse.append({"benchmark": bench, "metric": f["metric"], "best": b["tuned"], "final": f["tuned"]})
    gate = summary["gate"]
    return {
        "target": {"benchmark": TARGET, **(best["target"] or {})},
        "forgot": sorted(forgot, key=lambda r: r["delta"]),
        "dropped": sorted(dropped, key=lambda r: r["delta"]),
        "kept": kept,
        "keep_step": ck["step"],
        "final_step": ck["final_step"],
        "final_worse": sorted(final_worse, key=lambda r: r["final"] - r["best"]),
        "gate": {"verdict": gate["verdict"], "failed": [c["target"] for c in gate["checks"] if c["verdict"] == "fail"]},
    }


def _pts(x: float) -> str:
    return f"{abs(x) * 100:.0f}"


def _moved(row: dict[str, Any], note: str = "") -> str:
    """`demo_mmlu (0.99 -> 0.81)`, with `note` inside the parentheses after a comma."""
    return f"{row['benchmark']} ({row['base']:.2f} -> {row['tuned']:.2f}{', ' + note if note else ''})"


def headline(st: dict[str, Any]) -> str:
    """One sentence: solved share (up from the base's), what was lost and what was not,
    which step to keep and why, and the gate's word."""
    t = st["target"]
    parts = [f"The tuned model solves {t['tuned'] * 100:.0f}% of the held-out task exactly, up from "
             f"{t['base'] * 100:.0f}%" if t.get("tuned") is not None else "The held-out task was not scored"]
    lost = [f"{_pts(r['delta'])} points on {_moved(r)}" for r in st["forgot"]]
    lost += [f"{_pts(r['delta'])} points on {_moved(r, 'a significant drop not shown beyond the margin')}"
             for r in st["dropped"]]
    kept = ", ".join(_moved(r, "no significant drop") for r in st["kept"])
    if lost:
        parts.append("it lost " + ", ".join(lost) + (f" but kept {kept}" if kept else ""))
    elif kept:
        parts.append(f"it kept {kept}")
    else:
        parts.append("it lost no general skill beyond the margin")
    if st["keep_step"] == st["final_step"]:
        parts.append(f"keep step {st['keep_step']}, the last")
    elif st["final_worse"]:
        w = st["final_worse"][0]
        parts.append(f"keep step {st['keep_step']}, not the last ({st['final_step']}): it loses "
                     f"{_pts(w['final'] - w['best'])} more points on {w['benchmark']}")
    else:
        parts.append(f"keep step {st['keep_step']} of {st['final_step']}")
    g = st["gate"]
    why = f" ({', '.join(g['failed'])} dropped beyond the allowed drop)" if g["failed"] else ""
    parts.append(f"the gate says {g['verdict'].upper()}{why}")
    return "; ".join(parts) + "."


# ----------------------------------------------------------------------------- what it prints


def _ci(ci: list[float | None]) -> str:
    lo, hi = ci
    return "[-, -]" if lo is None or hi is None else f"[{lo:+.3f}, {hi:+.3f}]"


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The lines `sfteval demo` ends with: the headline, the findings, how to rate the
    pairs, then where to look. Long lines stay whole (no wrapping to a terminal)."""
    best, pre, ck = summary["best"], summary["pretrain"], summary["best_checkpoint"]
    lines = [
        "",
        summary["headline"],
        "",
        "What the demo found (every number read from the files it wrote):",
        f"  base model: held-out corpus loss {pre['eval_loss_init']:.3f} (random init) -> {pre['eval_loss']:.3f} "
        f"after {pre['steps']} steps",
        f"  best checkpoint by {ck['metric']}: step {ck['step']} of {ck['final_step']} ({ck['value']:.3f}); "
        f"backend {summary['backend']} ({summary['backend_reason']})",
    ]
    for key in ("target", "target_rougeL"):
        t = best.get(key)
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
    study = summary.get("study")
    if study and study.get("skipped"):
        lines += ["", f"Rating study not seeded: {study['skipped']}"]
    elif study:
        lines += [
            "",
            f"Rate the pairs yourself (blind: base vs step {ck['step']} on {study['n_items']} held-out items, "
            f"study '{study['study_id']}'):",
            f"  {summary['dashboard']}      then open Rate, type your name, pick the better reply (or tie / both bad)",
            f"  for a team: sfteval ratings add-raters {study['study_id']} Ana Ben --reports {summary['reports']}"
            " --base-url http://HOST:8502",
            f"              sfteval dashboard --reports {summary['reports']} --rate {study['study_id']} --host 0.0.0.0 --port 8502",
            f"  results:    sfteval ratings results {study['study_id']} --reports {summary['reports']}",
        ]
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
