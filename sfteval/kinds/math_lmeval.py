"""The math kind in lm-eval's style: `gsm8k_lmeval` and `gsm8k_cot` (see kinds/lmeval_style.py).

Selected by `[options] prompt_style = "lm-eval"` (prompts) and `extract = "lm-eval"`
(scores) in a math benchmark's TOML. Exemplars come from the benchmark's few-shot split
(gsm8k_lmeval: the train split, as lm-eval's `fewshot_split: train`) or, with
`fewshot_file`, from a file shipped in the catalog (gsm8k_cot: the 8 fixed exemplars of
Wei et al. 2022 as lm-eval's gsm8k-cot.yaml lists them). Chat mode is refused: lm-eval's
chat-templated prompts are not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfteval.benchmarks import BenchmarkSpec, benchmarks_dir, limited, load_rows, require, row_id
from sfteval.errors import SftevalError
from sfteval.fileio import iter_jsonl, sha256_file, sha256_text
from sfteval.kinds import Built, BuildContext, ScoreRecord
from sfteval.kinds.common import gen_params_for, output_texts
from sfteval.kinds.lmeval_style import prompt_settings, render, score_output, scoring_settings
from sfteval.types import GenRequest, Generation, Loglik, Sample


def _reference(row: dict[str, Any], mode: str) -> str:
    answer = str(row["answer"])
    return answer.split("####")[-1].strip() if mode == "after_hashes" else answer


def _pool(spec: BenchmarkSpec) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    fixed = spec.options.get("fewshot_file")
    if fixed:
        path = Path(str(fixed))
        path = path if path.is_absolute() else benchmarks_dir() / path
        if not path.is_file():
            raise SftevalError("few-shot exemplar file not found", path=str(path), field="options.fewshot_file")
        rows = [row for _, row in iter_jsonl(path)]
        return rows, {"source": str(path), "sha256": sha256_file(path), "rows": len(rows)}
    loaded = load_rows(spec, fewshot=True)
    return [row for _, row in loaded.rows], loaded.info


def build_lmeval(spec: BenchmarkSpec, ctx: BuildContext) -> Built:
    from sfteval.kinds.lmeval_style import fewshot_draws

    if ctx.renderer.chat:
        raise SftevalError(f"{spec.name} reproduces lm-eval's plain prompts; run it with --chat-template off",
                           path=spec.source, field="chat_template")
    p = prompt_settings(spec.options, spec.prompt.num_fewshot, spec.prompt.fewshot_seed, spec.source)
    loaded = load_rows(spec, ctx.data_path)
    picked = limited(loaded.rows, ctx.limit)
    pool, pool_info = _pool(spec) if p.num_fewshot > 0 else ([], {})
    draws = fewshot_draws(pool, len(picked), p.num_fewshot, p.seed, p.sampler)
    mode = str(spec.options.get("reference", "full"))
    params = gen_params_for(spec, ctx, chat=False)
    samples = []
    for (index, line, row), shots in zip(picked, draws):
        src = loaded.info["source"]
        require(row, "question", src, line)
        require(row, "answer", src, line)
        sid = row_id(row, index)
        # No BOS text: lm-eval logs (and hashes) the prompt without it, its tokenizer adds BOS.
        prompt = render(p, row, shots)
        samples.append(Sample(sid, prompt, _reference(row, mode), GenRequest(prompt, params.with_seed(ctx.seed, sid))))
    settings = {
        "prompt_style": "lm-eval", "num_fewshot": p.num_fewshot, "fewshot_seed": p.seed,
        "fewshot_sampler": p.sampler, "question_template": p.question_template,
        "target_delimiter": p.target_delimiter, "fewshot_delimiter": p.fewshot_delimiter,
        "reproduces": spec.options.get("reproduces"), "chat_template": False, "gen": params.record(),
        "fewshot_pool_sha256": sha256_text("".join(repr(sorted(r.items())) for r in pool)) if pool else None,
        "fewshot_data": pool_info,
    }
    return Built(samples, settings, loaded.info)


def score_lmeval(spec: BenchmarkSpec, samples: Sequence[Sample], outputs: Sequence[Generation | Loglik]
                 ) -> list[ScoreRecord]:
    s = scoring_settings(spec.options)
    records = []
    for sample, out in zip(samples, outputs):
        texts = output_texts(out)
        scored = [score_output(s, t, str(sample.reference)) for t in texts]
        records.append(ScoreRecord(
            answer=None if scored[0]["strict"] == "[invalid]" else scored[0]["strict"],
            scores={m: sum(r[m] for r in scored) / len(scored) for m in ("exact_match_strict", "exact_match_flexible")},
            meta={"answer_flexible": None if scored[0]["flexible"] == "[invalid]" else scored[0]["flexible"]},
        ))
    return records
