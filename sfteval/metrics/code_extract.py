"""Turn a model's output into a program to test.

Completion mode: the prompt is a signature and docstring, the output continues it;
generation is cut at the first standard stop sequence (a new top-level def/class,
`if __name__`, `print(`, or a top-level comment), as in the Codex paper. Backends may
already stop there; cutting again is harmless.

Chat mode: the code is taken from the reply's fenced block (```python ... ```): the
block that defines the entry point, else the first Python (or unlabelled) block, else
the first block of any label. A fence left open (the reply hit max_new_tokens) counts
up to the end. Without any fence the whole reply is taken as code.

Not covered: replies that scatter one solution over several blocks (only one block is
used), and indented "fences" inside Markdown lists are read like top-level ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

COMPLETION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.DOTALL | re.MULTILINE)
_PY_LABELS = {"", "python", "py", "python3", "py3"}


def truncate_at_stops(text: str, stops: Sequence[str] = COMPLETION_STOPS) -> str:
    """`text` up to the earliest stop sequence (the stop itself excluded)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def code_blocks(reply: str) -> list[tuple[str, str]]:
    """(label, code) for each fenced block, in order."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(reply)]


def extract_code(reply: str, entry_point: str | None = None) -> str:
    """The code in a chat reply (see the module docstring for the choice rules)."""
    blocks = code_blocks(reply)
    if not blocks:
        return reply
    if entry_point:
        defines = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
        for label, code in blocks:
            if label in _PY_LABELS and defines.search(code):
                return code
    for label, code in blocks:
        if label in _PY_LABELS:
            return code
    return blocks[0][1]


def defines_function(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def chat_program(code_prompt: str, code: str, entry_point: str) -> str:
    """The program for a chat reply: the task prompt first (its imports and helpers),
    then the reply's code, which redefines the entry point when it contains a full
    function; a reply that only holds the body continues the prompt instead."""
    if defines_function(code, entry_point):
        # The prompt ends in the docstring, a complete body: it parses as it is.
        return code_prompt + "\n\n" + code
    return code_prompt + code
