"""The demo's data, generated from templates with fixed seeds (no copied benchmark data).

Pretraining corpus (documents separated by the EOS text), covering skills in the
formats the real benchmarks use, sized so a tiny model learns them in minutes:
- MMLU-style multiple choice over memorisable facts (world capitals, unit conversions),
  a fixed bank of questions (`mc_bank`) in exactly the prompt format of the `choice`
  kind (header, "A. ..", "Answer: X"), plus the same facts as plain sentences;
- GSM8K-style word problems with single-digit numbers and a `#### N` line, as plain
  "Question/Answer" text and as chat turns in the tokenizer's ChatML template (the
  format the `math` kind prompts a chat model with);
- HumanEval-style small Python functions with a docstring and a `check(candidate)`, as
  source files and as the chat exchange the `code` kind prompts a chat model with;
- facts about the demo's animals in plain sentences, and plain-text questions answered in
  a word about the SFT training split's animals only (`sfteval.demo.task`).

Evaluation and SFT files (`write_task_files`): the MC bank (MMLU schema; studied in
pretraining, so it measures retained knowledge), GSM8K-schema word problems that the
corpus never shows verbatim (a skill, not recall), HumanEval-schema tasks (functions of
the kinds the corpus teaches, run against their tests in the sandbox), and alpaca-format SFT train /
held-out splits of the target task (`sfteval.demo.task`; disjoint animals), the
training split with replayed chat word problems (`TaskSizes.sft_math`).

Not covered: anything resembling real benchmark difficulty; the point is a model small
enough to train here whose skills, gains and forgetting are measurable.

    python -m sfteval.demo.corpus OUT_DIR      # write the task files and a corpus sample
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.synthetic import CAPITALS as BASE_CAPITALS
from sfteval.demo.task import QUESTIONS, RELATIONS, fact_doc, qa_doc, question_rows, split_animals
from sfteval.synthetic import ITEMS, NAMES, WORDS
from sfteval.tinymodel import BOS, EOS, IM_END, IM_START

CAPITALS: dict[str, str] = {
    **BASE_CAPITALS,
    "Germany": "Berlin", "Brazil": "Brasilia", "China": "Beijing", "Russia": "Moscow", "Austria": "Vienna",
    "Portugal": "Lisbon", "Ireland": "Dublin", "Finland": "Helsinki", "Hungary": "Budapest", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Argentina": "Buenos Aires", "Colombia": "Bogota", "Denmark": "Copenhagen", "Morocco": "Rabat",
    "Iraq": "Baghdad", "Belgium": "Brussels", "Ukraine": "Kyiv", "Romania": "Bucharest", "Qatar": "Doha",
}
# (small unit, big unit, how many small in one big): memorisable multiplication facts.
UNITS: tuple[tuple[str, str, int], ...] = (
    ("minutes", "hours", 60), ("hours", "days", 24), ("days", "weeks", 7),
    ("months", "years", 12), ("centimetres", "metres", 100), ("grams", "kilograms", 1000),
)
MC_SUBJECTS = ("world_capitals", "units")
LETTERS = "ABCD"
MC_HEADER = "The following are multiple choice questions (with answers) about {subject}.\n\n"
# Mirrors sfteval.kinds.math.DEFAULT_INSTRUCTION (a test checks they agree).
MATH_INSTRUCTION = "Solve the problem step by step. End with a line of the form '#### <number>'."
# Mirrors sfteval.kinds.code.DEFAULT_INSTRUCTION (a test checks they agree).
CODE_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, "
    "including the signature, in one ```python code block."
)


# ----------------------------------------------------------------------------- items


def capital_item(rng: random.Random, country: str) -> dict[str, Any]:
    right = CAPITALS[country]
    wrong = rng.sample(sorted(c for k, c in CAPITALS.items() if k != country), 3)
    return _choices(rng, f"What is the capital of {country}?", right, wrong, "world_capitals")


def units_item(rng: random.Random, small: str, big: str, factor: int, n: int) -> dict[str, Any]:
    right = n * factor
    pool = sorted({n * f for _, _, f in UNITS if n * f != right} | {right + factor, right - factor} - {right})
    wrong = [str(x) for x in rng.sample(pool, 3)]
    return _choices(rng, f"How many {small} are there in {n} {big}?", str(right), wrong, "units")


def _choices(rng: random.Random, question: str, right: str, wrong: list[str], subject: str) -> dict[str, Any]:
    choices = [right, *wrong]
    rng.shuffle(choices)
    return {"question": question, "subject": subject, "choices": choices, "answer": choices.index(right)}


def mc_bank(seed: int) -> list[dict[str, Any]]:
    """Every fact question once, each with its own fixed distractors and order, like an
    exam bank: MMLU-schema rows with ids. The base model studies this bank in
    pretraining, so accuracy on it measures retained knowledge, which is what
    fine-tuning can make a model forget. (Binding an answer to a shuffled letter in
    context is beyond a model this small trained this briefly: on freshly shuffled
    items it stays at chance, so the bank keeps each question's order fixed.)"""
    rows = [{"id": f"capital-{c.replace(' ', '_')}", **capital_item(random.Random(f"{seed}:{c}"), c)} for c in sorted(CAPITALS)]
    for small, big, factor in UNITS:
        for n in range(2, 10):
            rng = random.Random(f"{seed}:{small}:{big}:{n}")
            rows.append({"id": f"units-{small}-{n}", **units_item(rng, small, big, factor, n)})
    return rows


def math_item(rng: random.Random) -> dict[str, str]:
    """One GSM8K-schema word problem with single-digit numbers (question, answer '#### N')."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if rng.random() < 0.5:
        a, b = rng.randint(2, 9), rng.randint(1, 9)
        q = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        ans = f"{name} has {a} + {b} = {a + b} {item}.\n#### {a + b}"
    else:
        a = rng.randint(2, 9)
        b = rng.randint(1, a - 1)
        q = f"{name} has {a} {item} and gives away {b}. How many {item} does {name} have left?"
        ans = f"{name} has {a} - {b} = {a - b} {item} left.\n#### {a - b}"
    return {"question": q, "answer": ans}


def _code_parts(rng: random.Random) -> tuple[str, str, str, str, list[str]]:
    """(name, parameters, docstring, body, asserts) of one small function."""
    kind = rng.randrange(8)
    if kind == 0:
        k = rng.randint(1, 9)
        return f"add_{k}", "x", f"Return x plus {k}.", f"x + {k}", [f"candidate(1) == {1 + k}", f"candidate(10) == {10 + k}"]
    if kind == 1:
        k = rng.randint(2, 9)
        return f"times_{k}", "x", f"Return x multiplied by {k}.", f"x * {k}", [f"candidate(2) == {2 * k}", f"candidate(3) == {3 * k}"]
    if kind == 2:
        k = rng.randint(2, 9)
        return (f"is_multiple_of_{k}", "n", f"Return True if n is a multiple of {k}.", f"n % {k} == 0",
                [f"candidate({k * 3})", f"not candidate({k * 3 + 1})"])
    if kind == 3:
        w = rng.choice(WORDS)
        return "reverse_text", "s", "Return the string s reversed.", "s[::-1]", [f'candidate("{w}") == "{w[::-1]}"']
    if kind == 4:
        w = rng.choice(WORDS)
        return "shout", "s", "Return s in upper case.", "s.upper()", [f'candidate("{w}") == "{w.upper()}"']
    if kind == 5:
        xs = rng.sample(range(1, 50), 4)
        return "largest", "xs", "Return the largest number in the list xs.", "max(xs)", [f"candidate({xs}) == {max(xs)}"]
    if kind == 6:
        xs = rng.sample(range(1, 20), 3)
        return "total", "xs", "Return the sum of the numbers in xs.", "sum(xs)", [f"candidate({xs}) == {sum(xs)}"]
    c, w = rng.choice("aeiou"), rng.choice(WORDS)
    return f"count_{c}", "s", f"Return how many times the letter {c} occurs in s.", f's.count("{c}")', [f'candidate("{w}") == {w.count(c)}']


def code_task(rng: random.Random) -> dict[str, str]:
    """A HumanEval-schema task: prompt (signature + docstring), canonical_solution,
    test (a `check(candidate)`), entry_point."""
    name, params, doc, body, asserts = _code_parts(rng)
    return {
        "prompt": f'def {name}({params}):\n    """{doc}"""\n',
        "canonical_solution": f"    return {body}\n",
        "test": "def check(candidate):\n" + "".join(f"    assert {a}\n" for a in asserts),
        "entry_point": name,
    }


def code_doc(rng: random.Random) -> str:
    """A task as a source file (function, then its check), or as the chat exchange the
    `code` kind prompts a chat model with (instruction, fenced prompt; fenced reply)."""
    t = code_task(rng)
    if rng.random() < 0.5:
        return f"{t['prompt']}{t['canonical_solution']}\n\n{t['test']}"
    user = f"{CODE_INSTRUCTION}\n\n```python\n{t['prompt'].strip()}\n```"
    return chat_text(user, f"```python\n{t['prompt']}{t['canonical_solution']}```")


def fact_sentence(rng: random.Random) -> str:
    if rng.random() < 0.5:
        country = rng.choice(sorted(CAPITALS))
        return f"The capital of {country} is {CAPITALS[country]}."
    small, big, factor = rng.choice(UNITS)
    n = rng.randint(1, 9)
    return f"There are {n * factor} {small} in {n} {big}."


# ----------------------------------------------------------------------------- rendering


def chat_text(user: str, assistant: str) -> str:
    """One exchange as tinymodel.CHAT_TEMPLATE renders it (a test checks they agree)."""
    return f"{BOS}{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n{assistant}{IM_END}\n"


def mc_solved(item: dict[str, Any]) -> str:
    body = item["question"] + "\n" + "".join(f"{x}. {c}\n" for x, c in zip(LETTERS, item["choices"]))
    return f"{body}Answer: {LETTERS[item['answer']]}\n\n"


def mc_doc(rng: random.Random, bank: list[dict[str, Any]]) -> str:
    subject = rng.choice(MC_SUBJECTS)
    pool = [row for row in bank if row["subject"] == subject]
    items = rng.sample(pool, rng.randint(1, 4))
    return MC_HEADER.format(subject=subject.replace("_", " ")) + "".join(mc_solved(i) for i in items)


def math_doc(rng: random.Random, exclude: frozenset[str]) -> str:
    it = math_item(rng)
    while it["question"] in exclude:
        it = math_item(rng)
    if rng.random() < 0.5:
        return chat_text(f"{it['question']}\n\n{MATH_INSTRUCTION}", it["answer"])
    return f"Question: {it['question']}\nAnswer: {it['answer']}\n\n"


# Share of documents by kind; the multiple-choice and math formats dominate so that a
# few minutes of training on two cores are enough for measurable skill.
MIX: tuple[tuple[str, float], ...] = (("mc", 0.18), ("fact", 0.04), ("math", 0.15), ("code", 0.06), ("animal", 0.37),
                                     ("qa", 0.20))


def corpus_docs(n_docs: int, seed: int, exclude: frozenset[str] = frozenset(), bank_seed: int | None = None,
                n_heldout: int = 40) -> list[str]:
    """`n_docs` documents (each ends with the EOS text), deterministic given `seed`.

    `exclude`: questions of math test items, never emitted. `bank_seed`: the MC bank's
    seed (default `seed`; a held-out slice of the corpus uses the training bank).
    `n_heldout`: the size of the SFT held-out split, whose animals no question is about.
    """
    rng = random.Random(seed)
    bank = mc_bank(seed if bank_seed is None else bank_seed)
    asked, _ = split_animals(seed if bank_seed is None else bank_seed, held_animal_count(n_heldout))
    kinds, weights = zip(*MIX)
    docs = []
    for _ in range(n_docs):
        kind = rng.choices(kinds, weights)[0]
        if kind == "mc":
            doc = mc_doc(rng, bank)
        elif kind == "math":
            doc = math_doc(rng, exclude)
        elif kind == "code":
            doc = code_doc(rng)
        elif kind == "animal":
            doc = fact_doc(rng)
        elif kind == "qa":
            doc = qa_doc(rng, asked)
        else:
            doc = " ".join(fact_sentence(rng) for _ in range(rng.randint(2, 5)))
        docs.append(doc + EOS)
    return docs


# ----------------------------------------------------------------------------- task files


@dataclass(frozen=True)
class TaskSizes:
    code_test: int = 24  # at most 34: the number of distinct small functions
    math_test: int = 60
    sft_train: int = 600
    sft_heldout: int = 80
    sft_math: int = 0  # chat word problems added to the SFT training rows (replay)


@dataclass(frozen=True)
class TaskFiles:
    mmlu: Path
    gsm8k: Path
    humaneval: Path
    sft_train: Path
    sft_heldout: Path
    exclude: frozenset[str]  # what the corpus must not contain


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from sfteval.fileio import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def held_animal_count(n_heldout: int) -> int:
    """Animals in the held-out split: every wording of every fact, `n_heldout` questions."""
    return -(-n_heldout // sum(len(QUESTIONS[r]) for r in RELATIONS))


def task_rows(sizes: TaskSizes, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Test items and SFT splits, deterministic given `seed`: the MC bank, math items
    the corpus never shows, and SFT held-out rows that never share an (instruction,
    input) with a training row."""
    rng = random.Random(seed * 1000 + 17)
    mc = mc_bank(seed)
    seen_q: set[str] = set()
    math: list[dict[str, Any]] = []
    while len(math) < sizes.math_test:
        it = math_item(rng)
        if it["question"] not in seen_q:
            seen_q.add(it["question"])
            math.append({"id": f"math{len(math)}", **it})
    code: list[dict[str, Any]] = []
    seen_code: set[str] = set()
    for _ in range(20_000):  # 34 distinct functions exist; stop when enough are found
        if len(code) >= sizes.code_test:
            break
        task = code_task(rng)
        if task["prompt"] not in seen_code:
            seen_code.add(task["prompt"])
            code.append({"task_id": f"demo/{len(code)}", **task})
    # Held-out: every wording of every fact of the held-out animals; train:
    # every wording of every fact of the others, cycled to the requested size. The
    # corpus states the facts of both (the base knows them); only train's are asked.
    train_animals, held_animals = split_animals(seed, held_animal_count(sizes.sft_heldout))
    held = [r for a in held_animals for rel in RELATIONS for r in question_rows([a], rng) if r["kind"] == rel][: sizes.sft_heldout]
    pool = question_rows(train_animals, rng)
    train = [pool[k % len(pool)] for k in range(sizes.sft_train)]
    # Replay: a share of chat-format word problems (never a test item) in the SFT mix, as
    # real SFT mixes keep general data; without it the tuned model's every chat reply is
    # one word and the math benchmark measures only that its format was lost.
    while sum(r["kind"] == "math" for r in train) < sizes.sft_math:
        it = math_item(rng)
        if it["question"] not in seen_q:
            train.append({"instruction": f"{it['question']}\n\n{MATH_INSTRUCTION}", "input": "", "output": it["answer"],
                          "kind": "math"})
    rng.shuffle(train)
    splits = {"sft_heldout": [{"id": f"h{k}", **r} for k, r in enumerate(held)],
              "sft_train": [{"id": f"t{k}", **r} for k, r in enumerate(train)]}
    return {"mmlu": mc, "gsm8k": math, "humaneval": code, **splits}


def write_task_files(out_dir: str | Path, sizes: TaskSizes = TaskSizes(), seed: int = 0) -> TaskFiles:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = task_rows(sizes, seed)
    paths = {name: out / f"{name}.jsonl" for name in rows}
    for name, r in rows.items():
        _write_jsonl(paths[name], r)
    exclude = frozenset(r["question"] for r in rows["gsm8k"])
    return TaskFiles(paths["mmlu"], paths["gsm8k"], paths["humaneval"], paths["sft_train"], paths["sft_heldout"], exclude)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-data")
    files = write_task_files(target)
    sample = corpus_docs(200, seed=0, exclude=files.exclude)
    (target / "corpus_sample.txt").write_text("\n".join(sample), encoding="utf-8")
    print(f"wrote {files.mmlu.parent}: {', '.join(p.name for p in files.__dict__.values() if isinstance(p, Path))}, corpus_sample.txt")
