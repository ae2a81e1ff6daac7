"""The demo's target task: answer, in a chat, a question about a fact the base model read.

The demo's world has `ANIMALS`, each with a colour and a home (`FACTS`, fixed for every
seed). The pretraining corpus states every fact in plain sentences, in several wordings
("The fox is green.", "The colour of the fox is green.", "The fox lives in the cave.")
(`fact_doc`), and, like the FAQ pages of a web corpus, has plain-text questions answered
in a word ("Question: What colour is the fox?\nAnswer: green") about the training split's
animals only (`qa_doc`). The SFT task asks the same kind of question in a chat ("What
colour is the fox?" -> "green"); the held-out split asks only about the other animals,
which no text ever asks about, in the corpus or in SFT.

So the base holds every answer but has never answered in a chat (asked there, it
rambles in the formats it saw), and what fine-tuning teaches is the format: answering a
chat question with a fact it already holds. On held-out animals the tuned model can only
be right by reading the fact out of its pretrained weights, so a rising held-out exact
match means the format was learned, not the rows. Every reply is one word: exact match
is the honest metric (one right reply per row).

Tried before and dropped: word-level transforms (lists, sentences, first/last word of
the input) need the model to copy words from its prompt, which a model of about a
million parameters pretrained for minutes does not learn (held-out exact match 0 at
every checkpoint; rougeL 0.45). Declarative facts alone (no question in pretraining):
the tuned model memorised the training questions (train exact match 0.5) and stayed at
chance on held-out animals (0.05-0.23), as Allen-Zhu & Li (Physics of LMs 3.1) found for
knowledge extraction without question-answer text in pretraining. A third relation
(food) was learned less well in the time (stem completion 0.25-0.48) and was dropped.
Sentence replies that name the fact but not the animal ("It is green.", in the corpus's
Q&A text and in SFT alike): held-out exact match 0.08-0.18 at every checkpoint (the
fact has to be recalled several tokens after the question; the one-word reply recalls
it at once).

The held-out split asks each fact in every wording (two questions per fact), so the
sweep's select half and the report half can hold the same fact in two wordings: the
halves are not fully independent (sfteval.selection splits by item id, not by fact), and
the report half's CI counts 41 items where about 30 facts stand behind them. Measured
(the demo, kept step 175): report-half items whose twin is in the select half 12 of 21
right, the others 18 of 20: the shared facts did not lift the report half.

Not covered: questions whose answer is not a single stored fact (reasoning).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# One-syllable animals (each one token with its leading space in the demo's tokenizer).
ANIMALS: tuple[str, ...] = (
    "fox", "owl", "bear", "wolf", "deer", "hare", "crow", "frog", "mole", "seal", "swan", "crab",
    "toad", "lark", "newt", "goat", "lamb", "duck", "moth", "wasp", "bee", "eel", "yak", "ram",
    "cat", "dog", "pig", "cow", "hen", "bat", "ant", "rat", "ape", "elk", "emu", "gnu",
    "ox", "jay", "kite", "hawk", "dove", "wren", "snail", "slug", "shark", "whale", "squid", "trout",
    "pike", "carp", "tern", "gull", "lynx", "mink", "stoat", "boar", "colt", "mare", "bull", "fawn",
)
COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "black", "white", "brown", "grey")
HOMES: tuple[str, ...] = ("forest", "river", "hill", "cave", "field", "lake", "marsh", "desert")
RELATIONS: tuple[str, ...] = ("colour", "home")

# relation -> the question wordings (SFT asks in any of them; held-out too)
QUESTIONS: dict[str, tuple[str, ...]] = {
    "colour": ("What colour is the {a}?", "What is the colour of the {a}?"),
    "home": ("Where does the {a} live?", "What is the home of the {a}?"),
}


def _facts() -> dict[str, dict[str, str]]:
    """animal -> relation -> value; one fixed world (not seeded: the seed picks splits)."""
    rng = random.Random("sfteval-demo-world")
    return {a: {"colour": rng.choice(COLOURS), "home": rng.choice(HOMES)} for a in ANIMALS}


FACTS: dict[str, dict[str, str]] = _facts()


def fact_sentence(rng: random.Random, animal: str, relation: str) -> str:
    """One fact in one of several declarative wordings (never a question)."""
    v = FACTS[animal][relation]
    forms = {
        "colour": (f"The {animal} is {v}.", f"The colour of the {animal} is {v}.", f"Every {animal} is {v}."),
        "home": (f"The {animal} lives in the {v}.", f"The home of the {animal} is the {v}.",
                 f"You find the {animal} in the {v}."),
    }[relation]
    return rng.choice(forms)


def fact_doc(rng: random.Random) -> str:
    """A few facts about two or three animals, in random order and wording."""
    animals = rng.sample(ANIMALS, rng.randint(2, 3))
    pairs = [(a, r) for a in animals for r in rng.sample(RELATIONS, rng.randint(1, len(RELATIONS)))]
    rng.shuffle(pairs)
    return " ".join(fact_sentence(rng, a, r) for a, r in pairs)


def qa_doc(rng: random.Random, animals: Sequence[str]) -> str:
    """Plain-text questions answered in a word ("Question: What colour is the fox?\nAnswer:
    green"), about `animals` only (the training split's): text of the kind a web corpus
    has (FAQ pages), in the corpus's Question/Answer format, never a chat."""
    picks = [(rng.choice(animals), rng.choice(RELATIONS)) for _ in range(rng.randint(2, 4))]
    return "".join(f"Question: {rng.choice(QUESTIONS[r]).format(a=a)}\nAnswer: {FACTS[a][r]}\n\n" for a, r in picks)


def split_animals(seed: int, n_heldout: int) -> tuple[list[str], list[str]]:
    """(train animals, held-out animals): disjoint, chosen by the seed."""
    animals = list(ANIMALS)
    random.Random(seed * 7919 + 3).shuffle(animals)
    return sorted(animals[n_heldout:]), sorted(animals[:n_heldout])


def question_rows(animals: Sequence[str], rng: random.Random) -> list[dict[str, str]]:
    """Every (animal, relation, wording) question as an alpaca row, shuffled."""
    rows = [{"instruction": q.format(a=a), "input": "", "output": FACTS[a][r], "kind": r}
            for a in animals for r in RELATIONS for q in QUESTIONS[r]]
    rng.shuffle(rows)
    return rows
