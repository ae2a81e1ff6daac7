"""Long n-gram overlap between texts and a training corpus (memorisation, contamination).

The rule (docs/compare-format.md, "Long n-gram overlap"): text is lower-cased and split
into words and punctuation; a text overlaps the corpus when at least SHARE of its
distinct 8-grams occur in the corpus, or it shares a run of RUN consecutive tokens
(equivalently, one RUN-gram) with it. Texts with fewer than 8 tokens never overlap.

How: every n-gram becomes a 64-bit hash (Python's string hash per token, combined
FNV-style in numpy over all texts at once), the corpus hashes are sorted once, and a
batch of queries is one vectorised `searchsorted`. Hash collisions are possible in principle (about 1 in 2**64 per pair)
and ignored. Hashes use Python's per-process string hash, so an index is only valid
inside the process that built it (it is never written to disk).

Not covered: fuzzy matches (paraphrase, renumbered variables), tokenizer-specific
splitting, and languages without spaces between words (their "words" are long runs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain
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
    """Sorted hashes of the n-grams that occur in two or more of `texts`."""
    return _shared(_distinct(*batch_hashes([tokens(t) for t in texts], n))[0])


@dataclass(frozen=True)
class Overlap:
    share: float  # fraction of the text's distinct n-grams found in the corpus
    run: bool  # shares a RUN-gram with the corpus
    doc: int | None  # index of the corpus document that matched the most n-grams
    ngrams: int  # distinct n-grams considered

    def flagged(self, share: float = SHARE) -> bool:
        return self.ngrams > 0 and (self.share >= share or self.run)


Stream = tuple[np.ndarray, np.ndarray]  # (token hash, text index) for all texts, concatenated


def token_stream(token_lists: Sequence[Sequence[str]]) -> Stream:
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    total = int(lengths.sum())
    # map/chain iterate in C: several times faster than a generator expression here
    flat = np.fromiter(map(hash, chain.from_iterable(token_lists)), dtype=np.int64, count=total).view(np.uint64)
    return flat, np.repeat(np.arange(lengths.size), lengths)


def stream_ngrams(stream: Stream, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash, text index) for every n-gram of every text of the stream, in one vectorised pass.

    The n-grams that straddle two texts are dropped, so the hashes equal `ngram_hashes`
    of each text on its own.
    """
    flat, owner = stream
    m = flat.size - n + 1
    if m <= 0:
        return _EMPTY, np.empty(0, dtype=np.int64)
    h = np.full(m, np.uint64(14695981039346656037))
    with np.errstate(over="ignore"):
        for j in range(n):
            h = (h ^ flat[j : j + m]) * _PRIME
    inside = owner[:m] == owner[n - 1 :]
    return h[inside], owner[:m][inside]


def batch_hashes(token_lists: Sequence[Sequence[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    return stream_ngrams(token_stream(token_lists), n)


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constant: folds the text index into a hash


def _distinct(h: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated (text, hash) pairs: shares are over a text's distinct n-grams.

    One 64-bit key per pair (the hash with the text index folded in) and one `unique`
    instead of a two-key lexsort; two different pairs share a key with hash-collision odds.
    """
    if h.size == 0:
        return h, q
    with np.errstate(over="ignore"):
        key = h ^ ((q.astype(np.uint64) + np.uint64(1)) * _MIX)
    order = np.argsort(key)  # any representative of a repeated key will do: no stable sort
    k = key[order]
    pick = order[np.concatenate(([True], k[1:] != k[:-1]))]
    return h[pick], q[pick]


def _shared(h: np.ndarray) -> np.ndarray:
    """Sorted hashes present in two or more texts (`h` already distinct per text)."""
    values, counts = np.unique(h, return_counts=True)
    return values[counts >= 2]


class _Index:
    """Sorted n-gram hashes of a corpus, with the first document each came from."""

    def __init__(self, stream: Stream, n: int) -> None:
        h, d = stream_ngrams(stream, n)
        order = np.argsort(h, kind="stable")
        self.hashes, self.docs = h[order], d[order]

    def lookup(self, q: np.ndarray) -> np.ndarray:
        """Document index per query hash, -1 when the corpus lacks it."""
        if self.hashes.size == 0 or q.size == 0:
            return np.full(q.size, -1, dtype=np.int64)
        # sorted queries walk the corpus array in order: far fewer cache misses than random ones
        order = np.argsort(q)
        pos = np.empty(q.size, dtype=np.int64)
        pos[order] = np.searchsorted(self.hashes, q[order])
        pos = np.minimum(pos, self.hashes.size - 1)
        return np.where(self.hashes[pos] == q, self.docs[pos], -1)


def _best_doc(q: np.ndarray, owners: np.ndarray, ndocs: int, nq: int) -> np.ndarray:
    """Per query, the document matching the most n-grams (lowest index on ties), -1 if none."""
    out = np.full(nq, -1, dtype=np.int64)
    if q.size == 0:
        return out
    keys, counts = np.unique(q * max(ndocs, 1) + owners, return_counts=True)
    qs, ds = keys // max(ndocs, 1), keys % max(ndocs, 1)
    order = np.lexsort((ds, -counts, qs))
    qs, ds = qs[order], ds[order]
    first = np.concatenate(([True], qs[1:] != qs[:-1]))
    out[qs[first]] = ds[first]
    return out


class OverlapIndex:
    """A corpus indexed for the long n-gram overlap rule."""

    def __init__(self, docs: Sequence[str], *, n: int = NGRAM, run: int = RUN) -> None:
        stream = token_stream([tokens(d) for d in docs])
        self.n, self.run_len, self.size = n, run, len(docs)
        self._short = _Index(stream, n)
        self._long = _Index(stream, run)

    def check_many(self, texts: Sequence[str], *, ignore_shared: bool = False) -> list[Overlap]:
        """Overlap of each text with the corpus.

        `ignore_shared`: skip the n-grams that two or more of `texts` share, so that only
        each text's own words count (what every prompt of a benchmark repeats: few-shot
        exemplars, instructions, template).
        """
        nq = len(texts)
        stream = token_stream([tokens(t) for t in texts])
        sh, sq = _distinct(*stream_ngrams(stream, self.n))
        lh, lq = _distinct(*stream_ngrams(stream, self.run_len))
        if ignore_shared:
            keep_s = ~np.isin(sh, _shared(sh), assume_unique=False)
            keep_l = ~np.isin(lh, _shared(lh), assume_unique=False)
            sh, sq, lh, lq = sh[keep_s], sq[keep_s], lh[keep_l], lq[keep_l]
        owners = self._short.lookup(sh)
        hit = owners >= 0
        total = np.bincount(sq, minlength=nq)
        hits = np.bincount(sq[hit], minlength=nq)
        runs = np.bincount(lq[self._long.lookup(lh) >= 0], minlength=nq) > 0
        docs = _best_doc(sq[hit], owners[hit], self.size, nq)
        return [
            Overlap(float(hits[i] / total[i]) if total[i] else 0.0, bool(runs[i]) and bool(total[i]),
                    int(docs[i]) if docs[i] >= 0 else None, int(total[i]))
            for i in range(nq)
        ]

    def check(self, text: str) -> Overlap:
        return self.check_many([text])[0]
