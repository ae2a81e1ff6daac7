"""Answer extraction and number normalisation for math (GSM8K) and choice (MMLU) replies.

Pure string functions, standard library only, so scoring stored outputs never needs a model.

Numbers (`normalize_number`): the canonical form is a plain decimal string with no sign on
zero, no trailing fractional zeros and no exponent, computed with `decimal.Decimal` so
that nothing is rounded ("1,000" -> "1000", "$18.00" -> "18", "3.50" -> "3.5",
"-0" -> "0", "1e3" -> "1000", ".5" -> "0.5"). Accepted around the number: whitespace, a
leading `+`/`-` or unicode minus, one currency sign (`$ € £`, before or after the sign),
a trailing `%` (GSM8K references write "25" for "25%", so the sign is dropped, not the
value divided by 100), and a trailing sentence period. Commas are read only as
thousands separators in valid groups ("1,234,567"); "1,5" is ambiguous (a European
decimal? a list?) and is not a number. Fractions ("1/2"), words ("seven"), units
("18 km"), NaN/inf and exponents beyond +-100 are not numbers here: `None`.

Strict GSM8K (`extract_gsm8k_strict`): the number right after the LAST `####` that has
one (lm-eval #3438: models recite few-shot exemplars, so the first match can be an
exemplar's answer). Trailing text after the number is ignored ("#### 18 dollars").

Flexible (`extract_last_number`): the last number anywhere in the text. A number glued
to a preceding letter ("x2", "Q3", "CO2") is an identifier, not an answer, and is
skipped; units after a number are fine ("18km", "5th"). A `-` counts as a sign only
when it does not follow a word character, so "16-3-4=9" reads 16, 3, 4, 9. Scientific
notation in free text is not read ("1e3" yields 1). A comma run that is not a valid
thousands grouping ("1,2,3") is read as a list of separate numbers.

Choices (`extract_choice`): see that function's docstring for the rule.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from sfteval.errors import SftevalError

__all__ = [
    "extract_choice",
    "extract_gsm8k_strict",
    "extract_last_number",
    "find_numbers",
    "gsm8k_reference",
    "normalize_number",
]

_MINUS = "\u2212\u2012\u2013\ufe63\uff0d"  # unicode minus and dash look-alikes models emit
_CURRENCY = "$€£"
_MAX_EXPONENT = 100  # keeps the fixed-point canonical form short; no real answer is larger

_PLAIN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?")

# One number token in free text: optional sign (only where it cannot be a binary minus),
# optional currency sign, then digits with commas and an optional fraction.
_TOKEN = re.compile(
    r"(?<![\w.])"  # not glued to a word or to a previous decimal point
    r"(?P<neg>-(?=[$€£]?\.?\d))?"
    rf"[{_CURRENCY}]?"
    r"(?P<body>\d[\d,]*(?:\.\d+)?|\.\d+)"
)
_STRICT = re.compile(r"####[ \t]*(?P<num>-?[$€£]?-?(?:\d[\d,]*(?:\.\d+)?|\.\d+))")


def _unify_minus(text: str) -> str:
    return text.translate({ord(c): "-" for c in _MINUS})


def _canonical(value: Decimal) -> str | None:
    if not value.is_finite() or abs(value.adjusted()) > _MAX_EXPONENT:
        return None
    if value == 0:
        return "0"
    text = format(value, "f")  # exact: 'f' formatting applies no context rounding
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def normalize_number(s: str) -> str | None:
    """The canonical string of a numeric answer, or None when `s` is not one number."""
    text = _unify_minus(s).strip()
    if text.endswith("."):
        text = text[:-1]
    if text.endswith("%"):
        text = text[:-1].rstrip()
    sign = ""
    if text.startswith(("+", "-")):
        sign, text = text[0], text[1:].lstrip()
    if text[:1] and text[0] in _CURRENCY:
        text = text[1:].lstrip()
        if not sign and text.startswith(("+", "-")):  # "$-5"
            sign, text = text[0], text[1:].lstrip()
    if "," in text:
        if not _GROUPED.fullmatch(text):
            return None
        text = text.replace(",", "")
    if not _PLAIN.fullmatch(text) or text.startswith(("+", "-")):
        return None
    try:
        value = Decimal(sign + text)
    except InvalidOperation:  # pragma: no cover - _PLAIN admits only valid literals
        return None
    return _canonical(value)


def _split_body(body: str) -> list[str]:
    """A digit run with commas: one grouped number, or a comma-separated list."""
    body = body.rstrip(",")
    if "," not in body or _GROUPED.fullmatch(body):
        return [body]
    return [part for part in body.split(",") if part]


def find_numbers(text: str) -> list[str]:
    """Every number in `text`, in order, normalised (the flexible reading; see module doc)."""
    found: list[str] = []
    for match in _TOKEN.finditer(_unify_minus(text)):
        parts = _split_body(match.group("body"))
        if match.group("neg"):
            parts[0] = "-" + parts[0]
        for part in parts:
            number = normalize_number(part)
            if number is not None:
                found.append(number)
    return found


def extract_last_number(text: str) -> str | None:
    """The last number in `text`, normalised; None when there is none."""
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


def extract_gsm8k_strict(text: str) -> str | None:
    """The number after the last `#### N` in `text`, normalised; None when there is none."""
    matches = list(_STRICT.finditer(_unify_minus(text)))
    if not matches:
        return None
    raw = matches[-1].group("num").rstrip(",")
    return normalize_number(raw)


def gsm8k_reference(answer_field: str, *, path: str | None = None, line: int | None = None) -> str:
    """The normalised final answer of a GSM8K reference ("...\\n#### 1,000" -> "1000").

    Raises SftevalError (field 'answer') when the field has no `####` followed by exactly
    one number: a reference we cannot read must stop the run, not score as wrong.
    `path`/`line`, when given, go into the error so it names the data file and row.
    """
    if "####" not in answer_field:
        raise SftevalError(
            "GSM8K reference answer has no '#### <number>' line",
            path=path,
            line=line,
            field="answer",
            hint="the answer field must end with '#### N' as in openai/gsm8k",
        )
    tail = answer_field.rsplit("####", 1)[1]
    number = normalize_number(tail)
    if number is None:
        raise SftevalError(
            f"GSM8K reference answer ends with {tail.strip()!r}, which is not a number",
            path=path,
            line=line,
            field="answer",
            hint="the text after '####' must be one number, e.g. '#### 1,250'",
        )
    return number


def _choice_patterns(letters: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    cls = "[" + re.escape(letters) + "]"
    alone = re.compile(r"[\s(\[{*_`'\"]*(?P<l>" + cls + r")[\s)\]}*_`'\".:]*", re.IGNORECASE)
    either = r"\s*(?:or|and|/|,)\s*[(\[*]*" + cls + r"(?!\w)"  # "A or B": no single choice
    stated = re.compile(
        # "answer [... is]" or "option/choice ... is": "Option A is wrong" is no statement.
        r"(?:\b(?i:answer)\b(?:[^\n.]{0,40}?\b(?i:is)\b)??|\b(?i:option|choice)\b[^\n.]{0,40}?\b(?i:is)\b)"
        r"[^\n\w]{0,4}"
        r"(?i:(?:option|choice)\s+)?(?:\\boxed\{|\\text\{)*"
        r"(?P<l>" + cls + r")(?!\w)"
        r"(?P<more>\s*(?:\)|\]|\*\*|})?" + either + ")?"
    )
    leading = re.compile(r"[\s*_(\[]*(?P<l>" + cls + r")(?:[)\]]|\*\*|[.:])(?P<more>" + either + ")?")
    marked = re.compile(r"(?:\((?P<a>" + cls + r")\)|\*\*(?P<b>" + cls + r")\*\*|\[(?P<c>" + cls + r")\])")
    return alone, stated, leading, marked


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
    """The chosen letter in a generative multiple-choice reply, or None.

    The rule, first that applies wins:
    1. The whole reply is one letter, optionally wrapped in brackets, bold or quotes and
       followed by `.`/`:` ("B", "(b)", "**C**", "D.") -> that letter (any case).
    2. Explicit statements "answer/choice/option [is] [:] X" (also "\\boxed{X}"): the
       LAST one wins, as with GSM8K's last `####`, because reasoning replies restate the
       question's options first. An uppercase letter is required here so that "the
       answer is a prime" is not read as A. "the answer is A or B" -> None (ambiguous).
    3. The reply opens with a marked letter: "C) Paris", "B. 42", "(A) ...", "**B**: ..."
    4. Letters marked in the text as "(B)", "**B**" or "[B]": one distinct letter -> it;
       several different letters -> None (ambiguous).
    Bare capitals inside prose are never read (the article "A", the pronoun "I").
    """
    upper = letters.upper()
    alone, stated, leading, marked = _choice_patterns(upper)
    whole = alone.fullmatch(text)
    if whole:
        return whole.group("l").upper()
    statements = list(stated.finditer(text))
    if statements:
        last = statements[-1]
        return None if last.group("more") else last.group("l")
    opening = leading.match(text)
    if opening:
        return None if opening.group("more") else opening.group("l")
    found = {next(g for g in m.groups() if g) for m in marked.finditer(text)}
    if len(found) == 1:
        return found.pop()
    return None
