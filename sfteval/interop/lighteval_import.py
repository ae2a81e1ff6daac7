"""`sfteval import lighteval DIR`: lighteval's details files as sfteval run folders.

One run folder per lighteval results file (one per model and invocation); each task
(`<task>|<n_shot>`, lighteval's key) becomes a benchmark, each details row one sample line:

- `id`: lighteval's document id (its index in the evaluation split); a document that
  appears again (several evaluation splits, `--num-fewshot-seeds` > 1) gets `~2`, `~3`...
  in file order, which is the same for every model on the task;
- `prompt`: the model's input when lighteval logged it as text, else the prompt lighteval
  renders without a chat template (system prompt, instruction, few-shot `query gold`
  pairs and the query, joined by blank lines, as its PromptManager does): lighteval 0.13.0
  logs `model_response.input` as null and only the token ids, so with a chat template the
  model saw this text inside the template (recorded in `prompting`). `prompt_hash` is its
  sha256; the sha256 of the input token ids is kept in `meta.lighteval.input_tokens_sha256`;
- `output`: the generation(s) (post-processed when lighteval did so), or for
  log-likelihood tasks the highest-scoring choice, with every choice's log-probability in
  `meta.choice_logprobs`; `answer` the chosen index (log-likelihood) or the final text;
  `reference` the gold index / indices;
- `scores`: every numeric per-sample metric under lighteval's name (`acc`, `em`, `f1`...);
  a corpus metric's per-sample inputs (`{golds, preds}`) go to `meta.lighteval.corpus_inputs`.

Metrics whose `corpus_level_fn` is the mean (lighteval's `np.mean`) are re-aggregated with
sfteval's intervals; the value is numpy's mean of the same float64 values, so it equals
lighteval's exactly, and its value and bootstrap stderr are kept beside it. Others (corpus
F1, max-aggregated groupings, perplexity) are carried as reported, method
`lighteval:<function>`, without an interval of ours. Task config (object addresses in its
printed metric functions removed, so two runs compare), version, n-shot, model config,
lighteval's prompt/input/output hashes and the results file's digest are recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import sha256_text
from sfteval.interop.lighteval_read import (
    LightevalDetail,
    LightevalOutput,
    LightevalTask,
    find_outputs,
)
from sfteval.runfolder import (
    BenchmarkResult,
    ModelInfo,
    RunResults,
    SampleLine,
    append_samples,
    prompts_digest,
    write_results,
)
from sfteval.stats import mean_estimate
from sfteval.types import Estimate

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def aggregations(task: LightevalTask) -> dict[str, str]:
    """metric name -> the name of lighteval's corpus-level function for it ("mean", "max", ...)."""
    out: dict[str, str] = {}
    for m in task.config.get("metrics") or []:
        if not isinstance(m, Mapping):
            continue
        names, fn = m.get("metric_name"), m.get("corpus_level_fn")
        for name in names if isinstance(names, list) else [names]:
            if name is None:
                continue
            agg = fn.get(name) if isinstance(fn, Mapping) else fn
            out[str(name)] = _ADDRESS.sub("", str(agg))
    return out


def render_prompt(doc: Mapping[str, Any], system_prompt: str | None) -> str:
    """lighteval's plain-text prompt (PromptManager._prepare_plain_text, 0.13.0)."""
    parts: list[str] = []
    if system_prompt is not None:
        parts.append(system_prompt)
    instruction = doc.get("instruction")
    if instruction is not None:
        parts.append(str(instruction))
    for shot in doc.get("fewshot_samples") or []:
        golds = _golds(shot)
        gold = str(golds[0]).strip() if golds else ""
        parts.append(_query(shot) + " " + gold)
    parts.append(_query(doc))
    return "\n\n".join(parts)


def _query(doc: Mapping[str, Any]) -> str:
    query, instruction = str(doc.get("query") or ""), doc.get("instruction")
    if instruction is not None and query.startswith(str(instruction)):
        return query[len(str(instruction)):].strip()
    return query


def _golds(doc: Mapping[str, Any]) -> list[str]:
    gold, choices = doc.get("gold_index"), list(doc.get("choices") or [])
    idx = gold if isinstance(gold, list) else [gold]
    return [choices[int(i)] for i in idx if i is not None and 0 <= int(i) < len(choices)]


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _sample_line(task: LightevalTask, d: LightevalDetail, sample_id: str, system_prompt: str | None) -> SampleLine:
    scores = {k: x for k, v in d.metrics.items() if (x := _number(v)) is not None}
    corpus = {k: v for k, v in d.metrics.items() if _number(v) is None}
    prompt = d.prompt if d.prompt_logged else render_prompt(d.doc, system_prompt)
    resp = d.response
    meta: dict[str, Any] = {"lighteval": {
        "doc_id": d.doc_id, "row": d.row, "query": d.query, "n_fewshot": len(d.doc.get("fewshot_samples") or []),
        "input_tokens_sha256": hashlib.sha256(str(list(resp.get("input_tokens") or [])).encode()).hexdigest(),
        "n_input_tokens": len(resp.get("input_tokens") or []),
        "truncated_tokens_count": resp.get("truncated_tokens_count"),
        "padded_tokens_count": resp.get("padded_tokens_count"),
        "prompt_logged": d.prompt_logged}}
    if corpus:
        meta["lighteval"]["corpus_inputs"] = corpus
    if d.logprobs and not d.texts:
        best = max(range(len(d.logprobs)), key=lambda i: d.logprobs[i])
        outputs: tuple[str, ...] = (d.choices[best] if best < len(d.choices) else "",)
        meta["choice_logprobs"], meta["continuations"] = list(d.logprobs), list(d.choices)
        answer: Any = best
        finish: tuple[str, ...] = ("loglik",)
    else:
        outputs = d.texts or ("",)
        answer = d.texts[0] if d.texts else None
        finish = ("unknown",) * len(outputs)  # lighteval does not log why a generation ended
    if finish == ("loglik",):
        reference: Any = d.gold_index[0] if len(d.gold_index) == 1 else list(d.gold_index)
    else:  # a generative task's gold is its text
        golds = [d.choices[i] for i in d.gold_index if 0 <= i < len(d.choices)]
        reference = golds[0] if len(golds) == 1 else golds
    return SampleLine(id=sample_id, prompt=prompt, prompt_hash=sha256_text(prompt), outputs=outputs,
                      finish_reasons=finish, answer=answer, reference=reference, scores=scores, meta=meta)


def _lines(task: LightevalTask, system_prompt: str | None) -> list[SampleLine]:
    seen: dict[str, int] = {}
    out: list[SampleLine] = []
    for d in task.details:
        seen[d.doc_id] = seen.get(d.doc_id, 0) + 1
        sid = d.doc_id if seen[d.doc_id] == 1 else f"{d.doc_id}~{seen[d.doc_id]}"
        out.append(_sample_line(task, d, sid, system_prompt))
    return out


def _metrics(task: LightevalTask, lines: list[SampleLine]) -> dict[str, Estimate]:
    aggs = aggregations(task)
    out: dict[str, Estimate] = {}
    for name, reported in task.reported.items():
        if name.endswith("_stderr"):
            continue
        agg = aggs.get(name, "unknown")
        vals = [v for ln in lines if (v := ln.score(name)) is not None]
        if agg == "mean" and vals:
            if len(vals) != len(lines):
                raise SftevalError(f"metric '{name}' has a per-sample value in {len(vals)} of {len(lines)} rows",
                                   path=str(task.details_path), field=f"metric.{name}")
            # mean_estimate's value is numpy's mean of the float64 values: lighteval's np.mean.
            out[name] = mean_estimate(vals)
        elif isinstance(reported, (int, float)) and not isinstance(reported, bool):
            se = task.reported.get(f"{name}_stderr")
            se_f = float(se) if isinstance(se, (int, float)) else math.nan
            out[name] = Estimate(float(reported), se_f, (math.nan, math.nan), len(lines), f"lighteval:{agg}")
    return out


def _clean(x: Any) -> Any:
    """The task config without object addresses (`<... object at 0x7f..>` differs per process)."""
    if isinstance(x, str):
        return _ADDRESS.sub("", x)
    if isinstance(x, Mapping):
        return {k: _clean(v) for k, v in x.items() if k not in ("original_num_docs", "effective_num_docs")}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _benchmark(task: LightevalTask, lines: list[SampleLine], role: str) -> BenchmarkResult:
    metrics = _metrics(task, lines)
    first = next((str(n) for n in aggregations(task) if n in metrics), None)
    logprobs = any(ln.finish_reason == "loglik" for ln in lines)
    docs = {ln.id: json.dumps([ln.meta["lighteval"]["query"], ln.meta.get("continuations"), ln.reference],
                              sort_keys=True) for ln in lines}
    doc_ids = "".join(f"{i}:{sha256_text(docs[i])}\n" for i in sorted(docs))
    return BenchmarkResult(
        name=task.name, kind="choice" if logprobs else "reference", role=role, n=len(lines), metrics=metrics,
        primary_metric=first if first is not None else next(iter(metrics), None),
        settings={"lighteval": {"task": task.base_name, "version": task.version, "n_shot": task.n_shot,
                                "config": _clean(dict(task.config))}},
        # The data's identity is its documents (query, choices, gold), not the details file,
        # which holds the model's outputs: two models on one task share it.
        data={"source": "lighteval", "sha256": sha256_text(doc_ids), "details_file": str(task.details_path),
              "details_sha256": task.details_sha256},
        prompts_digest=prompts_digest({ln.id: ln.prompt_hash for ln in lines}),
        description=f"lighteval task {task.name} (version {task.version})", source="lighteval",
        extra={"lighteval_reported": dict(task.reported), "lighteval_summary": dict(task.summary)},
    )


def bench_name(task: LightevalTask) -> str:
    """The task's name without lighteval's `|<n_shot>` (n-shot is a setting: runs at another
    n-shot then refuse to compare instead of silently pairing), safe as a file name."""
    return re.sub(r"[^0-9A-Za-z._:-]+", "_", task.base_name).strip("_") or "task"


def _label(out: LightevalOutput, name: str | None) -> str:
    raw = name or Path(out.model_name.rstrip("/")).name or "lighteval"
    return re.sub(r"[^0-9A-Za-z._-]+", "-", raw).strip("-") or "lighteval"


def import_output(out: LightevalOutput, reports: Path, *, name: str | None = None,
                  targets: Iterable[str] = ()) -> Path:
    """Write one run folder for one lighteval results file; returns its path."""
    targets = set(targets)
    known = set(out.tasks) | {t.base_name for t in out.tasks.values()} | {bench_name(t) for t in out.tasks.values()}
    unknown = targets - known
    if unknown:
        raise SftevalError(f"--target names a task that is not in this output: {min(unknown)}",
                           path=str(out.results_path), field="--target", hint=f"tasks: {', '.join(sorted(out.tasks))}")
    label = _label(out, name)
    run_id = f"{label}-{out.results_sha256[:8]}"
    run_dir = reports / "runs" / run_id
    if (run_dir / "results.json").is_file():
        return run_dir  # the same file imported again: same folder, nothing to redo
    gen = out.general
    model_config = dict(gen.get("model_config") or {})
    system_prompt = model_config.get("system_prompt")
    tmp = run_dir.with_name(f".tmp-{run_id}")
    (tmp / "samples").mkdir(parents=True, exist_ok=True)
    for f in (tmp / "samples").glob("*.jsonl"):
        f.unlink()
    benches: dict[str, BenchmarkResult] = {}
    for task in out.tasks.values():
        bench = bench_name(task)
        if bench in benches:
            raise SftevalError(f"two tasks of this results file import as benchmark '{bench}' (n-shot differs)",
                               path=str(out.results_path), field=f"results.{task.name}",
                               hint="run each n-shot of a task in its own lighteval invocation")
        lines = _lines(task, system_prompt)
        append_samples(tmp / "samples" / f"{bench}.jsonl", lines)
        role = "target" if targets & {task.name, task.base_name, bench} else "general"
        benches[bench] = dataclasses.replace(_benchmark(task, lines, role), name=bench)
    results = RunResults(
        run_id=run_id, label=label, created=out.date_id, finished=out.date_id,
        model=ModelInfo(kind="lighteval", path=out.model_name,
                        fingerprint={"digest": sha256_text(json.dumps(model_config, sort_keys=True, default=str))[:16],
                                     "revision": model_config.get("revision")}),
        benchmarks=benches,
        config={"source": "lighteval", "lighteval_sha": gen.get("lighteval_sha"), "model_config": model_config,
                "num_fewshot_seeds": gen.get("num_fewshot_seeds"), "max_samples": gen.get("max_samples"),
                "job_id": gen.get("job_id"),
                "total_evaluation_time_secondes": gen.get("total_evaluation_time_secondes"),
                "results_file": str(out.results_path), "results_sha256": out.results_sha256,
                "summary_general": out.raw.get("summary_general")},
        environment={"lighteval_sha": gen.get("lighteval_sha")},
        backend={"name": "lighteval", "dtype": model_config.get("dtype"), "batch_size": model_config.get("batch_size"),
                 "device": model_config.get("device")},
        # None: lighteval's default (the tokenizer's chat template when it has one).
        prompting={"chat_template": model_config.get("override_chat_template"),
                   "system_prompt_sha": None if system_prompt is None else sha256_text(str(system_prompt))},
    )
    write_results(tmp, results)
    if run_dir.exists():  # a half-written earlier import (no results.json): replaced whole
        import shutil

        shutil.rmtree(run_dir)
    tmp.rename(run_dir)
    return run_dir


def import_lighteval(root: str | Path, reports: str | Path, *, name: str | None = None,
                     targets: Iterable[str] = ()) -> list[Path]:
    outputs = find_outputs(root)
    if name is not None and len(outputs) > 1:
        raise SftevalError(f"{len(outputs)} lighteval results files here; --name labels one", path=str(root),
                           field="--name", hint="import each results file (or model folder) on its own")
    return [import_output(o, Path(reports), name=name, targets=targets) for o in outputs]
