"""Synthetic items the project writes itself, in the schemas of the real benchmarks.

No benchmark data is copied: word problems are generated from templates (GSM8K schema:
question, answer with reasoning and `#### N`), multiple-choice questions from
arithmetic, unit and capital-city facts (MMLU schema: question, subject, choices,
answer index), and instruction tasks with one right response (alpaca schema). All are
deterministic given the seed. They feed the `offline` suite, the tests and the demo.

    python -m sfteval.synthetic sfteval/catalog/data/offline     # regenerate the files
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kemal", "Lena"]
ITEMS = ["apples", "books", "marbles", "stickers", "pencils", "cookies", "stamps", "shells"]
CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa",
    "Egypt": "Cairo", "Norway": "Oslo", "India": "New Delhi", "Chile": "Santiago", "Spain": "Madrid",
    "Italy": "Rome", "Ghana": "Accra", "Poland": "Warsaw", "Cuba": "Havana", "Iran": "Tehran",
    "Greece": "Athens", "Sweden": "Stockholm", "Mexico": "Mexico City", "Turkey": "Ankara", "Nepal": "Kathmandu",
}
WORDS = ["river", "stone", "cloud", "maple", "ember", "violet", "harbor", "lantern", "meadow", "copper",
         "signal", "orbit", "canyon", "willow", "falcon", "prism", "thunder", "velvet", "glacier", "saffron"]


def word_problem(rng: random.Random) -> dict[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    form = rng.randrange(3)
    if form == 0:
        a, b, c = rng.randint(5, 60), rng.randint(2, 40), rng.randint(1, 20)
        s = a + b
        r = s - c
        q = f"{name} has {a} {item}. {name} gets {b} more and then gives away {c}. How many {item} does {name} have now?"
        ans = f"{name} starts with {a} {item}. After getting {b} more, {name} has {a} + {b} = <<{a}+{b}={s}>>{s}. After giving away {c}, {name} has {s} - {c} = <<{s}-{c}={r}>>{r}.\n#### {r}"
    elif form == 1:
        a, b = rng.randint(2, 12), rng.randint(2, 15)
        r = a * b
        q = f"A box holds {a} {item}. {name} buys {b} boxes. How many {item} does {name} buy in total?"
        ans = f"Each box holds {a} {item} and there are {b} boxes, so {name} buys {a} * {b} = <<{a}*{b}={r}>>{r} {item}.\n#### {r}"
    else:
        a, b, c = rng.randint(3, 25), rng.randint(2, 9), rng.randint(5, 50)
        r = a * b + c
        q = f"{name} earns ${a} an hour and works {b} hours. {name} also finds ${c}. How many dollars does {name} have?"
        ans = f"Working gives {a} * {b} = <<{a}*{b}={a * b}>>{a * b} dollars. Adding the {c} found gives {a * b} + {c} = <<{a * b}+{c}={r}>>{r}.\n#### {r}"
    return {"question": q, "answer": ans}


def _mc(question: str, right: str, wrong: list[str], subject: str, rng: random.Random) -> dict[str, Any]:
    choices = [right] + wrong[:3]
    rng.shuffle(choices)
    return {"question": question, "subject": subject, "choices": choices, "answer": choices.index(right)}


def mc_question(rng: random.Random, subject: str) -> dict[str, Any]:
    if subject == "elementary_arithmetic":
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        right = a + b
        wrong = [str(x) for x in rng.sample(sorted({right + d for d in (-3, -2, -1, 1, 2, 3, 10)} - {right}), 3)]
        return _mc(f"What is {a} + {b}?", str(right), wrong, subject, rng)
    if subject == "units":
        hours = rng.randint(2, 9)
        right = hours * 60
        wrong = [str(hours * 100), str(hours * 30), str(hours * 24)]
        return _mc(f"How many minutes are there in {hours} hours?", str(right), wrong, subject, rng)
    country = rng.choice(sorted(CAPITALS))
    others = [c for k, c in sorted(CAPITALS.items()) if k != country]
    return _mc(f"What is the capital of {country}?", CAPITALS[country], rng.sample(others, 3), subject, rng)


SUBJECTS = ("elementary_arithmetic", "units", "world_capitals")


def _instruction(rng: random.Random) -> tuple[str, str, str]:
    words = rng.sample(WORDS, rng.randint(3, 5))
    kind = rng.randrange(4)
    if kind == 0:
        return "Reverse the order of the words.", " ".join(words), " ".join(reversed(words))
    if kind == 1:
        return "Write the words in upper case.", " ".join(words), " ".join(w.upper() for w in words)
    if kind == 2:
        return "Sort the words alphabetically.", " ".join(words), " ".join(sorted(words))
    return "Give the first letter of each word.", " ".join(words), "".join(w[0] for w in words)


def instruction_task(rng: random.Random) -> dict[str, str]:
    instr, inp, out = _instruction(rng)
    return {"instruction": instr, "input": inp, "output": out}


def generate(make: Callable[[random.Random], dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make(rng) for _ in range(n)]


def offline_files(out_dir: Path) -> dict[str, int]:
    """Write the `offline` suite's data; returns row counts by file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[dict[str, Any]]] = {
        "gsm8k_test.jsonl": generate(word_problem, 30, seed=1),
        "gsm8k_train.jsonl": generate(word_problem, 16, seed=2),
        "mmlu_test.jsonl": [mc_question(random.Random(100 + i), SUBJECTS[i % 3]) for i in range(30)],
        "mmlu_dev.jsonl": [mc_question(random.Random(500 + i), SUBJECTS[i % 3]) for i in range(15)],
        "heldout.jsonl": [{"id": f"h{i}", **row} for i, row in enumerate(generate(instruction_task, 20, seed=3))],
    }
    for name, rows in files.items():
        (out_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {name: len(rows) for name, rows in files.items()}


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "sfteval/catalog/data/offline")
    print(offline_files(target))
