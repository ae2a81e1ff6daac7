"""Kind `reference`: the user's own held-out SFT data, scored against the reference reply.

Rows are read by the same loader as the trainer (`sfteval.formats`: alpaca, sharegpt or
OpenAI messages). The prompt is the conversation up to the final assistant turn,
rendered with the chat template (or the default template, as in training); the
reference is the final assistant response.

Metrics (options.metrics): `bleu` (sacrebleu corpus BLEU, everywhere under this name:
results, comparisons, gate, report, dashboard; its interval resamples the items' BLEU
sufficient statistics, B = 10,000, seeded per benchmark), `sentence_bleu` (the mean of
per-item sentence BLEU: a different statistic with its own name; stored per item with
`bleu` too), `rouge1`, `rouge2`, `rougeL` (rouge-score F-measure, bounded score interval),
`bertscore_f1` (bert-score; model is the run's `bertscore_model`), `exact_match` (1 when
the reply equals the reference, outer whitespace aside; a proportion; opt-in). `options.extra_metrics`
adds HF `evaluate` metrics by local script path or hub name (corpus-level, bootstrap CI).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sfteval.benchmarks import BenchmarkSpec, limited, load_rows
from sfteval.errors import SftevalError
from sfteval.formats import to_conversation
from sfteval.kinds import Aggregate, BuildContext, Built, ScoreRecord
from sfteval.kinds.common import gen_params_for, output_texts
from sfteval.runfolder.records import SampleLine
from sfteval.stats import bootstrap_estimate, mean_estimate
from sfteval.types import Estimate, GenRequest, Generation, Loglik, Sample

DEFAULT_METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "bertscore_f1")
KNOWN = set(DEFAULT_METRICS) | {"sentence_bleu", "exact_match"}
CORPUS = ("bleu",)  # no per-item value: computed over the corpus, compared by resampling


def _metrics(spec: BenchmarkSpec) -> list[str]:
    names = list(spec.options.get("metrics", DEFAULT_METRICS))
    for n in names:
        if n not in KNOWN:
            raise SftevalError(f"unknown metric '{n}'", path=spec.source, field="options.metrics", hint=f"one of {sorted(KNOWN)}")
    return names


class ReferenceKind:
    name = "reference"
    # The data is the user's own (no catalog source): without --data the benchmark is skipped.
    user_data = True
    # Run-level settings this kind reads from spec.options (the runner copies them in).
    run_options = ("bertscore_model", "bootstrap_seed", "bootstrap_resamples")

    def build(self, spec: BenchmarkSpec, ctx: BuildContext) -> Built:
        _metrics(spec)
        loaded = load_rows(spec, ctx.data_path)
        params = gen_params_for(spec, ctx, chat=ctx.renderer.chat)
        samples = []
        for index, line, row in limited(loaded.rows, ctx.limit):
            conv = to_conversation(row, spec.data.format, path=loaded.info["source"], line=line, index=index)
            *context, last = conv.messages
            prompt = ctx.renderer.conversation(context)
            samples.append(Sample(conv.id, prompt, last.content, GenRequest(prompt, params.with_seed(ctx.seed, conv.id))))
        ids = [s.id for s in samples]
        if len(set(ids)) != len(ids):
            raise SftevalError("duplicate sample ids", path=loaded.info["source"], field="id")
        settings = {"chat_template": ctx.renderer.chat, "format": spec.data.format, "gen": params.record(), "metrics": _metrics(spec)}
        return Built(samples, settings, loaded.info)

    def score(
        self, spec: BenchmarkSpec, samples: Sequence[Sample], outputs: Sequence[Generation | Loglik]
    ) -> list[ScoreRecord]:
        from sfteval.metrics import text

        hyps = [output_texts(o)[0] for o in outputs]
        refs = [str(s.reference) for s in samples]
        names = _metrics(spec)
        per: dict[str, list[float]] = {}
        if "bleu" in names or "sentence_bleu" in names:
            per["sentence_bleu"] = text.sentence_bleu(hyps, refs)
        if any(n.startswith("rouge") for n in names):
            r = text.rouge(hyps, refs)
            per.update({n: r[n] for n in ("rouge1", "rouge2", "rougeL") if n in names})
        if "exact_match" in names:  # the whole reply, outer whitespace aside
            per["exact_match"] = [float(h.strip() == r.strip()) for h, r in zip(hyps, refs)]
        meta: dict[str, Any] = {}
        if "bertscore_f1" in names:
            f1, info = text.bertscore_f1(hyps, refs, model=str(spec.options.get("bertscore_model", "auto")))
            per["bertscore_f1"] = f1
            meta = {"bertscore": info}
        return [
            ScoreRecord(answer=None, scores={n: float(v[i]) for n, v in per.items()}, meta=meta if i == 0 else {})
            for i in range(len(samples))
        ]

    def aggregate(self, spec: BenchmarkSpec, records: Sequence[SampleLine]) -> Aggregate:
        from sfteval.metrics import text

        names = _metrics(spec)
        from sfteval.bootstrap import benchmark_seed

        seed = benchmark_seed(spec.name, int(spec.options.get("bootstrap_seed", 0)))
        resamples = int(spec.options.get("bootstrap_resamples", 10_000))
        hyps = [r.output for r in records]  # the first output of each line
        refs = [str(r.reference) for r in records]
        metrics: dict[str, Estimate] = {}
        for n in names:
            if n == "bleu":
                metrics[n] = text.corpus_bleu_estimate(hyps, refs, seed=seed, resamples=resamples)
            elif n == "sentence_bleu":
                metrics[n] = mean_estimate([float(r.scores[n]) for r in records], proportion=False, bounds=(0.0, 100.0))
            else:
                metrics[n] = mean_estimate([float(r.scores[n]) for r in records], proportion=n == "exact_match")
        for spec_name in spec.options.get("extra_metrics", []):
            values = text.evaluate_metric(spec_name, hyps, refs)
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    metrics[f"{_short(spec_name)}/{key}"] = _evaluate_estimate(spec_name, key, hyps, refs, float(value), seed)
        return Aggregate(metrics, "rougeL" if "rougeL" in names else names[0])


def _short(spec_name: str) -> str:
    from pathlib import Path

    return Path(spec_name).stem if spec_name.endswith(".py") else spec_name


def _evaluate_estimate(spec_name: str, key: str, hyps: list[str], refs: list[str], value: float, seed: int) -> Estimate:
    from sfteval.metrics import text

    def statistic(idx: np.ndarray) -> float:
        return float(text.evaluate_metric(spec_name, [hyps[i] for i in idx], [refs[i] for i in idx])[key])

    est = bootstrap_estimate(statistic, len(hyps), seed=seed, resamples=200)
    return Estimate(value, est.stderr, est.ci95, est.n, est.method)
