"""sfteval's generation phase on the vllm backend vs a bare `LLM.generate`, same prompts.

Peers: `vllm.LLM.generate` called directly on the prompts `sfteval run` built, with the
same SamplingParams, (1) as text with `tokenization_kwargs={"add_special_tokens": False}`
(what a user of vLLM writes; the same token ids, checked) and (2) pre-tokenized (the
tokenizing is NOT timed: a strict lower bound). Ours: the `generate_s` that the runner
records for the benchmark (tokenize, one engine call, map outputs). The scoring and
file writing that follow are reported separately (they are not generation).

Both share one engine (started once, warmed up), alternate per repeat, and the median
is reported. Prints: peer seconds, ours, ratio, overhead %. Goal: overhead < 5%.

On a shared, loaded machine the engine's own time swings by 2x between repeats, far
more than the 5% we look for, so the script also splits our generation phase into the
time spent inside `LLM.generate` and the time spent in sfteval's own code around it
(tokenizing, building SamplingParams, mapping outputs); that split, per repeat, is
the robust overhead figure.

    python perf/vllm_overhead.py [--model DIR] [--limit 256] [--max-new-tokens 64]

Data: the real GSM8K test split from ../shared/data/gsm8k when present (realistic
prompt lengths, 4-shot), else the project's offline items. Model: the tiny Llama
built on the spot unless --model is given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "gsm8k"


def bench_toml(folder: Path, shots: int, max_new: int) -> Path:
    if (SHARED / "test.jsonl").is_file():
        test, train = SHARED / "test.jsonl", SHARED / "train.jsonl"
    else:
        test, train = ROOT / "sfteval/catalog/data/offline/gsm8k_test.jsonl", ROOT / "sfteval/catalog/data/offline/gsm8k_train.jsonl"
    path = folder / "perf_gsm8k.toml"
    path.write_text(
        f'name = "perf_gsm8k"\nkind = "math"\n[data]\nlocal = "{test}"\nfewshot_local = "{train}"\n'
        f"[prompt]\nnum_fewshot = {shots}\nfewshot_seed = 1234\n"
        f'[generation]\nmax_new_tokens = {max_new}\ntemperature = 0.0\nstop = ["Question:", "</s>", "<|im_end|>"]\n'
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--limit", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from sfteval.backends.vllm import VLLMBackend, sampling_kwargs
    from sfteval.config import EngineSettings, RunConfig
    from sfteval.fileio import read_json, read_jsonl
    from sfteval.runner import execute_run
    from sfteval.tinymodel import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="sfteval-perf-"))
    model = args.model or str(build_tiny_model(tmp / "tiny"))
    toml = bench_toml(tmp, args.shots, args.max_new_tokens)
    engine = EngineSettings(dtype="float32", max_model_len=2048)
    t0 = time.perf_counter()
    backend = VLLMBackend(model, engine)
    startup = time.perf_counter() - t0

    engine_s: list[float] = []
    encode_s: list[float] = []
    real_generate, real_encode = backend.llm.generate, backend._encode

    def timed(fn, sink):  # split our generation phase into engine / tokenizer / the rest
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                sink.append(time.perf_counter() - t)

        return wrapper

    def ours(i: int) -> tuple[float, float, Path]:
        engine_s.clear()
        encode_s.clear()
        backend.llm.generate, backend._encode = timed(real_generate, engine_s), timed(real_encode, encode_s)
        cfg = RunConfig(checkpoint=model, benchmarks=(str(toml),), chat_template="off", limit=args.limit, out=str(tmp / f"out{i}"), engine=engine)
        t = time.perf_counter()
        try:
            run_dir = execute_run(cfg, backend=backend)
        finally:
            backend.llm.generate, backend._encode = real_generate, real_encode
        wall = time.perf_counter() - t
        return read_json(run_dir / "results.json")["benchmarks"]["perf_gsm8k"]["timing"]["generate_s"], wall, run_dir

    _, _, run_dir = ours(-1)  # warm-up; also yields the exact prompts sfteval sent
    rows = read_jsonl(run_dir / "samples" / "perf_gsm8k.jsonl")
    prompts = [r["prompt"] for r in rows]
    ids = [TokensPrompt(prompt_token_ids=list(x)) for x in backend.tok(prompts, add_special_tokens=False)["input_ids"]]
    from sfteval.benchmarks import load_spec

    sp = SamplingParams(**sampling_kwargs(load_spec(str(toml)).gen))
    no_bos = {"add_special_tokens": False}  # the prompts hold their BOS text already
    check = backend.llm.generate(prompts[:2], sp, use_tqdm=False, tokenization_kwargs=no_bos)
    assert [list(o.prompt_token_ids) for o in check] == [x["prompt_token_ids"] for x in ids[:2]], "peer sees other tokens"
    times: dict[str, list[float]] = {"text": [], "ids": [], "ours": [], "wall": [], "engine": [], "encode": []}
    for i in range(args.repeats):
        t = time.perf_counter()
        backend.llm.generate(prompts, sp, use_tqdm=False, tokenization_kwargs=no_bos)
        times["text"].append(time.perf_counter() - t)
        t = time.perf_counter()
        outs = backend.llm.generate(ids, sp, use_tqdm=False)
        times["ids"].append(time.perf_counter() - t)
        g, w, _ = ours(i)
        times["ours"].append(g)
        times["wall"].append(w)
        times["engine"].append(sum(engine_s))
        times["encode"].append(sum(encode_s))
    backend.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    rest = [g - e - c for g, e, c in zip(times["ours"], times["engine"], times["encode"])]
    ntok = sum(len(o.outputs[0].token_ids) for o in outs)
    plen = sum(len(x["prompt_token_ids"]) for x in ids) / len(ids)
    print(f"prompts: {len(prompts)} (mean {plen:.0f} prompt tokens), generated tokens: {ntok}, engine start-up {startup:.1f} s")
    print(f"{'what (median of ' + str(args.repeats) + ')':<52}{'s':>9}")
    print(f"{'peer: bare LLM.generate(text prompts)':<52}{med['text']:>9.3f}")
    print(f"{'peer: bare LLM.generate(token ids; tokenizing not timed)':<52}{med['ids']:>9.3f}")
    print(f"{'ours: sfteval run generation phase':<52}{med['ours']:>9.3f}")
    print(f"{'  of which inside LLM.generate':<52}{med['engine']:>9.3f}")
    print(f"{'  of which tokenizing the prompts':<52}{med['encode']:>9.3f}")
    print(f"{'  of which the rest of sfteval (params, mapping)':<52}{statistics.median(rest):>9.3f}")
    print(f"{'ours: whole execute_run (build+gen+score+write)':<52}{med['wall']:>9.3f}")
    print(f"ratio ours / bare(text) = {med['ours'] / med['text']:.3f}  (overhead {100 * (med['ours'] / med['text'] - 1):+.1f}%; goal < +5%)")
    print(f"ratio ours / bare(ids)  = {med['ours'] / med['ids']:.3f}")
    own = [100 * r / e for r, e in zip(rest, times["engine"])]
    print(f"sfteval's own code besides tokenizing: {statistics.median(own):.2f}% of the engine time (repeats {[round(x, 2) for x in own]})")
    print("all repeats (s): " + ", ".join(f"{k} {[round(x, 2) for x in v]}" for k, v in times.items()))


if __name__ == "__main__":  # vLLM spawns its engine process: the guard is required
    main()
