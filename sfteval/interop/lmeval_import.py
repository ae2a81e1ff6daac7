"""`sfteval import lm-eval DIR`: lm-eval's logged samples as sfteval run folders.

One run folder per lm-eval results file (one per model and invocation). Each task
becomes a benchmark; each document one sample line:

- `prompt` / `prompt_hash`: lm-eval's context (the first request's first argument) and
  lm-eval's own `prompt_hash`, so compare's prompt-equality check runs on lm-eval's hashes;
- `output`: the generation (generate_until) or the highest-likelihood continuation
  (multiple choice, with every continuation's log-likelihood in meta);
- `answer`: the filtered response of the first filter (generate_until) or the chosen
  choice index; `reference`: lm-eval's target;
- `scores`: every per-sample metric value, named `metric` for filter "none" and
  `metric_<filter>` otherwise (`exact_match_strict_match`, `exact_match_flexible_extract`).

Metrics are re-aggregated with sfteval's intervals (Wilson for pass/fail, bounded or t
intervals otherwise) for every metric lm-eval aggregates by its mean; the value is
computed as lm-eval does (sum / n), so it equals the reported value exactly, and the
reported value and stderr are kept beside it. Metrics with another aggregation (corpus
BLEU, perplexity) are carried as reported, method "lm-eval:<aggregation>", no interval of
ours. Task config, version, n-shot, lm-eval version, model args and the task hash are
recorded. Every imported benchmark is `general` unless named with `--target TASK`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import sha256_text
from sfteval.interop.lmeval_read import LmEvalOutput, LmEvalTask, find_outputs
from sfteval.runfolder import BenchmarkResult, ModelInfo, RunResults, SampleLine, append_samples, prompts_digest, \
    write_results
from sfteval.stats import mean_estimate
from sfteval.types import Estimate

MEAN_BY_DEFAULT = {"acc", "acc_norm", "exact_match", "f1", "em", "mcc", "bleu_acc", "rouge1_acc"}


def metric_name(metric: str, flt: str) -> str:
    return metric if flt == "none" else f"{metric}_{re.sub(r'[^0-9A-Za-z]+', '_', flt).strip('_').lower()}"


def _aggregations(task: LmEvalTask) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in task.config.get("metric_list") or []:
        if isinstance(m, Mapping) and m.get("metric"):
            agg = m.get("aggregation")
            out[str(m["metric"])] = agg if isinstance(agg, str) else ("mean" if agg is None else str(agg))
    return out


def _kind(task: LmEvalTask) -> str:
    if task.output_type == "multiple_choice":
        return "choice"
    if task.output_type == "generate_until":
        return "math" if task.config.get("filter_list") else "reference"
    return "loglikelihood"


def _sample_line(task: LmEvalTask, doc: Any) -> SampleLine:
    scores = {metric_name(m, flt): v for flt, ms in doc.metrics.items() for m, v in ms.items()}
    meta: dict[str, Any] = {"lm_eval": {"doc_hash": doc.doc_hash, "filtered": dict(doc.filtered)}}
    if task.output_type == "multiple_choice":
        best = max(range(len(doc.logliks)), key=lambda i: doc.logliks[i]) if doc.logliks else None
        output = doc.continuations[best] if best is not None and best < len(doc.continuations) else ""
        meta["choice_logprobs"] = list(doc.logliks)
        meta["continuations"] = list(doc.continuations)
        answer: Any = best
        finish = "loglik"
    elif task.output_type == "generate_until":
        output = doc.raw_output
        first = next(iter(doc.filtered.values()), None)
        answer = None if first in (None, "[invalid]") else first
        finish = "unknown"  # lm-eval does not log why generation ended
    else:
        output, answer, finish = "", None, "loglik"
        meta["logliks"] = list(doc.logliks)
    return SampleLine(id=doc.doc_id, prompt=doc.prompt, prompt_hash=doc.prompt_hash or sha256_text(doc.prompt),
                      outputs=(output,), finish_reasons=(finish,), answer=answer, reference=doc.target,
                      scores=scores, meta=meta)


def _metrics(task: LmEvalTask, lines: list[SampleLine]) -> dict[str, Estimate]:
    aggs = _aggregations(task)
    out: dict[str, Estimate] = {}
    names = sorted({k for ln in lines for k in ln.scores})
    for key, reported in task.reported.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, flt = key.split(",", 1)
        name = metric_name(metric, flt)
        agg = aggs.get(metric, "mean" if metric in MEAN_BY_DEFAULT else "unknown")
        if agg == "mean" and name in names:
            vals = [float(v) for ln in lines if (v := ln.score(name)) is not None]
            est = mean_estimate(vals)
            # lm-eval's mean is sum(arr) / len(arr): the same float, so the two agree exactly.
            out[name] = dataclasses.replace(est, value=sum(vals) / len(vals)) if vals else est
        elif isinstance(reported, (int, float)):
            se = task.reported.get(f"{metric}_stderr,{flt}")
            se_f = float(se) if isinstance(se, (int, float)) else math.nan
            out[name] = Estimate(float(reported), se_f, (math.nan, math.nan), len(lines), f"lm-eval:{agg}")
    return out


def _task_config(config: Mapping[str, Any], model_args: Any) -> dict[str, Any]:
    """The task's config without what lm-eval copies into it from the model's arguments
    (`metadata.pretrained`, ...): settings must describe the task, so two models compare."""
    cfg = dict(config)
    meta = dict(cfg.get("metadata") or {})
    keys = set(model_args) if isinstance(model_args, Mapping) else set()
    cfg["metadata"] = {k: v for k, v in meta.items() if k not in keys | {"pretrained"}}
    return cfg


def _benchmark(task: LmEvalTask, lines: list[SampleLine], role: str, model_args: Any) -> BenchmarkResult:
    metrics = _metrics(task, lines)
    reported = {k: v for k, v in task.reported.items() if "," in k}
    first_metric = next((str(m["metric"]) for m in task.config.get("metric_list") or [] if isinstance(m, Mapping)),
                        None)
    filters = [str(f.get("name")) for f in task.config.get("filter_list") or [] if isinstance(f, Mapping)]
    primary = metric_name(first_metric, filters[0] if filters else "none") if first_metric else None
    return BenchmarkResult(
        name=task.name, kind=_kind(task), role=role, n=len(lines), metrics=metrics,
        primary_metric=primary if primary in metrics else next(iter(metrics), None),
        settings={"lm_eval": {"task": task.name, "version": task.version, "n_shot": task.n_shot,
                              "output_type": task.output_type, "config": _task_config(task.config, model_args)}},
        # The data's identity is its documents (lm-eval's doc hashes), not the samples file,
        # which holds the model's outputs: two models on one task share it.
        data={"source": "lm-eval", "sha256": sha256_text("".join(f"{ln.id}:{ln.meta['lm_eval']['doc_hash']}\n"
                                                               for ln in sorted(lines, key=lambda x: x.id))),
              "samples_file": str(task.samples_path), "samples_sha256": task.samples_sha256},
        prompts_digest=prompts_digest({ln.id: ln.prompt_hash for ln in lines}),
        description=f"lm-eval task {task.name} (version {task.version})", source="lm-eval",
        extra={"lm_eval_reported": reported,
               "lm_eval_metric_keys": {metric_name(*k.split(",", 1)): k for k in reported if "_stderr," not in k}},
    )


def _label(out: LmEvalOutput, name: str | None) -> str:
    raw = name or Path(out.model_name.rstrip("/")).name or "lm-eval"
    return re.sub(r"[^0-9A-Za-z._-]+", "-", raw).strip("-") or "lm-eval"


def import_output(out: LmEvalOutput, reports: Path, *, name: str | None = None,
                  targets: Iterable[str] = ()) -> Path:
    """Write one run folder for one lm-eval results file; returns its path."""
    targets = set(targets)
    unknown = targets - set(out.tasks)
    if unknown:
        raise SftevalError(f"--target names a task that is not in this output: {sorted(unknown)[0]}",
                           path=str(out.results_path), field="--target")
    label = _label(out, name)
    run_id = f"{label}-{out.results_sha256[:8]}"
    run_dir = reports / "runs" / run_id
    if (run_dir / "results.json").is_file():
        return run_dir  # the same file imported again: same folder, nothing to redo
    tmp = run_dir.with_name(f".tmp-{run_id}")
    (tmp / "samples").mkdir(parents=True, exist_ok=True)
    for f in (tmp / "samples").glob("*.jsonl"):
        f.unlink()
    cfg = dict(out.raw.get("config") or {})
    model_args = cfg.get("model_args")
    benches: dict[str, BenchmarkResult] = {}
    for task in out.tasks.values():
        lines = [_sample_line(task, d) for d in task.docs]
        append_samples(tmp / "samples" / f"{task.name}.jsonl", lines)
        benches[task.name] = _benchmark(task, lines, "target" if task.name in targets else "general", model_args)
    results = RunResults(
        run_id=run_id, label=label, created=_date(out.raw.get("date")), finished=_date(out.raw.get("date")),
        model=ModelInfo(kind="lm-eval", path=out.model_name,
                        fingerprint={"digest": sha256_text(repr((model_args, cfg.get("model_sha"))))[:16],
                                     "model_sha": cfg.get("model_sha") or None,
                                     "revision": cfg.get("model_revision")}),
        benchmarks=benches,
        config={"source": "lm-eval", "lm_eval_version": out.raw.get("lm_eval_version"), "model": cfg.get("model"),
                "model_args": model_args, "limit": cfg.get("limit"), "gen_kwargs": cfg.get("gen_kwargs"),
                "seeds": {k: cfg.get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")},
                "layout": out.layout, "results_file": str(out.results_path), "results_sha256": out.results_sha256},
        environment={"transformers_version": out.raw.get("transformers_version"),
                     "lm_eval_version": out.raw.get("lm_eval_version"), "git_hash": out.raw.get("git_hash")},
        backend={"name": f"lm-eval:{cfg.get('model') or 'unknown'}", "dtype": _dtype(cfg.get("model_dtype")),
                 "batch_size": cfg.get("batch_size"), "device": cfg.get("device")},
        prompting={"chat_template": out.raw.get("chat_template") is not None,
                   "chat_template_sha": out.raw.get("chat_template_sha"),
                   "system_instruction_sha": out.raw.get("system_instruction_sha"),
                   "fewshot_as_multiturn": out.raw.get("fewshot_as_multiturn")},
    )
    write_results(tmp, results)
    if run_dir.exists():  # a half-written earlier import (no results.json): replaced whole
        import shutil

        shutil.rmtree(run_dir)
    tmp.rename(run_dir)
    return run_dir


def import_lmeval(root: str | Path, reports: str | Path, *, name: str | None = None,
                  targets: Iterable[str] = ()) -> list[Path]:
    outputs = find_outputs(root)
    if name is not None and len(outputs) > 1:
        raise SftevalError(f"{len(outputs)} lm-eval results files here; --name labels one", path=str(root),
                           field="--name", hint="import each model's folder on its own")
    return [import_output(o, Path(reports), name=name, targets=targets) for o in outputs]


def _dtype(raw: Any) -> str | None:
    return None if raw is None else str(raw).removeprefix("torch.")


def _date(raw: Any) -> str:
    from datetime import datetime, timezone

    if isinstance(raw, (int, float)):
        return datetime.fromtimestamp(float(raw), timezone.utc).isoformat(timespec="seconds")
    return str(raw or "")
