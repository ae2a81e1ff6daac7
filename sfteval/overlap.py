"""Long n-gram overlap between texts and a training corpus (memorisation, contamination).

The rule (docs/compare-format.md, "Long n-gram overlap"): text is lower-cased and split
into words and punctuation; a text overlaps the corpus when at least SHARE of its
distinct 8-grams occur in the corpus, or it shares a run of RUN consecutive tokens
(equivalently, one RUN-gram) with it. Texts with fewer than 8 tokens never overlap.

How: every n-gram becomes a 64-bit hash (Python's string hash per token, combined
FNV-style in numpy), the corpus hashes are sorted once, and a query is a vectorised
`searchsorted`. Hash collisions are possible in principle (about 1 in 2**64 per pair)
and ignored. Hashes use Python's per-process string hash, so an index is only valid
inside the process that built it (it is never written to disk).

Not covered: fuzzy matches (paraphrase, renumbered variables), tokenizer-specific
splitting, and languages without spaces between words (their "words" are long runs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NGRAM = 8
SHARE = 0.5
RUN = 20
_TOKEN = re.compile(r"\w+|[^\w\s]")
_PRIME = np.uint64(1099511628211)  # FNV-1a 64-bit prime
_EMPTY = np.empty(0, dtype=np.uint64)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngram_hashes(toks: Sequence[str], n: int) -> np.ndarray:
    """One uint64 hash per n-gram of `toks` (empty when there are fewer than n tokens)."""
    if len(toks) < n:
        return _EMPTY
    x = np.fromiter((hash(t) for t in toks), dtype=np.int64, count=len(toks)).view(np.uint64)
    m = len(toks) - n + 1
    h = np.full(m, np.uint64(14695981039346656037))
    with np.errstate(over="ignore"):
        for j in range(n):
            h = (h ^ x[j : j + m]) * _PRIME
    return h


def common_hashes(texts: Sequence[str], n: int) -> np.ndarray:
    """Sorted hashes of the n-grams that occur in two or more of `texts`.

    Used to ignore what every prompt of a benchmark shares (few-shot exemplars,
    instructions, template text) so that only an item's own text is matched.
    """
    per_text = [np.unique(ngram_hashes(tokens(t), n)) for t in texts]
    if not per_text:
        return _EMPTY
    allh = np.concatenate(per_text)
    values, counts = np.unique(allh, return_counts=True)
    return values[counts >= 2]


@dataclass(frozen=True)
class Overlap:
    share: float  # fraction of the text's distinct n-grams found in the corpus
    run: bool  # shares a RUN-gram with the corpus
    doc: int | None  # index of the corpus document that matched the most n-grams
    ngrams: int  # distinct n-grams considered

    def flagged(self, share: float = SHARE) -> bool:
        return self.ngrams > 0 and (self.share >= share or self.run)


class _Index:
    """Sorted n-gram hashes of a corpus, with the first document each came from."""

    def __init__(self, docs: Sequence[Sequence[str]], n: int) -> None:
        parts = [ngram_hashes(toks, n) for toks in docs]
        owner = [np.full(p.size, k, dtype=np.int64) for k, p in enumerate(parts)]
        h = np.concatenate(parts) if parts else _EMPTY
        d = np.concatenate(owner) if owner else np.empty(0, dtype=np.int64)
        order = np.argsort(h, kind="stable")
        self.hashes, self.docs = h[order], d[order]

    def lookup(self, q: np.ndarray) -> np.ndarray:
        """Document index per query hash, -1 when the corpus lacks it."""
        if self.hashes.size == 0 or q.size == 0:
            return np.full(q.size, -1, dtype=np.int64)
        pos = np.searchsorted(self.hashes, q)
        pos_c = np.minimum(pos, self.hashes.size - 1)
        found = self.hashes[pos_c] == q
        return np.where(found, self.docs[pos_c], -1)


class OverlapIndex:
    """A corpus indexed for the long n-gram overlap rule."""

    def __init__(self, docs: Sequence[str], *, n: int = NGRAM, run: int = RUN) -> None:
        toks = [tokens(d) for d in docs]
        self.n, self.run_len, self.size = n, run, len(docs)
        self._short = _Index(toks, n)
        self._long = _Index(toks, run)

    def check(self, text: str, *, ignore: tuple[np.ndarray, np.ndarray] | None = None) -> Overlap:
        """Overlap of `text` with the corpus; `ignore` = (n-gram, run-gram) hashes to skip."""
        toks = tokens(text)
        short = np.unique(ngram_hashes(toks, self.n))
        long = np.unique(ngram_hashes(toks, self.run_len))
        if ignore is not None:
            short = short[~np.isin(short, ignore[0])]
            long = long[~np.isin(long, ignore[1])]
        if short.size == 0:
            return Overlap(0.0, False, None, 0)
        owners = self._short.lookup(short)
        hit = owners >= 0
        run = bool(np.any(self._long.lookup(long) >= 0))
        doc = int(np.bincount(owners[hit]).argmax()) if hit.any() else None
        return Overlap(float(hit.mean()), run, doc, int(short.size))
