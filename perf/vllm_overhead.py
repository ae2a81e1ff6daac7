"""sfteval's generation phase on the vllm backend vs a bare `LLM.generate`, same prompts.

Peer: `vllm.LLM.generate` called directly on the prompts `sfteval run` built, already
tokenized (the tokenization is NOT timed for the peer, so the peer is the strict
lower bound), with the same SamplingParams. Ours: the `generate_s` that the runner
records for the benchmark (tokenize, one engine call, map outputs). The scoring and
file writing that follow are reported separately (they are not generation).

Both share one engine (started once, warmed up), alternate per repeat, and the median
is reported. Prints: peer seconds, ours, ratio, overhead %. Goal: overhead < 5%.

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
        test, train = ROOT / "benchmarks/data/offline/gsm8k_test.jsonl", ROOT / "benchmarks/data/offline/gsm8k_train.jsonl"
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

    def ours(i: int) -> tuple[float, float, Path]:
        cfg = RunConfig(checkpoint=model, benchmarks=(str(toml),), chat_template="off", limit=args.limit, out=str(tmp / f"out{i}"), engine=engine)
        t = time.perf_counter()
        run_dir = execute_run(cfg, backend=backend)
        wall = time.perf_counter() - t
        return read_json(run_dir / "results.json")["benchmarks"]["perf_gsm8k"]["timing"]["generate_s"], wall, run_dir

    _, _, run_dir = ours(-1)  # warm-up; also yields the exact prompts sfteval sent
    rows = read_jsonl(run_dir / "samples" / "perf_gsm8k.jsonl")
    prompts = [r["prompt"] for r in rows]
    ids = [TokensPrompt(prompt_token_ids=list(x)) for x in backend.tok(prompts, add_special_tokens=False)["input_ids"]]
    from sfteval.benchmarks import load_spec

    sp = SamplingParams(**sampling_kwargs(load_spec(str(toml)).gen))
    peer, mine, walls = [], [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        outs = backend.llm.generate(ids, sp, use_tqdm=False)
        peer.append(time.perf_counter() - t)
        g, w, _ = ours(i)
        mine.append(g)
        walls.append(w)
    backend.close()
    p, m, w = statistics.median(peer), statistics.median(mine), statistics.median(walls)
    ntok = sum(len(o.outputs[0].token_ids) for o in outs)
    plen = sum(len(x["prompt_token_ids"]) for x in ids) / len(ids)
    print(f"prompts: {len(prompts)} (mean {plen:.0f} prompt tokens), generated tokens: {ntok}, engine start-up {startup:.1f} s")
    print(f"{'what':<44}{'median s':>10}")
    print(f"{'peer: bare LLM.generate (pre-tokenized)':<44}{p:>10.3f}")
    print(f"{'ours: sfteval run generation phase':<44}{m:>10.3f}")
    print(f"{'ours: whole execute_run (build+gen+score+write)':<44}{w:>10.3f}")
    print(f"ratio ours/peer = {m / p:.3f}  (overhead {100 * (m / p - 1):+.1f}%; goal < +5%)")
    print(f"all repeats: peer {[round(x, 3) for x in peer]}, ours {[round(x, 3) for x in mine]}")


if __name__ == "__main__":  # vLLM spawns its engine process: the guard is required
    main()
