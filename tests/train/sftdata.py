"""Tiny SFT data written by the tests themselves (no hub, no shared folder)."""

from __future__ import annotations

import json
import random
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def alpaca_rows(n: int, seed: int = 0) -> list[dict]:
    """Sums with answers of varied length, so batches need padding."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        rows.append(
            {
                "instruction": f"What is {a} + {b}?",
                "input": "Show your work." if i % 3 == 0 else "",
                "output": " ".join([f"{a} plus {b} is {a + b}."] * (1 + i % 4)),
            }
        )
    return rows
