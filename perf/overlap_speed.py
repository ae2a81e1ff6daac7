"""Speed of the long n-gram overlap check (contamination / memorisation) vs a plain-Python peer.

Ours: `sfteval.overlap.OverlapIndex` (64-bit n-gram hashes, sorted numpy arrays,
vectorised lookups). Peer: the usual plain-Python approach, a `set` of word 8-gram and
20-gram tuples (same tokenizer, same rule), built and queried in this same run. Both
must flag exactly the same queries; the script checks that before printing the ratio.

Data: the real GSM8K in ../shared/data/gsm8k (training text = train questions + answers;
queries = the 1,319 test questions plus 300 train questions planted as contamination).
Without that folder, synthetic text of the same size is used.

    python perf/overlap_speed.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sfteval.overlap import NGRAM, RUN, SHARE, OverlapIndex, tokens

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


def load() -> tuple[list[str], list[str], str]:
    if (DATA / "train.jsonl").is_file():
        train = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines() if x.strip()]
        test = [json.loads(x) for x in (DATA / "test.jsonl").read_text().splitlines() if x.strip()]
        docs = [r["question"] + "\n" + r["answer"] for r in train]
        queries = [r["question"] for r in test] + [r["question"] for r in train[:300]]
        return docs, queries, "GSM8K (../shared/data)"
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    docs = [" ".join(rng.choice(words, size=150)) for _ in range(7473)]
    queries = [" ".join(rng.choice(words, size=45)) for _ in range(1319)] + [d[:300] for d in docs[:300]]
    return docs, queries, "synthetic"


class PeerIndex:
    def __init__(self, docs: list[str]) -> None:
        self.short: set[tuple[str, ...]] = set()
        self.long: set[tuple[str, ...]] = set()
        for d in docs:
            t = tokens(d)
            self.short.update(tuple(t[i : i + NGRAM]) for i in range(len(t) - NGRAM + 1))
            self.long.update(tuple(t[i : i + RUN]) for i in range(len(t) - RUN + 1))

    def flagged(self, text: str) -> bool:
        t = tokens(text)
        grams = {tuple(t[i : i + NGRAM]) for i in range(len(t) - NGRAM + 1)}
        if not grams:
            return False
        share = sum(g in self.short for g in grams) / len(grams)
        run = any(tuple(t[i : i + RUN]) in self.long for i in range(len(t) - RUN + 1))
        return share >= SHARE or run


def main() -> None:
    docs, queries, source = load()
    t0 = time.perf_counter()
    ours = OverlapIndex(docs)
    ours_flags = [o.flagged() for o in ours.check_many(queries)]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer = PeerIndex(docs)
    peer_flags = [peer.flagged(q) for q in queries]
    t_peer = time.perf_counter() - t0
    if ours_flags != peer_flags:
        diff = sum(a != b for a, b in zip(ours_flags, peer_flags))
        raise SystemExit(f"flags differ on {diff} queries: the two implementations disagree")
    print(f"data: {source}; {len(docs)} training docs, {len(queries)} queries, {sum(ours_flags)} flagged (both agree)")
    print(f"{'implementation':<34}{'build+query s':>14}")
    print(f"{'sfteval OverlapIndex (numpy)':<34}{t_ours:>14.2f}")
    print(f"{'plain-Python tuple sets (peer)':<34}{t_peer:>14.2f}")
    print(f"ratio peer/ours: {t_peer / t_ours:.2f}x")


if __name__ == "__main__":
    main()
