"""Kind `instruction`: verifiable instruction following (IFEval and files in its schema).

Rows: `{"key", "prompt", "instruction_id_list": [...], "kwargs": [{...}, ...]}` (the hub's
`google/IFEval` train split, or a local JSONL/JSON/Parquet file in that schema). The id
is `key` (else the usual id fields, else the row index). The prompt is the single user
turn, rendered with the chat template when the model has one (recorded), zero-shot;
generation settings come from the TOML (greedy). Every instruction id and its arguments
are checked when samples are built, before any model loads.

Per sample: the strict and loose verdict of each instruction (meta `strict`, `loose`),
scores `prompt_strict` / `prompt_loose` (1 when every instruction is followed) and
`instruction_strict` / `instruction_loose` = followed_i / m, where m is the mean number
of instructions per prompt over this run's items. That scaling makes the mean of the
per-sample scores exactly the paper's instruction-level accuracy (followed / total), so
a paired comparison of two runs over prompts (`sfteval compare`) is the clustered delta
of the instruction-level metric, not the delta of a different per-prompt average.

Intervals: prompt level, Wilson over prompts. Instruction level, the ratio estimator
with a cluster-robust (linearised) standard error over prompts: instructions of one
prompt share one response and are not independent. Breakdown per instruction type and
per category (the part before ':'), Wilson where each prompt holds at most one instance
of the group, else clustered the same way.

Not covered: the multilingual IFEval variants, and multi-turn instruction following.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from sfteval.benchmarks import BenchmarkSpec, limited, load_rows, require, row_id
from sfteval.errors import SftevalError
from sfteval.kinds import Aggregate, BuildContext, Built, ScoreRecord
from sfteval.kinds.common import gen_params_for, output_texts
from sfteval.stats import Z95, mean_estimate, wilson_interval
from sfteval.runfolder.records import SampleLine
from sfteval.types import Estimate, Generation, GenRequest, Loglik, Message, Sample

METRICS = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")
NEEDS_LANGDETECT = ("language:response_language", "change_case:english_capital", "change_case:english_lowercase")


def _sample_id(row: dict[str, Any], index: int) -> str:
    return str(row["key"]) if row.get("key") is not None else row_id(row, index)


class InstructionKind:
    name = "instruction"

    def build(self, spec: BenchmarkSpec, ctx: BuildContext) -> Built:
        from sfteval.metrics import ifeval, ifeval_text

        splitter = str(spec.options.get("sentences", "builtin"))
        if splitter not in ifeval_text.SENTENCE_SPLITTERS:
            raise SftevalError(f"unknown sentence splitter '{splitter}'", path=spec.source, field="options.sentences",
                               hint=" | ".join(ifeval_text.SENTENCE_SPLITTERS))
        loaded = load_rows(spec, ctx.data_path)
        source = str(loaded.info["source"])
        params = gen_params_for(spec, ctx, chat=ctx.renderer.chat)
        rows = []
        for index, line, row in limited(loaded.rows, ctx.limit):
            ids = require(row, "instruction_id_list", source, line)
            raw_kwargs = require(row, "kwargs", source, line)
            if not isinstance(ids, list) or not ids or not isinstance(raw_kwargs, list) or len(raw_kwargs) != len(ids):
                raise SftevalError("expected a non-empty instruction_id_list and one kwargs object per instruction",
                                   path=source, line=line, field="kwargs")
            kwargs = [ifeval.clean_kwargs(k) for k in raw_kwargs]
            for i, (iid, kw) in enumerate(zip(ids, kwargs)):
                problem = ifeval.check_args(str(iid), kw)
                if problem:
                    raise SftevalError(problem, path=source, line=line, field=f"kwargs[{i}]" if iid in ifeval.INSTRUCTIONS
                                       else f"instruction_id_list[{i}]")
            rows.append((_sample_id(row, index), str(require(row, "prompt", source, line)), [str(i) for i in ids], kwargs))
        if not rows:
            raise SftevalError("no items", path=source)
        if len({r[0] for r in rows}) != len(rows):
            raise SftevalError("duplicate sample ids", path=source, field="key")
        if any(i in NEEDS_LANGDETECT for r in rows for i in r[2]) and not ifeval_text.language_available():
            raise SftevalError("IFEval's language and case checks need the 'langdetect' package", path=spec.source,
                               hint="pip install 'sfteval[ifeval]' (or pip install langdetect)")
        mean_m = sum(len(r[2]) for r in rows) / len(rows)
        samples = []
        for sid, prompt_text, ids, kwargs in rows:
            prompt = ctx.renderer.conversation([Message("user", prompt_text)])
            meta = {"instruction_id_list": ids, "kwargs": kwargs, "mean_instructions": mean_m}
            samples.append(Sample(sid, prompt, None, GenRequest(prompt, params.with_seed(ctx.seed, sid)), meta))
        settings = {"chat_template": ctx.renderer.chat, "gen": params.record(), "sentences": splitter,
                    "mean_instructions": mean_m}
        return Built(samples, settings, loaded.info)

    def score(
        self, spec: BenchmarkSpec, samples: Sequence[Sample], outputs: Sequence[Generation | Loglik]
    ) -> list[ScoreRecord]:
        from sfteval.metrics import ifeval

        splitter = str(spec.options.get("sentences", "builtin"))
        records = []
        for sample, out in zip(samples, outputs):
            response = output_texts(out)[0]
            ids = sample.meta["instruction_id_list"]
            kwargs = [{**kw, "_sentences": splitter} for kw in sample.meta["kwargs"]]
            strict, loose = ifeval.evaluate(ids, kwargs, response)
            m = float(sample.meta["mean_instructions"])
            scores = {
                "prompt_strict": float(all(strict)),
                "prompt_loose": float(all(loose)),
                "instruction_strict": sum(strict) / m,
                "instruction_loose": sum(loose) / m,
            }
            records.append(ScoreRecord(answer=None, scores=scores, meta={"strict": strict, "loose": loose}))
        return records

    def aggregate(self, spec: BenchmarkSpec, records: Sequence[SampleLine]) -> Aggregate:
        from sfteval.metrics.ifeval import category

        metrics = {
            "prompt_strict": mean_estimate([float(all(r.meta["strict"])) for r in records], proportion=True),
            "prompt_loose": mean_estimate([float(all(r.meta["loose"])) for r in records], proportion=True),
        }
        for mode in ("strict", "loose"):
            followed = [sum(r.meta[mode]) for r in records]
            totals = [len(r.meta[mode]) for r in records]
            metrics[f"instruction_{mode}"] = cluster_ratio(followed, totals)
        breakdown: dict[str, dict[str, dict[str, Estimate]]] = {"instruction": {}, "category": {}}
        for key, name_of in (("instruction", lambda i: i), ("category", category)):
            groups: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: {"strict": [], "loose": []})
            for r in records:
                ids = r.meta["instruction_id_list"]
                for mode in ("strict", "loose"):
                    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
                    for iid, ok in zip(ids, r.meta[mode]):
                        per[name_of(iid)][0] += int(ok)
                        per[name_of(iid)][1] += 1
                    for g, (k, n) in per.items():
                        groups[g][mode].append((k, n))
            for g in sorted(groups):
                breakdown[key][g] = {f"instruction_{mode}": _group_estimate(groups[g][mode]) for mode in ("strict", "loose")}
        return Aggregate(metrics, "prompt_strict", breakdown)


def _group_estimate(cells: list[tuple[int, int]]) -> Estimate:
    k = sum(c[0] for c in cells)
    n = sum(c[1] for c in cells)
    if all(c[1] == 1 for c in cells):  # one instance per prompt: independent Bernoulli trials
        p = k / n
        return Estimate(p, math.sqrt(p * (1 - p) / n), wilson_interval(k, n), n, "wilson")
    return cluster_ratio([c[0] for c in cells], [c[1] for c in cells])


def cluster_ratio(followed: Sequence[float], totals: Sequence[float]) -> Estimate:
    """sum(followed) / sum(totals) with a cluster-robust (linearised) SE over clusters.

    Var(r) ~ N/(N-1) * sum((y_i - r m_i)^2) / (sum m_i)^2: the ratio estimator of
    cluster sampling, so correlated instructions of one prompt count once, not as
    independent trials. The 95% CI is r +- 1.96 se, clipped to [0, 1].
    """
    y = np.asarray(followed, dtype=float)
    m = np.asarray(totals, dtype=float)
    n_clusters = int(y.size)
    if n_clusters == 0 or m.sum() == 0:
        return Estimate(math.nan, math.nan, (math.nan, math.nan), 0, "empty")
    r = float(y.sum() / m.sum())
    if n_clusters == 1:
        return Estimate(r, math.nan, (math.nan, math.nan), int(m.sum()), "cluster-ratio(prompt)")
    resid = y - r * m
    se = float(math.sqrt(n_clusters / (n_clusters - 1) * float(np.sum(resid**2))) / m.sum())
    if se == 0.0:
        # Every prompt at the same rate (all followed, or none): the linearised SE is 0,
        # and [r, r] is not an interval. Fall back to Wilson over prompts, as if each
        # prompt were one trial (conservative: fewer trials than instructions).
        return Estimate(r, se, wilson_interval(r * n_clusters, n_clusters), int(m.sum()),
                        f"wilson(prompts={n_clusters}; zero cluster variance)")
    lo, hi = max(0.0, r - Z95 * se), min(1.0, r + Z95 * se)
    return Estimate(r, se, (lo, hi), int(m.sum()), f"cluster-ratio(prompt,clusters={n_clusters})")
