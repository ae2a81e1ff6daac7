"""The 25 verifiable instructions of IFEval (Zhou et al., 2023, arXiv:2311.07911),
checked as the paper's code defines them, strict and loose.

Written for sfteval from the paper and the behaviour of its reference checkers
(google-research `instruction_following_eval`, mirrored in lm-eval
`tasks/ifeval`), rather than depending on either: lm-eval's copy downloads NLTK's
`punkt_tab` when imported and pulls in the whole harness, and the paper's code is not a
package. Every checker keeps the reference's quirks on purpose (keywords are regular
expressions, `keywords:frequency` counts non-overlapping regex matches, a JSON answer
may sit in a ```json fence, an empty response follows nothing), so that scores are
comparable with published IFEval numbers. The reference's own unit-test cases are
table tests in tests/test_ifeval_checkers.py.

Strict: the response as given. Loose (the paper's upper bound): an instruction counts
as followed if any of eight variants follows it - the response, with its first line,
last line or both removed, each with and without '*' characters. Identical variants
are checked once.

Instruction arguments come from the data's `kwargs` (None values dropped, as the hub's
unified schema fills every key); `check_args` validates them before any model loads.
The sentence splitter is chosen per benchmark and reaches `number_sentences` as the
private argument `_sentences` ("builtin" unless the TOML says otherwise).
Text measurements (words, sentences, language) live in `sfteval.metrics.ifeval_text`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sfteval.metrics import ifeval_text as text

Kwargs = Mapping[str, Any]
Checker = Callable[[str, Kwargs], bool]
RELATIONS = ("less than", "at least")
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


@functools.lru_cache(maxsize=4096)
def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def _compare(count: int, threshold: int, relation: str) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


# ----------------------------------------------------------------------------- checkers


def keywords_existence(r: str, kw: Kwargs) -> bool:
    return all(_rx(k, re.I).search(r) for k in kw["keywords"])


def keywords_frequency(r: str, kw: Kwargs) -> bool:
    n = len(_rx(str(kw["keyword"]).strip(), re.I).findall(r))
    return _compare(n, int(kw["frequency"]), kw["relation"])


def keywords_forbidden(r: str, kw: Kwargs) -> bool:
    return not any(_rx(r"\b" + w + r"\b", re.I).search(r) for w in kw["forbidden_words"])


def keywords_letter_frequency(r: str, kw: Kwargs) -> bool:
    n = r.lower().count(str(kw["letter"]).strip().lower())
    return _compare(n, int(kw["let_frequency"]), kw["let_relation"])


def response_language(r: str, kw: Kwargs) -> bool:
    found = text.detect_language(r)
    return True if found is None else found == kw["language"]


def number_sentences(r: str, kw: Kwargs) -> bool:
    n = text.count_sentences(r, str(kw.get("_sentences", "builtin")))
    return _compare(n, int(kw["num_sentences"]), kw["relation"])


def number_paragraphs(r: str, kw: Kwargs) -> bool:
    parts = _rx(r"\s?\*\*\*\s?").split(r)
    n = len(parts)
    for i, p in enumerate(parts):
        if not p.strip():
            if i in (0, len(parts) - 1):
                n -= 1
            else:
                return False  # an empty paragraph between two separators
    return n == int(kw["num_paragraphs"])


def number_words(r: str, kw: Kwargs) -> bool:
    return _compare(text.count_words(r), int(kw["num_words"]), kw["relation"])


def nth_paragraph_first_word(r: str, kw: Kwargs) -> bool:
    paragraphs = r.split("\n\n")
    n = sum(1 for p in paragraphs if p.strip())
    nth = int(kw["nth_paragraph"])
    if nth > n:
        return False
    paragraph = paragraphs[nth - 1].strip()  # the reference indexes the raw split
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for ch in word:
        if ch in ".,?!'\"":
            break
        first += ch.lower()
    return n == int(kw["num_paragraphs"]) and first == str(kw["first_word"]).lower()


def number_placeholders(r: str, kw: Kwargs) -> bool:
    return len(_rx(r"\[.*?\]").findall(r)) >= int(kw["num_placeholders"])


def postscript(r: str, kw: Kwargs) -> bool:
    marker = str(kw["postscript_marker"]).strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    return bool(_rx(pattern, re.M).findall(r.lower()))


def number_bullet_lists(r: str, kw: Kwargs) -> bool:
    n = len(_rx(r"^\s*\*[^\*].*$", re.M).findall(r)) + len(_rx(r"^\s*-.*$", re.M).findall(r))
    return n == int(kw["num_bullets"])


def constrained_response(r: str, kw: Kwargs) -> bool:
    r = r.strip()
    return any(option in r for option in CONSTRAINED_RESPONSES)


def number_highlighted_sections(r: str, kw: Kwargs) -> bool:
    n = sum(1 for h in _rx(r"\*[^\n\*]*\*").findall(r) if h.strip("*").strip())
    n += sum(1 for h in _rx(r"\*\*[^\n\*]*\*\*").findall(r) if h.removeprefix("**").removesuffix("**").strip())
    return n >= int(kw["num_highlights"])


def multiple_sections(r: str, kw: Kwargs) -> bool:
    splitter = str(kw["section_spliter"]).strip()
    sections = _rx(r"\s?" + splitter + r"\s?\d+\s?").split(r)
    return len(sections) - 1 >= int(kw["num_sections"])


def json_format(r: str, kw: Kwargs) -> bool:
    value = (
        r.strip().removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
        .removeprefix("```").removesuffix("```").strip()
    )
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def title(r: str, kw: Kwargs) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in _rx(r"<<[^\n]+>>").findall(r))


def two_responses(r: str, kw: Kwargs) -> bool:
    valid = []
    parts = r.split("******")
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def repeat_prompt(r: str, kw: Kwargs) -> bool:
    return r.strip().lower().startswith(str(kw["prompt_to_repeat"]).strip().lower())


def end_checker(r: str, kw: Kwargs) -> bool:
    return r.strip().strip('"').lower().endswith(str(kw["end_phrase"]).strip().lower())


def capital_word_frequency(r: str, kw: Kwargs) -> bool:
    return _compare(text.count_capital_words(r), int(kw["capital_frequency"]), kw["capital_relation"])


def english_capital(r: str, kw: Kwargs) -> bool:
    if not r.isupper():  # the reference's `and` short-circuits: no detection needed
        return False
    found = text.detect_language(r)
    return True if found is None else found == "en"


def english_lowercase(r: str, kw: Kwargs) -> bool:
    if not r.islower():
        return False
    found = text.detect_language(r)
    return True if found is None else found == "en"


def no_comma(r: str, kw: Kwargs) -> bool:
    return "," not in r


def quotation(r: str, kw: Kwargs) -> bool:
    r = r.strip()
    return len(r) > 1 and r[0] == '"' and r[-1] == '"'


@dataclass(frozen=True)
class InstructionType:
    check: Checker
    args: tuple[str, ...]  # required kwargs
    relation: str | None = None  # the kwarg holding "less than" | "at least"


# The registry: instruction id -> checker (grep-able; ids as in the IFEval data).
INSTRUCTIONS: dict[str, InstructionType] = {
    "keywords:existence": InstructionType(keywords_existence, ("keywords",)),
    "keywords:frequency": InstructionType(keywords_frequency, ("keyword", "frequency", "relation"), "relation"),
    "keywords:forbidden_words": InstructionType(keywords_forbidden, ("forbidden_words",)),
    "keywords:letter_frequency": InstructionType(
        keywords_letter_frequency, ("letter", "let_frequency", "let_relation"), "let_relation"),
    "language:response_language": InstructionType(response_language, ("language",)),
    "length_constraints:number_sentences": InstructionType(number_sentences, ("num_sentences", "relation"), "relation"),
    "length_constraints:number_paragraphs": InstructionType(number_paragraphs, ("num_paragraphs",)),
    "length_constraints:number_words": InstructionType(number_words, ("num_words", "relation"), "relation"),
    "length_constraints:nth_paragraph_first_word": InstructionType(
        nth_paragraph_first_word, ("num_paragraphs", "nth_paragraph", "first_word")),
    "detectable_content:number_placeholders": InstructionType(number_placeholders, ("num_placeholders",)),
    "detectable_content:postscript": InstructionType(postscript, ("postscript_marker",)),
    "detectable_format:number_bullet_lists": InstructionType(number_bullet_lists, ("num_bullets",)),
    "detectable_format:constrained_response": InstructionType(constrained_response, ()),
    "detectable_format:number_highlighted_sections": InstructionType(number_highlighted_sections, ("num_highlights",)),
    "detectable_format:multiple_sections": InstructionType(multiple_sections, ("section_spliter", "num_sections")),
    "detectable_format:json_format": InstructionType(json_format, ()),
    "detectable_format:title": InstructionType(title, ()),
    "combination:two_responses": InstructionType(two_responses, ()),
    "combination:repeat_prompt": InstructionType(repeat_prompt, ("prompt_to_repeat",)),
    "startend:end_checker": InstructionType(end_checker, ("end_phrase",)),
    "change_case:capital_word_frequency": InstructionType(
        capital_word_frequency, ("capital_frequency", "capital_relation"), "capital_relation"),
    "change_case:english_capital": InstructionType(english_capital, ()),
    "change_case:english_lowercase": InstructionType(english_lowercase, ()),
    "punctuation:no_comma": InstructionType(no_comma, ()),
    "startend:quotation": InstructionType(quotation, ()),
}


def clean_kwargs(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop None values: the hub's schema gives every row every key."""
    return {k: v for k, v in (raw or {}).items() if v is not None}


def check_args(instruction_id: str, kwargs: Mapping[str, Any]) -> str | None:
    """None when the instruction is known and its arguments usable, else what is wrong."""
    spec = INSTRUCTIONS.get(instruction_id)
    if spec is None:
        return f"unknown instruction '{instruction_id}'"
    missing = [a for a in spec.args if a not in kwargs]
    if missing:
        return f"'{instruction_id}' needs argument(s) {', '.join(missing)}"
    if spec.relation and kwargs[spec.relation] not in RELATIONS:
        return f"'{instruction_id}': {spec.relation} must be one of {RELATIONS}, got {kwargs[spec.relation]!r}"
    return None


def loose_variants(response: str) -> list[str]:
    """The paper's eight loose variants, duplicates removed (order kept)."""
    lines = response.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    variants = [response, response.replace("*", ""), first, last, both,
                first.replace("*", ""), last.replace("*", ""), both.replace("*", "")]
    return list(dict.fromkeys(variants))


def follows(instruction_id: str, response: str, kwargs: Kwargs) -> bool:
    """Strict verdict for one instruction; an empty (whitespace) response follows nothing."""
    return bool(response.strip()) and INSTRUCTIONS[instruction_id].check(response, kwargs)


def evaluate(
    instruction_ids: Sequence[str], kwargs_list: Sequence[Kwargs], response: str
) -> tuple[list[bool], list[bool]]:
    """(strict, loose) verdicts, one per instruction of a prompt."""
    strict = [follows(i, response, kw) for i, kw in zip(instruction_ids, kwargs_list)]
    # The response itself is the first variant and was just checked (strict): skip it.
    variants = [v for v in loose_variants(response)[1:] if v.strip()]
    loose = [s or any(INSTRUCTIONS[i].check(v, kw) for v in variants) for i, kw, s in
             zip(instruction_ids, kwargs_list, strict)]
    return strict, loose


def category(instruction_id: str) -> str:
    return instruction_id.split(":", 1)[0]
