"""Table-driven tests for number normalisation and answer extraction (sfteval.metrics.extract)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.metrics.extract import (
    extract_choice,
    extract_gsm8k_strict,
    extract_last_number,
    find_numbers,
    gsm8k_reference,
    normalize_number,
)

GSM8K_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("18", "18"),
        ("1,000", "1000"),
        ("1,234,567", "1234567"),
        ("$18.00", "18"),
        ("$ 18", "18"),
        ("€5", "5"),
        ("3.50", "3.5"),
        ("18.0", "18"),
        ("0.000", "0"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("+3", "3"),
        ("-7", "-7"),
        ("\u22127", "-7"),  # unicode minus
        ("-$5", "-5"),
        ("$-5", "-5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("18.", "18"),
        ("1,000.", "1000"),
        ("50%", "50"),
        (" 12 \n", "12"),
        ("1e3", "1000"),
        ("2.5E-2", "0.025"),
        ("0.1", "0.1"),
        # exact decimals: no float rounding, no Decimal context rounding at 28 digits
        ("1234567890.12345678901234567890123", "1234567890.12345678901234567890123"),
        ("100", "100"),
        ("1200.50", "1200.5"),
    ],
)
def test_normalize_number(raw: str, expected: str) -> None:
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", " ", "abc", "-", "$", ".", "%", "1,5", "1,23", "12,3456", "1/2", "seven", "18 km", "nan", "inf", "1e101", "1.2.3", "--5", "5-"],
)
def test_normalize_number_rejects(raw: str) -> None:
    assert normalize_number(raw) is None


# Strict: the LAST "#### N". Replies below are shaped like real base/chat model output.
STRICT_CASES = [
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
    ("#### 18", "18"),
    ("####18", "18"),
    ("The total is 1,000 apples.\n#### 1,000", "1000"),
    ("#### $1,000.00 dollars", "1000"),
    ("#### 18 dollars per day", "18"),
    ("#### 18.", "18"),
    ("#### 18.0", "18"),
    ("#### -3", "-3"),
    ("#### \u22123", "-3"),
    ("#### 0.50", "0.5"),
    # lm-eval #3438: the model recites an exemplar first; the last #### is its answer
    ("Question: ... Natalia sold 48/2 = 24 clips.\n#### 72\n\nNow our problem: 5 + 3 = 8\n#### 8", "8"),
    ("#### 18\n\nQuestion: Another one?\nAnswer: 2 + 2 = 4\n#### 4", "4"),
    # a trailing bare #### without a number is not a match; the last numbered one is
    ("#### 42\n####", "42"),
    ("#### 5, 6", "5"),
    ("The answer is 18.", None),
    ("#### eighteen", None),
    ("####", None),
    ("#### 1,2", None),  # not a thousands grouping: strict refuses to guess
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), STRICT_CASES)
def test_extract_gsm8k_strict(text: str, expected: str | None) -> None:
    assert extract_gsm8k_strict(text) == expected


FLEXIBLE_CASES = [
    ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.", "9"),
    ("So she makes $1,234.50.", "1234.5"),
    ("The answer is 7.", "7"),
    ("The answer is 7. ", "7"),
    ("It is -5 degrees outside.", "-5"),
    ("The temperature dropped to \u221212 degrees.", "-12"),
    ("He runs 18km per day", "18"),
    ("That makes 25%", "25"),
    ("The final answer is **42**", "42"),
    ("\\boxed{128}", "128"),
    ("$\\boxed{3.50}$", "3.5"),
    ("Total: 1,000 + 250 = 1,250 dollars", "1250"),
    ("#### 18\nThen I also computed 20", "20"),
    ("The answer is 18.0", "18"),
    ("Step x2 is done", None),  # numbers glued to a letter are identifiers
    ("Q3 revenue of CO2", None),
    ("1,2,3", "3"),  # not a thousands grouping: a list
    ("a 1e3 b", "1"),  # no scientific notation in free text
    ("-.5 or 0.25", "0.25"),
    ("no digits here", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), FLEXIBLE_CASES)
def test_extract_last_number(text: str, expected: str | None) -> None:
    assert extract_last_number(text) == expected


def test_find_numbers_reads_binary_minus_as_operator() -> None:
    assert find_numbers("16-3-4=9 and 5 - 2 = 3 and -1") == ["16", "3", "4", "9", "5", "2", "3", "-1"]


def test_strict_and_flexible_disagree_where_they_should() -> None:
    text = "#### 18\nWait, let me recheck: 9 * 2 = 18, plus tips of 4 makes 22"
    assert extract_gsm8k_strict(text) == "18"
    assert extract_last_number(text) == "22"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18", "18"),
        ("...\n#### 1,450,000", "1450000"),
        ("...\n#### -3", "-3"),
        ("...\n#### 0.5", "0.5"),
    ],
)
def test_gsm8k_reference(field: str, expected: str) -> None:
    assert gsm8k_reference(field) == expected


@pytest.mark.parametrize("field", ["no marker at all 18", "#### eighteen", "#### 18 apples", "####"])
def test_gsm8k_reference_errors_name_the_field(field: str) -> None:
    with pytest.raises(SftevalError) as err:
        gsm8k_reference(field)
    assert err.value.field == "answer"


def test_gsm8k_reference_error_names_file_and_line() -> None:
    with pytest.raises(SftevalError) as err:
        gsm8k_reference("2 + 2 = 4", path="data/test.jsonl", line=7)
    assert str(err.value).startswith("data/test.jsonl:7 (field 'answer')")


def test_real_gsm8k_references() -> None:
    """Every real GSM8K reference (train and test) yields a number, the same three ways."""
    files = [GSM8K_DIR / "test.jsonl", GSM8K_DIR / "train.jsonl"]
    files = [f for f in files if f.is_file()]
    if not files:
        pytest.skip(f"real GSM8K not present at {GSM8K_DIR} (a fresh clone has none)")
    checked = 0
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            answer = json.loads(line)["answer"]
            ref = gsm8k_reference(answer)
            assert extract_gsm8k_strict(answer) == ref, answer
            assert extract_last_number(answer.rsplit("####", 1)[1]) == ref, answer
            # A model that copies the reference solution verbatim scores under both readings.
            assert extract_last_number(answer) == ref, answer
            checked += 1
    assert checked >= 1319


CHOICE_CASES = [
    # rule 1: the whole reply is one letter
    ("B", "B"),
    (" b\n", "B"),
    ("(B)", "B"),
    ("B.", "B"),
    ("**C**", "C"),
    ("D)", "D"),
    ("'A'", "A"),
    # rule 2: explicit statements, last one wins
    ("The answer is B", "B"),
    ("The answer is B.", "B"),
    ("Answer: C) Paris", "C"),
    ("Answer: (A)", "A"),
    ("The correct answer is: **D**", "D"),
    ("Final Answer: $\\boxed{B}$", "B"),
    ("The correct option is B", "B"),
    ("answer is option C", "C"),
    ("Option A is wrong because it ignores friction. The answer is C.", "C"),
    ("Let me think. The answer is A... no wait, the answer is D", "D"),
    ("The answer to this question is (C).", "C"),
    ("Answer: C) Paris is A city", "C"),
    ("the answer is a prime number", None),  # lowercase article, not a choice
    ("The answer is A or B", None),
    ("The answer is (A) and (B)", None),
    # rule 3: the reply opens with a marked letter
    ("C) Paris", "C"),
    ("B. 42 moles", "B"),
    ("(A) The mitochondria", "A"),
    ("**B**: because it is larger", "B"),
    ("C) Paris, B) London", "C"),
    ("(A) or (B)?", None),
    # rule 4: one distinct marked letter in the text
    ("I think (B) is right", "B"),
    ("Between the options, **D** fits best", "D"),
    ("Either (A) or maybe (C) fits", None),
    # nothing readable
    ("A cat is on the mat", None),
    ("I don't know", None),
    ("E", None),  # not among ABCD
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), CHOICE_CASES)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


def test_extract_choice_other_letter_sets() -> None:
    assert extract_choice("The answer is H", letters="ABCDEFGHIJ") == "H"
    assert extract_choice("The answer is H") is None
    assert extract_choice("(E)", letters="ABCDE") == "E"
