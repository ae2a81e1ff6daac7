"""Paired bootstrap of corpus BLEU: sfteval vs sacrebleu's own paired bootstrap test.

Peer: `sacrebleu.significance.PairedTest(test_type="bs")` (what `sacrebleu --paired-bs`
runs: index resampling, one sacrebleu score per resample per system). Ours:
`sfteval.metrics.text.paired_corpus_bleu` (item-count resampling of the same sufficient
statistics, vectorised; the statistics are extracted once). Both score the same
synthetic corpus (base and tuned hypotheses against one reference each); the script
prints seconds for B resamples at several corpus sizes, the ratio, and both p-values
(they estimate the same test, so they should agree to bootstrap noise).

    python perf/bleu_bootstrap.py [--resamples 1000] [--sizes 200,1319,5000]
"""

from __future__ import annotations

import argparse
import random
import time

WORDS = ("the a cat dog sat ran on under mat roof far near away quickly slowly and then so it was "
         "big small red blue green one two three").split()


def corpus(n: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(n)]

    def noisy(r: str, keep: float) -> str:
        return " ".join(w if rng.random() < keep else rng.choice(WORDS) for w in r.split())

    return refs, [noisy(r, 0.7) for r in refs], [noisy(r, 0.66) for r in refs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--sizes", default="200,1319,5000")
    args = ap.parse_args()
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    from sfteval.metrics.text import paired_corpus_bleu

    paired_corpus_bleu(["a b"] * 3, ["a c"] * 3, ["a b"] * 3, seed=0, resamples=10)  # imports (scipy) out of the timing

    from sfteval.metrics.text import bleu_statistics

    print(f"B = {args.resamples} paired resamples; seconds. Both tokenise the two systems once (`extract`, "
          "sacrebleu's own code either way); `resampling` = total - extract")
    print(f"{'n':>7}{'extract':>9}{'sacrebleu':>11}{'sfteval':>9}{'ratio':>7}{'resampling ratio':>18}"
          f"{'p sacrebleu':>13}{'p sfteval':>11}")
    for n in (int(x) for x in args.sizes.split(",")):
        refs, base, tuned = corpus(n, n)
        t0 = time.perf_counter()
        bleu_statistics(base, refs)
        bleu_statistics(tuned, refs)
        t_extract = time.perf_counter() - t0
        t0 = time.perf_counter()
        test = PairedTest([("baseline", base), ("tuned", tuned)], {"BLEU": BLEU()}, [refs], test_type="bs",
                          n_samples=args.resamples)
        _, scores = test()
        t_peer = time.perf_counter() - t0
        p_peer = scores["BLEU"][1].p_value
        t0 = time.perf_counter()
        ours = paired_corpus_bleu(base, tuned, refs, seed=0, resamples=args.resamples)
        t_ours = time.perf_counter() - t0
        rs_peer, rs_ours = max(t_peer - t_extract, 1e-3), max(t_ours - t_extract, 1e-3)
        print(f"{n:>7}{t_extract:>9.2f}{t_peer:>11.2f}{t_ours:>9.2f}{t_peer / t_ours:>7.1f}{rs_peer / rs_ours:>18.1f}"
              f"{p_peer:>13.4f}{ours['p_value']:>11.4f}", flush=True)


if __name__ == "__main__":
    main()
