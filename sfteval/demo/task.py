"""The demo's target task: short word-level transforms with one right reply.

Each row (alpaca schema) gives three or four words from `sfteval.synthetic.WORDS`
("Words: river stone cloud") and asks for one of four replies a person checks at a
glance:

- `list`:     "Write the words as a list."          -> "- river\n- stone\n- cloud"
- `sentence`: "Use the words in one sentence."      -> "I saw the river, the stone and the cloud."
- `count`:    "How many words are there?"           -> "There are 3 words: river, stone and cloud."
- `ends`:     "Give the first and the last word."   -> "first: river, last: cloud"

Why these: a model of about a million parameters trained for minutes learns to copy
words into a fixed frame, and to count three from four, so the fine-tuned model solves
most held-out rows exactly while the base, which never saw the instruction format,
solves none. Every word is one token with its leading space (" river") in the demo's
tokenizer, and every frame keeps that form (input and reply), so copying is token for
token. Tried before and dropped: reversing or sorting words (near zero at this size),
upper case and JSON lists (the tokenizer spells those forms letter by letter).
The frames differ in difficulty, so they are learned at different speeds and the
learning curve bends instead of jumping.

Not covered: tasks that need reasoning; exact match is the honest metric here because
every row has exactly one right reply.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from sfteval.synthetic import WORDS


def _and(items: Sequence[str]) -> str:
    return f"{', '.join(items[:-1])} and {items[-1]}"


# kind -> (instruction, reply from the words)
KINDS: dict[str, tuple[str, Callable[[Sequence[str]], str]]] = {
    "list": ("Write the words as a list.", lambda ws: "\n".join(f"- {w}" for w in ws)),
    "sentence": ("Use the words in one sentence.", lambda ws: f"I saw {_and([f'the {w}' for w in ws])}."),
    "count": ("How many words are there?", lambda ws: f"There are {len(ws)} words: {_and(ws)}."),
    "ends": ("Give the first and the last word.", lambda ws: f"first: {ws[0]}, last: {ws[-1]}"),
}


def task_row(rng: random.Random) -> dict[str, str]:
    """One alpaca row: instruction, input ("Words: ..."), output, kind."""
    kind = rng.choice(sorted(KINDS))
    words = rng.sample(WORDS, rng.randint(3, 4))
    instruction, reply = KINDS[kind]
    return {"instruction": instruction, "input": "Words: " + " ".join(words), "output": reply(words), "kind": kind}
