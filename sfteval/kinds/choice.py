"""Kind `choice`: MMLU-style multiple choice (schema of `cais/mmlu`: question, subject,
choices[4], answer index).

`options.mode = "loglik"` (default): the standard k-shot prompt ending in "Answer:",
scored by the log-likelihood of each answer letter (" A", " B", ...) at the answer
position: one forward pass per question, not one per choice.
`options.mode = "generate"`: for chat models; the reply's letter is extracted. Without a
chat template it sends the same k-shot text as loglik mode (`render_plain`); with one,
`prompt.chat_fewshot` exemplars as prior turns (`render_chat`). The exemplars recorded in
settings are exactly those in the prompt.

Exemplars: the first k rows of the few-shot split (`dev`) with the same subject, in
file order (the MMLU convention), recorded by id. Reported: `accuracy` (micro: over all
questions, the primary metric) and `accuracy_macro` (mean of per-subject accuracies),
plus per-subject accuracy in the breakdown.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sfteval.benchmarks import BenchmarkSpec, limited, load_rows, require, row_id
from sfteval.errors import SftevalError
from sfteval.kinds import Aggregate, BuildContext, Built, ScoreRecord
from sfteval.kinds.common import gen_params_for, output_texts
from sfteval.metrics.extract import extract_choice
from sfteval.prompts import Renderer
from sfteval.stats import Z95, mean_estimate
from sfteval.runfolder.records import SampleLine
from sfteval.types import Estimate, GenRequest, Generation, Loglik, LoglikRequest, Message, Sample

LETTERS = "ABCDEFGHIJ"
CHAT_INSTRUCTION = "Answer with the letter of the correct option."


def _pretty(subject: str) -> str:
    return subject.replace("_", " ")


@dataclass(frozen=True)
class Item:
    """One parsed question: the question with its lettered choices, and the right letter."""

    body: str
    letters: tuple[str, ...]
    answer: str


def parse_item(row: dict[str, Any], source: str, line: int) -> Item:
    question = str(require(row, "question", source, line)).strip()
    choices = require(row, "choices", source, line)
    if not isinstance(choices, (list, tuple)) or not 2 <= len(choices) <= len(LETTERS):
        raise SftevalError("expected a list of 2-10 choices", path=source, line=line, field="choices")
    letters = tuple(LETTERS[: len(choices)])
    # Choices as written, like lm-eval's mmlu template (only the question is stripped), so
    # MMLU prompts stay string-identical to lm-eval's (tests/test_lmeval_style.py).
    body = question + "\n" + "".join(f"{letter}. {c}\n" for letter, c in zip(letters, choices))
    return Item(body, letters, _answer_letter(row, letters, source, line))


def _answer_letter(row: dict[str, Any], letters: Sequence[str], source: str, line: int) -> str:
    ans = require(row, "answer", source, line)
    if isinstance(ans, str) and ans.strip().upper() in letters:
        return ans.strip().upper()
    try:
        return letters[int(ans)]
    except (ValueError, IndexError, TypeError):
        raise SftevalError(f"answer '{ans}' is not a valid choice", path=source, line=line, field="answer") from None


# ----------------------------------------------------------------------------- prompts
# Pure functions of (renderer, subject, exemplars, item) -> the exact prompt, one per
# prompt mode; scoring never sees how a prompt was made, and the exemplars passed in are
# the ones recorded in settings (so a record cannot claim shots the prompt lacks).


def render_plain(renderer: Renderer, subject: str, shots: Sequence[Item], item: Item) -> str:
    """The MMLU k-shot text ending in "Answer:": log-likelihood mode, and generate mode
    without a chat template (the same text, so both modes see the same exemplars)."""
    header = f"The following are multiple choice questions (with answers) about {_pretty(subject)}.\n\n"
    solved = "".join(f"{s.body}Answer: {s.answer}\n\n" for s in shots)
    return renderer.plain(f"{header}{solved}{item.body}Answer:")


def render_chat(renderer: Renderer, subject: str, shots: Sequence[Item], item: Item) -> str:
    """Generate mode with a chat template: each exemplar a user turn and its letter the reply."""
    msgs: list[Message] = []
    for s in shots:
        msgs += [Message("user", f"{s.body}\n{CHAT_INSTRUCTION}"), Message("assistant", s.answer)]
    msgs.append(Message("user", f"{item.body}\n{CHAT_INSTRUCTION}"))
    return renderer.conversation(msgs)


PROMPT_MODES = {"plain": render_plain, "chat": render_chat}


class ChoiceKind:
    name = "choice"

    def build(self, spec: BenchmarkSpec, ctx: BuildContext) -> Built:
        mode = spec.options.get("mode", "loglik")
        if mode not in {"loglik", "generate"}:
            raise SftevalError(f"unknown mode '{mode}'", path=spec.source, field="options.mode", hint="loglik | generate")
        loaded = load_rows(spec, ctx.data_path)
        src = loaded.info["source"]
        chat = ctx.renderer.chat and mode == "generate"
        render = PROMPT_MODES["chat" if chat else "plain"]
        k = spec.prompt.chat_fewshot if chat else spec.prompt.num_fewshot
        by_subject: dict[str, list[tuple[str, Item]]] = defaultdict(list)
        fewshot_info: dict[str, Any] = {}
        if k > 0:
            pool = load_rows(spec, fewshot=True)
            pool_src = pool.info["source"]
            for i, (line, r) in enumerate(pool.rows):
                by_subject[str(r.get("subject", ""))].append((row_id(r, i), parse_item(r, pool_src, line)))
            fewshot_info = {"fewshot_data": pool.info}
        params = gen_params_for(spec, ctx, chat=chat)
        samples, used_shots = [], {}
        for index, line, row in limited(loaded.rows, ctx.limit):
            subject = str(row.get("subject", ""))
            item = parse_item(row, src, line)
            shots = by_subject.get(subject, [])[:k]
            if k > 0 and len(shots) < k:
                raise SftevalError(
                    f"{k}-shot needs {k} exemplars for subject '{subject}', the few-shot split has {len(shots)}",
                    path=src,
                    line=line,
                    field="subject",
                )
            used_shots[subject] = [sid for sid, _ in shots]
            sid = row_id(row, index)
            prompt = render(ctx.renderer, subject, [shot for _, shot in shots], item)
            if mode == "loglik":
                request: GenRequest | LoglikRequest = LoglikRequest(prompt, tuple(f" {x}" for x in item.letters))
            else:
                request = GenRequest(prompt, params.with_seed(ctx.seed, sid))
            samples.append(Sample(sid, prompt, item.answer, request, {"subject": subject, "letters": list(item.letters)}))
        settings = {
            "mode": mode,
            "num_fewshot": k,
            "fewshot_ids_by_subject": used_shots,
            "chat_template": chat,
            "gen": params.record() if mode == "generate" else None,
            **fewshot_info,
        }
        return Built(samples, settings, loaded.info)

    def score(
        self, spec: BenchmarkSpec, samples: Sequence[Sample], outputs: Sequence[Generation | Loglik]
    ) -> list[ScoreRecord]:
        records = []
        for sample, out in zip(samples, outputs):
            letters = sample.meta["letters"]
            meta: dict[str, Any] = {"subject": sample.meta["subject"]}
            if isinstance(out, Loglik):
                best = max(range(len(letters)), key=lambda i: out.logprobs[i])
                answer: str | None = letters[best]
                meta["logprobs"] = {x: lp for x, lp in zip(letters, out.logprobs)}
            else:
                answer = extract_choice(output_texts(out)[0], "".join(letters))
            records.append(ScoreRecord(answer=answer, scores={"accuracy": float(answer == sample.reference)}, meta=meta))
        return records

    def aggregate(self, spec: BenchmarkSpec, records: Sequence[SampleLine]) -> Aggregate:
        by_subject: dict[str, list[float]] = defaultdict(list)
        for r in records:
            by_subject[str(r.meta.get("subject", ""))].append(float(r.scores["accuracy"]))
        per_subject = {s: mean_estimate(v) for s, v in sorted(by_subject.items())}
        metrics = {"accuracy": mean_estimate([float(r.scores["accuracy"]) for r in records])}
        if len(per_subject) > 1:
            metrics["accuracy_macro"] = _macro(list(per_subject.values()))
        return Aggregate(metrics, "accuracy", {"subject": {s: {"accuracy": e} for s, e in per_subject.items()}})


def _macro(parts: list[Estimate]) -> Estimate:
    """Unweighted mean of subject accuracies; subjects are independent samples, so the
    variance of the mean is the sum of their variances over S^2 (normal interval)."""
    s = len(parts)
    value = sum(p.value for p in parts) / s
    se = math.sqrt(sum(p.stderr**2 for p in parts)) / s
    return Estimate(value, se, (value - Z95 * se, value + Z95 * se), sum(p.n for p in parts), "macro-normal")
