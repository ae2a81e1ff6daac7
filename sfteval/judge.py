"""Pairwise judging of two runs' outputs on the same items by a judge model.

Covered: pairing two run folders' samples by id (any generative benchmark: held-out
data, IFEval, GSM8K...), a fixed rubric prompt (its text and SHA-256 recorded), every
pair judged twice with the positions swapped (base first, then tuned first), verdicts
parsed from `[[A]]` / `[[B]]` / `[[C]]` (tie), an item counted a win or a loss only
when both orders agree (a verdict that changes with the order is a tie), the judge's
raw replies stored per item, and a run-like folder (`OUT/runs/<judge run id>/`:
results.json in the run schema + samples/judge_<benchmark>.jsonl) that compare, gate,
report and the dashboard read like any run. Resumable: items already judged are on
disk and are not asked again (chunks appended as they finish).

Metrics per benchmark (tuned's view): `win_rate` (win 1, tie 1/2, loss 0; the primary),
`net_win` (win - loss), both with the bounded (effective-n Wilson) interval over items on
[0, 1] and [-1, 1] (each item pairs the two runs' outputs, so the interval is paired over
items; a bootstrap collapsed to [1, 1] on a clean sweep of wins); `win_share`, `tie_share`,
`loss_share`, `consistency` (share of items whose verdict survives the swap), Wilson;
`position_bias` (the judge's share of first-position picks minus 1/2, averaged over the
two orders of each item so that which model is better cancels; 0 = none, +1/2 = always
the first), bounded on [-1/2, 1/2] likewise. The per-sample scores average to these values.

The judge is any backend: hf / vllm / vllm-server render the rubric with the judge's
chat template; openai sends it as one chat message (the server applies its template).

Not covered: more than two systems, reference-guided grading, multi-turn judging.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sfteval.stats import wilson_interval
from sfteval.types import Estimate

RUBRIC_VERSION = "sfteval.judge.rubric/1"
RUBRIC = """Please act as an impartial judge and evaluate the two AI assistant responses to the user request shown below. Choose the response that follows the user's instructions and answers the request better. Consider helpfulness, correctness, relevance, level of detail, and whether every explicit instruction (format, length, language, style) is obeyed. Do not let the order of the responses, their length, or the assistants' names influence you; be as objective as possible.

Begin with a short explanation comparing the two responses. Then give your final verdict on the last line, strictly in this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, "[[C]]" for a tie.

[User Request]
{question}

[The Start of Assistant A's Response]
{answer_a}
[The End of Assistant A's Response]

[The Start of Assistant B's Response]
{answer_b}
[The End of Assistant B's Response]"""
RUBRIC_SHA256 = hashlib.sha256(RUBRIC.encode("utf-8")).hexdigest()
ORDERS = ("base_first", "tuned_first")
_VERDICT = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.I)


@dataclass(frozen=True)
class Reply:
    """One judge reply and why its generation stopped (a `FinishReason` of
    docs/run-format.md; the samples writer refuses any other)."""

    text: str
    finish_reason: str = "unknown"


class JudgeModel(Protocol):
    """The seam: judge prompts in, raw replies out (one per prompt, in order). A plain
    string is a reply whose finish reason the judge did not say (`unknown`)."""

    def reply(self, prompts: Sequence[str]) -> Sequence[str | Reply]: ...

    def info(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PairItem:
    item_id: str
    question: str
    base_output: str
    tuned_output: str


@dataclass(frozen=True)
class ItemVerdict:
    item_id: str
    verdicts: dict[str, str | None]  # order -> "A" | "B" | "C" | None (unparsed)
    preferred: dict[str, str]  # order -> "tuned" | "base" | "tie"
    outcome: str  # "win" | "tie" | "loss" (tuned's view)
    consistent: bool
    position_first: float  # share of the two verdicts that picked position A (a tie counts 1/2)
    replies: dict[str, str] = field(default_factory=dict)
    finish_reasons: dict[str, str] = field(default_factory=dict)  # order -> the reply's finish reason


def question_text(prompt: str) -> str:
    """The conversation of a recorded prompt without template tokens (the judge and a
    human rater read the same text)."""
    from sfteval.ratings.render import chat_turns

    turns = chat_turns(prompt)
    if len(turns) == 1:
        return turns[0][1]
    return "\n\n".join(f"{role.capitalize()}: {text}" for role, text in turns)


def judge_prompt(question: str, answer_a: str, answer_b: str) -> str:
    return RUBRIC.format(question=question, answer_a=answer_a, answer_b=answer_b)


def prompts_for(item: PairItem) -> dict[str, str]:
    return {
        "base_first": judge_prompt(item.question, item.base_output, item.tuned_output),
        "tuned_first": judge_prompt(item.question, item.tuned_output, item.base_output),
    }


def parse_verdict(reply: str) -> str | None:
    """The last `[[A]]` / `[[B]]` / `[[C]]` in the reply ("[[tie]]" reads as C), or None."""
    found = _VERDICT.findall(reply)
    if not found:
        return None
    v = found[-1].upper()
    return "C" if v == "TIE" else v


def preferred(order: str, verdict: str | None) -> str:
    if verdict not in ("A", "B"):
        return "tie"  # C, or nothing parseable: no preference
    first = "base" if order == "base_first" else "tuned"
    second = "tuned" if first == "base" else "base"
    return first if verdict == "A" else second


def combine(item_id: str, replies: dict[str, str], finish_reasons: dict[str, str] | None = None) -> ItemVerdict:
    verdicts = {o: parse_verdict(replies[o]) for o in ORDERS}
    prefs = {o: preferred(o, verdicts[o]) for o in ORDERS}
    a, b = prefs["base_first"], prefs["tuned_first"]
    outcome = ("win" if a == "tuned" else "loss" if a == "base" else "tie") if a == b else "tie"
    first = float(np.mean([1.0 if v == "A" else 0.0 if v == "B" else 0.5 for v in verdicts.values()]))
    # consistent: the same verdict survived the swap (an unparsed reply is no verdict)
    consistent = a == b and None not in verdicts.values()
    reasons = dict(finish_reasons) if finish_reasons is not None else {o: "unknown" for o in replies}
    return ItemVerdict(item_id, verdicts, prefs, outcome, consistent, first, dict(replies), reasons)


def item_scores(v: ItemVerdict) -> dict[str, float]:
    """Per-sample scores; each metric of `aggregate` is the mean of one of these."""
    return {
        "win_rate": {"win": 1.0, "tie": 0.5, "loss": 0.0}[v.outcome],
        "net_win": {"win": 1.0, "tie": 0.0, "loss": -1.0}[v.outcome],
        "win_share": float(v.outcome == "win"),
        "tie_share": float(v.outcome == "tie"),
        "loss_share": float(v.outcome == "loss"),
        "consistency": float(v.consistent),
        "position_bias": v.position_first - 0.5,
    }


# The graded judge metrics live in known ranges; a percentile bootstrap of them collapses to
# [1, 1] when the tuned model wins every pair (every resample alike), which claims certainty
# 40 items cannot give. The bounded (effective-n Wilson) interval keeps the range and, at an
# end of it, is Wilson with the real n.
_RANGES = {"win_rate": (0.0, 1.0), "net_win": (-1.0, 1.0), "position_bias": (-0.5, 0.5)}


def _bounded(name: str, values: Sequence[float]) -> Estimate:
    from sfteval.stats import mean_estimate

    return mean_estimate(values, proportion=False, bounds=_RANGES[name])


def _wilson(values: Sequence[float]) -> Estimate:
    n = len(values)
    k = float(sum(values))
    p = k / n if n else math.nan
    se = math.sqrt(p * (1 - p) / n) if n else math.nan
    return Estimate(p, se, wilson_interval(k, n), n, "wilson")


def aggregate(scores: Sequence[dict[str, float]]) -> dict[str, Estimate]:
    """Each metric's mean with its 95% interval: bounded for the graded ones, Wilson for shares."""
    col = {k: [s[k] for s in scores] for k in ("win_rate", "net_win", "win_share", "tie_share", "loss_share",
                                                "consistency", "position_bias")}
    out = {k: _bounded(k, col[k]) for k in _RANGES}
    out.update({k: _wilson(col[k]) for k in ("win_share", "tie_share", "loss_share", "consistency")})
    return {k: out[k] for k in col}


def prompts_hash(prompts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(prompts, sort_keys=True).encode("utf-8")).hexdigest()


def judge_items(model: JudgeModel, items: Sequence[PairItem]) -> list[ItemVerdict]:
    """Both orders of every item in one batch of requests, replies kept."""
    asked = [prompts_for(it) for it in items]
    flat = [p[o] for p in asked for o in ORDERS]
    replies = [r if isinstance(r, Reply) else Reply(str(r)) for r in model.reply(flat)]
    if len(replies) != len(flat):
        raise RuntimeError(f"the judge answered {len(replies)} of {len(flat)} prompts")
    return [combine(it.item_id, {o: replies[2 * i + j].text for j, o in enumerate(ORDERS)},
                    {o: replies[2 * i + j].finish_reason for j, o in enumerate(ORDERS)}) for i, it in enumerate(items)]

