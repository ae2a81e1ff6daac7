"""What each command sends to a tracker, built from the files it wrote (pure functions)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sfteval.trackers import Record, finite_metrics


def _estimate_keys(prefix: str, est: Any) -> dict[str, Any]:
    d = est.to_dict() if hasattr(est, "to_dict") else dict(est or {})
    ci = d.get("ci95") or (None, None)
    return {prefix: d.get("value"), f"{prefix}/stderr": d.get("stderr"), f"{prefix}/ci_lo": ci[0],
            f"{prefix}/ci_hi": ci[1]}


def run_record(results: Any, run_dir: str | Path) -> Record:
    metrics: dict[str, Any] = {}
    for bench, entry in results.benchmarks.items():
        for metric, est in entry.metrics.items():
            metrics.update(_estimate_keys(f"{bench}/{metric}", est))
        metrics[f"{bench}/n"] = entry.n
    params = {"model": results.model.path, "backend": results.backend_name, "label": results.label,
              **{f"config.{k}": v for k, v in results.config.items() if isinstance(v, (str, int, float, bool))}}
    primary = {b: e.primary_metric for b, e in results.benchmarks.items()}
    return Record(
        name=results.run_id, kind="run",
        tags={"sfteval.kind": "run", "sfteval.run_id": results.run_id, "sfteval.run_dir": _uri(run_dir),
              "sfteval.model_digest": str(results.model.digest or "")},
        params=params, metrics=[(None, finite_metrics(metrics))],
        texts={"primary_metrics.json": json.dumps(primary, indent=1)})


def sweep_record(sweep: Any, path: str | Path) -> Record:
    steps: list[tuple[int | None, Mapping[str, float]]] = []
    for ck in sweep.checkpoints:
        m: dict[str, Any] = {}
        for bench, ms in ck.metrics.items():
            for metric, est in ms.items():
                m.update(_estimate_keys(f"{bench}/{metric}", est))
        steps.append((ck.step, finite_metrics(m)))
    for row in sweep.train_log:
        steps.append((row.step, finite_metrics({f"train/{k}": getattr(row, k) for k in
                                                ("train_loss", "eval_loss", "lr", "grad_norm", "tokens_per_s")})))
    best = dict(sweep.best or {})
    return Record(
        name=f"sweep:{Path(str(sweep.source)).name}", kind="sweep",
        tags={"sfteval.kind": "sweep", "sfteval.sweep": _uri(path), "sfteval.best_run_id": str(best.get("run_id", ""))},
        params={"source": sweep.source, "select": f"{sweep.select_metric} ({sweep.select_mode})",
                "best_step": best.get("step")},
        metrics=sorted(steps, key=lambda s: (s[0] is None, s[0] or 0)))


def comparison_record(comp: Any, path: str | Path) -> Record:
    """`comp`: the typed `sfteval.runfolder.Comparison`, or its comparison.json dict."""
    from sfteval.runfolder import Comparison

    if not isinstance(comp, Comparison):
        comp = Comparison.from_dict(comp)
    metrics: dict[str, Any] = {}
    tags = {"sfteval.kind": "comparison", "sfteval.comparison": _uri(path),
            "sfteval.base_run_id": comp.base.run_id, "sfteval.tuned_run_id": comp.tuned.run_id}
    rows = ["benchmark\tmetric\tbase\ttuned\tdelta\tdelta_ci95\tp_holm\tforgetting"]
    for bench, entry in comp.benchmarks.items():
        verdict = entry.forgetting.verdict if entry.forgetting is not None else None
        if verdict:
            tags[f"forgetting.{bench}"] = str(verdict)
        for metric, m in entry.metrics.items():
            key = f"{bench}/{metric}"
            metrics[f"{key}/base"] = m.base.value
            metrics[f"{key}/tuned"] = m.tuned.value
            metrics.update({k.replace(key, f"{key}/delta", 1): v
                            for k, v in _estimate_keys(key, m.delta).items()})
            metrics[f"{key}/p_holm"] = m.p_holm
            d = m.delta
            rows.append("\t".join(str(x) for x in (bench, metric, m.base.value, m.tuned.value, d.value,
                                                   f"[{d.lo}, {d.hi}]", m.p_holm, verdict or "")))
    return Record(name=f"compare:{tags['sfteval.base_run_id']}->{tags['sfteval.tuned_run_id']}", kind="comparison",
                  tags=tags, params={"settings": json.dumps(dict(comp.settings), default=str)[:4000]},
                  metrics=[(None, finite_metrics(metrics))], texts={"comparison_table.tsv": "\n".join(rows) + "\n"})


def gate_record(result: Any, path: str | Path) -> Record:
    checks = [dataclasses.asdict(c) if dataclasses.is_dataclass(c) else dict(c) for c in result.checks]
    metrics: dict[str, Any] = {"gate/exit_code": result.exit_code, "gate/checks": len(checks)}
    for status in ("pass", "fail", "inconclusive", "warn", "error", "uninformative"):
        metrics[f"gate/{status}"] = sum(str(c.get("verdict", "")) == status for c in checks)
    return Record(
        name=f"gate:{result.subject}", kind="gate",
        tags={"sfteval.kind": "gate", "gate.verdict": str(result.verdict), "sfteval.gated": _uri(path)},
        params={"subject": result.subject}, metrics=[(None, finite_metrics(metrics))],
        texts={"gate_checks.json": json.dumps(checks, indent=1, default=str)})


def _uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()
