"""`sfteval export lm-eval RUN`: a run's metrics as an lm-eval results file.

The file follows lm-eval's aggregated-results schema (0.4.x): per task
`results[task]["<metric>,<filter>"]` and `"<metric>_stderr,<filter>"`, with `alias`,
`configs`, `versions`, `n-shot`, `higher_is_better`, `n-samples` and `config`, so
leaderboard tooling and lm-eval's own table printer read it. Metric names that came from
lm-eval (`sfteval import lm-eval`) get their original keys back; sfteval's own metrics
are written under filter "none". sfteval's 95% intervals, which that schema has no
place for, sit in a top-level `sfteval` object beside it (ignored by lm-eval's readers).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sfteval.runfolder import read_results


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else "N/A"  # lm-eval writes "N/A" where it has no stderr


def export_lmeval(run_dir: str | Path) -> dict[str, Any]:
    res = read_results(run_dir)
    out: dict[str, Any] = {"results": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {},
                           "higher_is_better": {}, "n-samples": {}}
    ci: dict[str, dict[str, list[float | None]]] = {}
    for name, b in res.benchmarks.items():
        keys = dict(b.extra.get("lm_eval_metric_keys") or {})
        lm = dict(b.settings.get("lm_eval") or {})
        entry: dict[str, Any] = {"alias": name}
        ci[name] = {}
        for metric, est in b.metrics.items():
            key = keys.get(metric) or f"{metric},none"
            m, flt = key.split(",", 1)
            entry[key] = est.value
            entry[f"{m}_stderr,{flt}"] = _num(est.stderr)
            ci[name][key] = [lo if math.isfinite(lo) else None for lo in est.ci95]
        out["results"][name] = entry
        out["group_subtasks"][name] = []
        cfg = dict(lm.get("config") or {})
        cfg.setdefault("task", name)
        cfg.setdefault("output_type", _output_type(b.kind))
        cfg.setdefault("metadata", {"source": "sfteval", "kind": b.kind, "settings_digest": b.prompts_digest})
        out["configs"][name] = cfg
        out["versions"][name] = lm.get("version", b.settings.get("version", 0))
        out["n-shot"][name] = lm.get("n_shot", b.settings.get("num_fewshot", 0))
        out["higher_is_better"][name] = {k.split(",", 1)[0]: True for k in entry if "," in k and "_stderr," not in k}
        out["n-samples"][name] = {"original": b.n, "effective": b.n}
    out["config"] = {"model": f"sfteval:{res.backend_name or 'unknown'}",
                     "model_args": {"pretrained": res.model.path} if res.model.path else {},
                     "model_sha": res.model.digest, "limit": res.config.get("limit"),
                     "random_seed": res.config.get("seed")}
    out["date"] = res.finished or res.created
    out["sfteval"] = {"schema": "sfteval.lmeval-export/1", "run_id": res.run_id, "ci95": ci,
                      "note": "95% intervals by sfteval's methods; lm-eval's schema keeps only stderr"}
    return out


def _output_type(kind: str) -> str:
    return {"choice": "multiple_choice", "loglikelihood": "loglikelihood"}.get(kind, "generate_until")
