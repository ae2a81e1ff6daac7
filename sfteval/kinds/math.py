"""Kind `math`: GSM8K-style word problems with a numeric answer.

Plain mode: k-shot chain of thought ("Question: ...\\nAnswer: <reasoning> #### N"), with
exemplars drawn once from the few-shot pool by a fixed seed (their ids are recorded).
Chat mode: the chat template, `chat_fewshot` exemplars as prior turns (default none),
and an instruction asking for the `#### N` line.

Metrics: `exact_match_strict` (the last `#### N` in the output) and
`exact_match_flexible` (the last number anywhere), both after number normalisation.
Their gap is a format-drift signal: right answers in the wrong shape.
With `prompt_style = "lm-eval"` / `extract = "lm-eval"` in [options] the benchmark
reproduces lm-eval's prompts and answer rules instead (kinds/math_lmeval.py).
Not covered: symbolic answers (fractions as text, expressions); they score as wrong.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from sfteval.benchmarks import BenchmarkSpec, limited, load_rows, require, row_id
from sfteval.errors import SftevalError
from sfteval.fileio import sha256_text
from sfteval.kinds import Aggregate, BuildContext, Built, ScoreRecord
from sfteval.kinds.common import gen_params_for, output_texts
from sfteval.metrics.extract import extract_gsm8k_strict, extract_last_number, gsm8k_reference
from sfteval.prompts import Renderer
from sfteval.stats import mean_estimate
from sfteval.runfolder.records import SampleLine
from sfteval.types import GenRequest, Generation, Loglik, Message, Sample

CALCULATOR = re.compile(r"<<[^>]*>>")
DEFAULT_INSTRUCTION = "Solve the problem step by step. End with a line of the form '#### <number>'."


def _exemplar_text(row: dict[str, Any], strip_calc: bool) -> tuple[str, str]:
    q, a = str(row["question"]).strip(), str(row["answer"]).strip()
    return q, CALCULATOR.sub("", a) if strip_calc else a


# ----------------------------------------------------------------------------- prompts
# Pure functions of (renderer, exemplars as (question, solution), question, instruction)
# -> the exact prompt, one per prompt mode; the exemplars passed are the recorded ones.


def fewshot_prefix(shots: Sequence[tuple[str, str]]) -> str:
    return "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in shots)


def render_plain(renderer: Renderer, shots: Sequence[tuple[str, str]], question: str, instruction: str) -> str:
    """k-shot chain of thought: solved exemplars, then the question and "Answer:"."""
    return renderer.plain(f"{fewshot_prefix(shots)}Question: {question}\nAnswer:")


def render_chat(renderer: Renderer, shots: Sequence[tuple[str, str]], question: str, instruction: str) -> str:
    """The chat template: exemplars as prior turns, each question with the instruction."""
    msgs: list[Message] = []
    for q, a in shots:
        msgs += [Message("user", f"{q}\n\n{instruction}"), Message("assistant", a)]
    msgs.append(Message("user", f"{question}\n\n{instruction}"))
    return renderer.conversation(msgs)


PROMPT_MODES = {"plain": render_plain, "chat": render_chat}


class MathKind:
    name = "math"

    def build(self, spec: BenchmarkSpec, ctx: BuildContext) -> Built:
        if spec.options.get("prompt_style") == "lm-eval":  # gsm8k_lmeval, gsm8k_cot
            from sfteval.kinds.math_lmeval import build_lmeval

            return build_lmeval(spec, ctx)
        loaded = load_rows(spec, ctx.data_path)
        chat = ctx.renderer.chat
        k = spec.prompt.chat_fewshot if chat else spec.prompt.num_fewshot
        strip_calc = bool(spec.options.get("strip_calculator", True))
        shots: list[tuple[str, dict[str, Any]]] = []
        fewshot_info: dict[str, Any] = {}
        if k > 0:
            pool = load_rows(spec, fewshot=True)
            pool_rows = [(row_id(r, i), r) for i, (_, r) in enumerate(pool.rows)]
            if len(pool_rows) < k:
                raise SftevalError(
                    f"{k}-shot needs {k} exemplars, the few-shot pool has {len(pool_rows)}",
                    path=spec.source,
                    field="prompt.num_fewshot",
                    hint="lower num_fewshot or give a larger few-shot file",
                )
            shots = random.Random(spec.prompt.fewshot_seed).sample(pool_rows, k)
            fewshot_info = {"fewshot_data": pool.info}
        instruction = spec.prompt.instruction or DEFAULT_INSTRUCTION
        solved = [_exemplar_text(r, strip_calc) for _, r in shots]
        prefix = fewshot_prefix(solved)
        render = PROMPT_MODES["chat" if chat else "plain"]
        params = gen_params_for(spec, ctx, chat=chat)
        samples = []
        for index, line, row in limited(loaded.rows, ctx.limit):
            src = loaded.info["source"]
            question = str(require(row, "question", src, line)).strip()
            reference = gsm8k_reference(str(require(row, "answer", src, line)), path=src, line=line)
            sid = row_id(row, index)
            prompt = render(ctx.renderer, solved, question, instruction)
            samples.append(Sample(sid, prompt, reference, GenRequest(prompt, params.with_seed(ctx.seed, sid))))
        settings = {
            "num_fewshot": k,
            "fewshot_ids": [i for i, _ in shots],
            "fewshot_seed": spec.prompt.fewshot_seed,
            "fewshot_prefix_sha256": sha256_text(prefix) if prefix else None,
            "chat_template": chat,
            "gen": params.record(),
            **fewshot_info,
        }
        return Built(samples, settings, loaded.info)

    def score(
        self, spec: BenchmarkSpec, samples: Sequence[Sample], outputs: Sequence[Generation | Loglik]
    ) -> list[ScoreRecord]:
        if spec.options.get("extract") == "lm-eval":
            from sfteval.kinds.math_lmeval import score_lmeval

            return score_lmeval(spec, samples, outputs)
        records = []
        for sample, out in zip(samples, outputs):
            texts = output_texts(out)
            strict = [extract_gsm8k_strict(t) for t in texts]
            flexible = [extract_last_number(t) for t in texts]
            ref = sample.reference
            records.append(
                ScoreRecord(
                    answer=strict[0],
                    scores={
                        "exact_match_strict": sum(a == ref for a in strict) / len(texts),
                        "exact_match_flexible": sum(a == ref for a in flexible) / len(texts),
                    },
                    meta={"answer_flexible": flexible[0]},
                )
            )
        return records

    def aggregate(self, spec: BenchmarkSpec, records: Sequence[SampleLine]) -> Aggregate:
        metrics = {
            m: mean_estimate([float(r.scores[m]) for r in records]) for m in ("exact_match_strict", "exact_match_flexible")
        }
        return Aggregate(metrics=metrics, primary="exact_match_strict")

