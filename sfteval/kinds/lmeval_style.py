"""lm-evaluation-harness's prompt and answer rules, so our numbers sit beside a model card's.

A math benchmark with `[options] prompt_style = "lm-eval"` renders prompts as lm-eval
0.4.x does for a plain (no chat template) `generate_until` task:

- few-shot exemplars per document from lm-eval's default sampler: one
  `random.Random(fewshot_seed)` for the whole task, `rnd.sample(pool, k)` drawn for each
  evaluated document in order (documents are evaluated in file order, so document i gets
  the i-th draw; with `--limit n` the first n draws, as lm-eval's `--limit`), or, with
  `fewshot_sampler = "first_n"`, the first k exemplars of the pool (gsm8k-cot's fixed 8);
- each exemplar `question_template.format(**row) + target_delimiter + target + fewshot_delimiter`,
  then `question_template.format(**row)` for the document itself: no stripping, no
  calculator-annotation removal, no BOS text (lm-eval's tokenizer adds BOS as a token).

With `[options] extract = "lm-eval"` answers are scored as lm-eval's filters and metric do:
`strict` = `re.findall(strict_regex)[strict_group]` (take_first), `flexible` =
`re.findall(flexible_regex)[-1]` with the first non-empty group of a tuple match, stripped,
"[invalid]" when nothing matches; then `exact_match` after deleting every
`regexes_to_ignore` pattern from prediction and reference in order, and lower-casing.
This is lm-eval's strict rule (the *first* `#### N`), not our own `gsm8k` (the last):
reproducing lm-eval means reproducing its quirks. Checked against lm-eval's own
RegexFilter and exact_match in tests/test_lmeval_style.py.

Not covered: chat-templated lm-eval prompts (`--apply_chat_template`), `description` fields,
and samplers other than `default` and `first_n`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sfteval.errors import SftevalError

FALLBACK = "[invalid]"


@dataclass(frozen=True)
class LmEvalPrompt:
    question_template: str
    target_field: str
    target_template: str
    target_delimiter: str
    fewshot_delimiter: str
    num_fewshot: int
    seed: int
    sampler: str


def prompt_settings(options: Mapping[str, Any], num_fewshot: int, seed: int, source: str) -> LmEvalPrompt:
    sampler = str(options.get("fewshot_sampler", "default"))
    if sampler not in ("default", "first_n"):
        raise SftevalError(f"unknown lm-eval sampler {sampler!r}", path=source, field="options.fewshot_sampler",
                           hint="default (seeded random per document) or first_n")
    return LmEvalPrompt(
        question_template=str(options.get("question_template", "Question: {question}\nAnswer:")),
        target_field=str(options.get("target_field", "answer")),
        target_template=str(options.get("target_template", "{target}")),
        target_delimiter=str(options.get("target_delimiter", " ")),
        fewshot_delimiter=str(options.get("fewshot_delimiter", "\n\n")),
        num_fewshot=num_fewshot, seed=seed, sampler=sampler)


def fewshot_draws(pool: Sequence[Any], n_docs: int, k: int, seed: int, sampler: str) -> list[list[Any]]:
    """The exemplars lm-eval gives each of the first `n_docs` documents (pool != test split)."""
    if k <= 0:
        return [[] for _ in range(n_docs)]
    if len(pool) < k:
        raise SftevalError(f"{k}-shot needs {k} exemplars, the few-shot pool has {len(pool)}",
                           field="prompt.num_fewshot")
    if sampler == "first_n":
        return [list(pool[:k]) for _ in range(n_docs)]
    rnd = random.Random(seed)
    pool = list(pool)
    return [rnd.sample(pool, k) for _ in range(n_docs)]


def render(p: LmEvalPrompt, row: Mapping[str, Any], shots: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for shot in shots:
        target = p.target_template.format(**{**shot, "target": shot.get(p.target_field, shot.get("target", ""))})
        parts.append(p.question_template.format(**shot) + p.target_delimiter + str(target) + p.fewshot_delimiter)
    return "".join(parts) + p.question_template.format(**row)


def regex_filter(text: str, pattern: str, group_select: int = 0) -> str:
    """lm-eval's RegexFilter on one response."""
    found = re.findall(pattern, text if isinstance(text, str) else "")
    if not found:
        return FALLBACK
    match = found[group_select]
    if isinstance(match, tuple):
        nonempty = [m for m in match if m]
        match = nonempty[0] if nonempty else FALLBACK
    return match.strip()


def exact_match(prediction: str, reference: str, ignore: Sequence[str], ignore_case: bool = True) -> bool:
    """lm-eval's exact_match (regexes_to_ignore applied in order to both sides, then case)."""
    for pattern in ignore:
        prediction = re.sub(pattern, "", prediction)
        reference = re.sub(pattern, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    return prediction == reference


@dataclass(frozen=True)
class LmEvalScoring:
    strict_regex: str
    strict_group: int
    flexible_regex: str
    flexible_group: int
    ignore: tuple[str, ...]
    ignore_case: bool


def scoring_settings(options: Mapping[str, Any]) -> LmEvalScoring:
    return LmEvalScoring(
        strict_regex=str(options.get("strict_regex", r"#### (\-?[0-9\.\,]+)")),
        strict_group=int(options.get("strict_group", 0)),
        flexible_regex=str(options.get("flexible_regex", r"(-?[$0-9.,]{2,})|(-?[0-9]+)")),
        flexible_group=int(options.get("flexible_group", -1)),
        ignore=tuple(options.get("regexes_to_ignore", (",", r"\$", "(?s).*#### ", r"\.$"))),
        ignore_case=bool(options.get("ignore_case", True)),
    )


def score_output(s: LmEvalScoring, text: str, reference: str) -> dict[str, Any]:
    strict = regex_filter(text, s.strict_regex, s.strict_group)
    flexible = regex_filter(text, s.flexible_regex, s.flexible_group)
    return {"strict": strict, "flexible": flexible,
            "exact_match_strict": float(exact_match(strict, reference, s.ignore, s.ignore_case)),
            "exact_match_flexible": float(exact_match(flexible, reference, s.ignore, s.ignore_case))}
