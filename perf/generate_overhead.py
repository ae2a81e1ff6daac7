"""GSM8K-style generation: the overhead of sfteval's `hf` backend over a plain batched
`model.generate` loop on the same prompts and settings.

Prompts: the real GSM8K test questions with 8-shot exemplars from the real train split
when `../shared/data/gsm8k/` is present (realistic prompt lengths), else generated word
problems in the GSM8K schema (`sfteval.synthetic`). They are built by sfteval's `math`
kind from a local benchmark TOML (plain prompts, no chat template), and both sides get
exactly those strings.

Both sides run in one process on one loaded model (same weights, same threads) and
alternate, so drift on a shared machine hits both:
  - sfteval: `HFBackend.generate(requests)` (what `sfteval run` calls per chunk);
  - plain:   batches of the same size, left-padded by the tokenizer, `model.generate(
             do_sample=False, max_new_tokens, stop_strings, eos/pad ids)`, batch_decode;
             once in data order (what a user writes) and once in sfteval's
             longest-first order (identical batches: the pure overhead).
Then one real `sfteval run` subprocess reports results.json `timing.generate_s` (it
includes the lazy model load) next to the time inside `HFBackend.generate`.
`--profile` adds a cProfile of one sfteval call, with the time in sfteval's own code.

    python perf/generate_overhead.py                     # tiny model, 64 questions
    python perf/generate_overhead.py --model medium --limit 32 --max-new-tokens 128

Not covered: sampling (n > 1), GPUs, chat prompts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
STOP = ["Question:", "</s>", "<|im_end|>"]  # benchmarks/gsm8k.toml
MODELS = {
    "tiny": {"max_position_embeddings": 4096},  # 8-shot prompts are ~2.9k tokens with its 1k-vocab BPE
    "medium": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "intermediate_size": 1376, "max_position_embeddings": 4096},
}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def write_benchmark(work: Path, args: argparse.Namespace) -> tuple[Path, str]:
    test, train = SHARED_GSM8K / "test.jsonl", SHARED_GSM8K / "train.jsonl"
    if test.is_file() and train.is_file():
        source = f"real GSM8K ({test.parent})"
    else:
        from sfteval.synthetic import generate, word_problem

        test, train = work / "test.jsonl", work / "train.jsonl"
        for path, n, seed in ((test, args.limit, 1), (train, 64, 2)):
            path.write_text("".join(json.dumps(r) + "\n" for r in generate(word_problem, n, seed)), encoding="utf-8")
        source = "synthetic GSM8K-schema word problems (no ../shared/data/gsm8k)"
    toml = work / "perf_gsm8k.toml"
    toml.write_text(
        "\n".join(
            [
                'name = "perf_gsm8k"',
                'kind = "math"',
                "[data]",
                f"local = {json.dumps(str(test))}",
                f"fewshot_local = {json.dumps(str(train))}",
                "[prompt]",
                f"num_fewshot = {args.shots}",
                "fewshot_seed = 1234",
                "[generation]",
                f"max_new_tokens = {args.max_new_tokens}",
                "temperature = 0.0",
                f"stop = {json.dumps(STOP)}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return toml, source


def plain_generate(model: Any, tok: Any, prompts: list[str], bs: int, max_new: int, eos: list[int], pad: int) -> list[str]:
    """What a user writes: batches in the given order, tokenizer padding, model.generate."""
    import torch

    texts: list[str] = []
    for start in range(0, len(prompts), bs):
        enc = tok(prompts[start : start + bs], add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **enc, max_new_tokens=max_new, do_sample=False, temperature=None, top_p=None, top_k=None,
                stop_strings=STOP, tokenizer=tok, eos_token_id=eos, pad_token_id=pad,
            )
        texts += tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return texts


def _cut(text: str) -> str:
    cut = min((p for p in (text.find(s) for s in STOP) if p >= 0), default=-1)
    return text[:cut] if cut >= 0 else text


def in_process(model_path: Path, toml: Path, args: argparse.Namespace) -> dict[str, Any]:
    from sfteval.backends.hf import HFBackend
    from sfteval.benchmarks import load_spec
    from sfteval.config import EngineSettings
    from sfteval.kinds import BuildContext, get_kind
    from sfteval.prompts import make_renderer

    backend = HFBackend(str(model_path), EngineSettings(dtype="float32", batch_size=args.batch_size))
    spec = load_spec(str(toml))
    built = get_kind("math").build(spec, BuildContext(make_renderer(backend.tokenizer, "off"), limit=args.limit))
    reqs = [s.request for s in built.samples]
    prompts = [s.prompt for s in built.samples]
    tok, model = backend.tokenizer, backend.model
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    longest_first = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # sfteval's batch order
    print(f"{len(prompts)} prompts, {min(lengths)}-{max(lengths)} tokens (mean {statistics.mean(lengths):.0f}), "
          f"batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, greedy, stop {STOP}", flush=True)

    def run_sfteval() -> list[str]:
        return [g.texts[0] for g in backend.generate(reqs)]

    def run_plain_data_order() -> list[str]:
        return plain_generate(model, tok, prompts, args.batch_size, args.max_new_tokens, backend.eos, backend.pad_id)

    def run_plain_same_batches() -> list[str]:
        texts = plain_generate(model, tok, [prompts[i] for i in longest_first], args.batch_size, args.max_new_tokens, backend.eos, backend.pad_id)
        out = [""] * len(prompts)
        for i, t in zip(longest_first, texts):
            out[i] = t
        return out

    sides = {"sfteval": run_sfteval, "plain (same batches)": run_plain_same_batches, "plain (data order)": run_plain_data_order}
    # Warm-up: first calls pay one-off costs (allocator, kernels, stop-string tables).
    backend.generate(reqs[: args.batch_size][:2])
    plain_generate(model, tok, prompts[:2], 2, 4, backend.eos, backend.pad_id)
    times: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    outputs: dict[str, list[str]] = {}
    names = list(sides)
    for rep in range(args.repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:  # rotate the order
            t0, c0 = time.perf_counter(), time.process_time()
            outputs[name] = sides[name]()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            print(f"  rep {rep} {name:22s} wall {times[name][-1]:7.2f}s  cpu {cpu[name][-1]:7.2f}s", flush=True)
    same = {k: sum(_cut(a) == b for a, b in zip(outputs[k], outputs["sfteval"])) for k in sides if k != "sfteval"}
    profile = profile_sfteval(backend, reqs) if args.profile else None
    backend.close()
    return {"times": times, "cpu": cpu, "same_output": same, "n": len(prompts), "lengths": lengths, "profile": profile}


def profile_sfteval(backend: Any, reqs: list[Any]) -> str:
    prof = cProfile.Profile()
    prof.enable()
    backend.generate(reqs)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    total = stats.total_tt  # type: ignore[attr-defined]
    own = {f"{Path(f).name}:{line}:{fn}": (tt, ct) for (f, line, fn), (_, _, tt, ct, _) in stats.stats.items() if "sfteval" in f}  # type: ignore[attr-defined]
    buf.write(f"total {total:.2f}s; own time in sfteval code {sum(t for t, _ in own.values()):.3f}s "
              "(own = tottime; cumulative includes what it calls, e.g. model.generate):\n")
    for k, (tt, ct) in sorted(own.items(), key=lambda kv: -kv[1][1])[:10]:
        buf.write(f"  own {tt:8.4f}s  cumulative {ct:8.3f}s  {k}\n")
    stats.sort_stats("tottime").print_stats(12)
    return buf.getvalue()


def cli_run(model_path: Path, toml: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One real `sfteval run`, with HFBackend.generate timed from inside the child."""
    out = work / "cli_out"
    code = (
        "import atexit, json, sys, time\n"
        "from sfteval.backends.hf import HFBackend\n"
        "acc = {'generate': 0.0, 'load': 0.0}\n"
        "def timed(name, key):\n"
        "    inner = getattr(HFBackend, name)\n"
        "    def w(self, *a, **k):\n"
        "        t = time.perf_counter()\n"
        "        try: return inner(self, *a, **k)\n"
        "        finally: acc[key] += time.perf_counter() - t\n"
        "    setattr(HFBackend, name, w)\n"
        "timed('generate', 'generate'); timed('__init__', 'load')\n"
        f"atexit.register(lambda: open({json.dumps(str(work / 'cli_phase.json'))}, 'w').write(json.dumps(acc)))\n"
        "from sfteval.cli import main\n"
        "sys.argv = ['sfteval'] + sys.argv[1:]\n"
        "main()\n"
    )
    argv = ["run", str(model_path), "-b", str(toml), "--backend", "hf", "--chat-template", "off", "--dtype", "float32",
            "--batch-size", str(args.batch_size), "--limit", str(args.limit), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *argv], env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"sfteval run failed ({proc.returncode})")
    (results,) = out.glob("runs/*/results.json")
    timing = json.loads(results.read_text())["benchmarks"]["perf_gsm8k"]["timing"]
    phase = json.loads((work / "cli_phase.json").read_text())
    return {"wall_s": wall, "timing": timing, "inside_generate_s": phase["generate"], "model_load_s": phase["load"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny | medium (built here) | a checkpoint folder")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--shots", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile one sfteval call")
    ap.add_argument("--no-cli", action="store_true", help="skip the `sfteval run` subprocess")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    os.environ.update(OFFLINE_ENV)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the `sfteval run` child too
    work = Path(args.work or tempfile.mkdtemp(prefix="sfteval_perf_gen_"))
    work.mkdir(parents=True, exist_ok=True)
    toml, source = write_benchmark(work, args)
    if args.model in MODELS:
        from sfteval.tinymodel import TinySpec, build_tiny_model

        model_path = build_tiny_model(work / f"model_{args.model}", TinySpec(**MODELS[args.model]))
    else:
        model_path = Path(args.model)
    print(f"work folder: {work}\ndata: {source}\nmodel: {args.model} ({model_path})", flush=True)
    res = in_process(model_path, toml, args)
    cli = None if args.no_cli else cli_run(model_path, toml, work, args)

    # On a shared machine the least-disturbed run (the minimum) is the best estimate of
    # each side's own cost; medians are shown too, and CPU seconds beside wall seconds.
    best = {k: min(v) for k, v in res["times"].items()}
    med = {k: statistics.median(v) for k, v in res["times"].items()}
    cpu = {k: min(v) for k, v in res["cpu"].items()}
    base = "plain (same batches)"
    print(f"\n| side | wall min of {args.repeats} (s) | wall median (s) | CPU min (s) | wall vs plain, same batches "
          f"| CPU vs plain, same batches | same output as sfteval |")
    print("|---|---|---|---|---|---|---|")
    for k in best:
        same = "-" if k == "sfteval" else f"{res['same_output'][k]}/{res['n']}"
        print(f"| {k} | {best[k]:.2f} | {med[k]:.2f} | {cpu[k]:.2f} | {100 * (best[k] / best[base] - 1):+.1f}% "
              f"| {100 * (cpu[k] / cpu[base] - 1):+.1f}% | {same} |")
    print(f"\nsfteval overhead over a plain loop with the same batches: wall {100 * (best['sfteval'] / best[base] - 1):+.1f}%, "
          f"CPU {100 * (cpu['sfteval'] / cpu[base] - 1):+.1f}% (vs a plain loop in data order: wall "
          f"{100 * (best['sfteval'] / best['plain (data order)'] - 1):+.1f}%)")
    if cli:
        print(f"sfteval run (subprocess): wall {cli['wall_s']:.1f}s; results.json timing.generate_s "
              f"{cli['timing']['generate_s']:.2f}s = model load {cli['model_load_s']:.2f}s (lazy, inside the first chunk) "
              f"+ HFBackend.generate {cli['inside_generate_s']:.2f}s + the rest")
    if res["profile"]:
        print("\n" + res["profile"])
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "source": source, **res, "median": med, "cli": cli}, indent=2, default=str))


if __name__ == "__main__":
    main()
