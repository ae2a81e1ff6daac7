"""OpenAIBackend against a small fake OpenAI-compatible server on 127.0.0.1 (no vLLM).

The fake "model" is character-level: each character of the prompt is a token, its
log-prob is a fixed function of the character, and a character is the argmax when it
is a vowel. Generation echoes the prompt's last character `max_tokens` times.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sfteval.backends.openai import (
    HttpClient,
    HttpSettings,
    OpenAIBackend,
    map_finish,
    plan_batches,
)
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import GenParams, GenRequest, LoglikRequest


def char_lp(ch: str) -> float:
    return -0.1 * (ord(ch) % 7 + 1)


class FakeState:
    def __init__(self) -> None:
        self.fail_next = 0  # answer 503 this many times first
        self.echo_supported = True
        self.send_stop_reason = True
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()


def make_handler(state: FakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def _send(self, code: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.headers.append(dict(self.headers.items()))
            if self.path == "/v1/models":
                self._send(200, {"data": [{"id": "fake-model"}]})
            else:
                self._send(404, {"error": {"message": "no such route"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.bodies.append(body)
                if state.fail_next > 0:
                    state.fail_next -= 1
                    self._send(503, {"error": {"message": "warming up"}})
                    return
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                time.sleep(state.delay)
                if body.get("model") != "fake-model":
                    self._send(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
                elif self.path == "/v1/completions":
                    self._send(200, self.completion(body))
                elif self.path == "/v1/chat/completions":
                    text = body["messages"][-1]["content"][-1] * body["max_tokens"]
                    self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}]})
                else:
                    self._send(404, {"error": {"message": "no such route"}})
            finally:
                with state.lock:
                    state.in_flight -= 1

        def completion(self, body: dict[str, Any]) -> dict[str, Any]:
            prompt = body["prompt"]
            if body.get("echo") and isinstance(prompt, list):  # several prompts: one choice each
                outs = [self.completion({**body, "prompt": p})["choices"][0] for p in prompt]
                return {"choices": [{**c, "index": i} for i, c in enumerate(outs)]}
            if isinstance(prompt, list) and not body.get("echo"):  # several prompts: n choices each, in order
                parts = [self.completion({**body, "prompt": q}) for q in prompt]
                n = body.get("n", 1)
                choices = [{**c, "index": k * n + c["index"]} for k, part in enumerate(parts) for c in part["choices"]]
                if body.get("return_token_ids"):
                    for c in choices:
                        c["token_ids"] = list(range(len(c["text"])))
                return {"choices": choices[::-1], "usage": {"completion_tokens": sum(p["usage"]["completion_tokens"] for p in parts)}}
            if body.get("echo"):
                if not state.echo_supported:
                    return {"choices": [{"index": 0, "text": prompt + "x", "logprobs": None, "finish_reason": "length"}]}
                toks = list(prompt) + ["x"]
                lps = [None] + [char_lp(c) for c in toks[1:]]
                tops = [None] + [{c: (char_lp(c) if c in "aeiou" else 0.0)} for c in toks[1:]]
                return {"choices": [{"index": 0, "text": prompt + "x", "finish_reason": "length",
                                     "logprobs": {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops,
                                                  "text_offset": list(range(len(toks)))}}]}
            choices = []
            for i in range(body.get("n", 1)):
                text = prompt[-1] * body["max_tokens"]
                stop = body.get("stop") or []
                choice: dict[str, Any] = {"index": i, "text": text, "finish_reason": "length"}
                if "!" in prompt:  # pretend the model emitted EOS at once
                    choice.update(text="", finish_reason="stop")
                    if state.send_stop_reason:
                        choice["stop_reason"] = None
                elif stop and stop[0] in prompt:
                    choice.update(text="", finish_reason="stop")
                    if state.send_stop_reason:
                        choice["stop_reason"] = stop[0]
                choices.append(choice)
            return {"choices": choices, "usage": {"completion_tokens": len(choices[0]["text"])}}

    return Handler


@pytest.fixture()
def fake() -> Any:
    state = FakeState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"  # type: ignore[attr-defined]
    yield state
    server.shutdown()
    server.server_close()


def backend(state: Any, **kw: Any) -> OpenAIBackend:
    return OpenAIBackend("ignored", EngineSettings(base_url=state.url, **kw))


def test_generate_in_order_with_settings_passed(fake: Any) -> None:
    b = backend(fake, concurrency=3)
    reqs = [GenRequest(f"p{i}", GenParams(max_new_tokens=3, temperature=0.7, top_p=0.9, seed=5, stop=("Q:",))) for i in range(10)]
    seen: list[int] = []
    gens = b.generate(reqs, progress=seen.append)
    assert [g.texts for g in gens] == [(str(i) * 3,) for i in range(10)]
    assert all(g.finish_reasons == ("length",) for g in gens)
    assert sum(seen) == 10
    body = fake.bodies[0]
    assert body["model"] == "fake-model"  # the only model listed is picked
    assert (body["temperature"], body["top_p"], body["seed"], body["max_tokens"], body["stop"]) == (0.7, 0.9, 5, 3, ["Q:"])
    assert body["add_special_tokens"] is False  # the rendered prompt already holds its BOS
    assert b.info()["model"] == "fake-model"


def test_n_samples_and_finish_reasons(fake: Any) -> None:
    b = backend(fake)
    g = b.generate([GenRequest("ab", GenParams(max_new_tokens=2, n=3, temperature=1.0))])[0]
    assert g.texts == ("bb",) * 3 and len(g.finish_reasons) == 3
    eos, stop = b.generate([GenRequest("end!", GenParams()), GenRequest("Q: x", GenParams(stop=("Q:",)))])
    assert eos.finish_reasons == ("eos",) and stop.finish_reasons == ("stop",)


def test_finish_reason_without_stop_reason_field(fake: Any) -> None:
    fake.send_stop_reason = False
    b = backend(fake)
    eos, stop = b.generate([GenRequest("end!", GenParams()), GenRequest("Q: x", GenParams(stop=("Q:",)))])
    assert eos.finish_reasons == ("eos",)  # no stop strings asked: only EOS can stop it
    assert stop.finish_reasons == ("stop",)
    assert map_finish("stop", None, stop_reason_sent=False, had_stops=True) == "stop"
    assert map_finish("abort", None, stop_reason_sent=True, had_stops=False) == "error"


def test_concurrency_is_bounded_and_used(fake: Any) -> None:
    fake.delay = 0.05
    b = backend(fake, concurrency=4)
    b.generate([GenRequest(f"p{i}", GenParams(max_new_tokens=1)) for i in range(16)])
    assert 2 <= fake.max_in_flight <= 4


def test_prompts_batched_per_request_same_outputs(fake: Any) -> None:
    """Prompts with equal sampling parameters share one request (a list `prompt`), cut so
    that `concurrency` requests stay in flight; outputs, order, n-sample grouping, token
    counts and progress are the same as one prompt per request."""
    plain, hot = GenParams(max_new_tokens=2), GenParams(max_new_tokens=3, n=2, temperature=1.0)
    reqs = [GenRequest(f"p{i}", plain if i < 6 or i >= 9 else hot) for i in range(12)]
    b = backend(fake, concurrency=2)
    seen: list[int] = []
    batched = b.generate(reqs, progress=seen.append)
    prompts = [body["prompt"] for body in fake.bodies if "prompt" in body]
    assert sorted(prompts) == [["p0", "p1", "p2", "p3", "p4", "p5"], ["p6", "p7", "p8"], ["p9", "p10", "p11"]]
    assert all(body.get("return_token_ids") for body in fake.bodies if "prompt" in body)
    assert sum(seen) == 12
    fake.bodies.clear()
    b.client.prompts_per_request = 1
    single = b.generate(reqs)
    assert all(isinstance(body["prompt"], str) and "return_token_ids" not in body for body in fake.bodies)
    assert [(g.texts, g.finish_reasons) for g in batched] == [(g.texts, g.finish_reasons) for g in single]
    assert [g.num_tokens for g in batched if len(g.texts) == 1] == [g.num_tokens for g in single if len(g.texts) == 1]
    assert batched[7].texts == ("7" * 3,) * 2 and batched[0].num_tokens == (2,)
    assert batched[7].num_tokens == (3, 3)  # per sample, from return_token_ids (usage is a sum)
    assert [len(x) for x in plan_batches([plain] * 10, 64, 16)] == [1] * 10  # few prompts: all in flight
    assert [len(x) for x in plan_batches([plain] * 100, 2, 16)] == [16] * 6 + [4]


def test_loglikelihood_reads_only_the_continuation(fake: Any) -> None:
    b = backend(fake)
    got = b.loglikelihood([LoglikRequest("ctx:", ("ab", "zz")), LoglikRequest("q", ("e",))])
    assert got[0].logprobs == pytest.approx((char_lp("a") + char_lp("b"), 2 * char_lp("z")))
    assert got[0].num_tokens == (2, 2)
    assert got[0].is_greedy == (False, False)  # "b" and "z" are not vowels
    assert got[1].is_greedy == (True,) and got[1].logprobs == pytest.approx((char_lp("e"),))
    assert fake.bodies[-1]["echo"] is True and fake.bodies[-1]["logprobs"] == 1


def test_loglikelihood_unsupported_is_one_clear_error(fake: Any) -> None:
    fake.echo_supported = False
    with pytest.raises(SftevalError, match="no prompt log-probs"):
        backend(fake).loglikelihood([LoglikRequest("c", ("a",))])


def test_chat_api(fake: Any) -> None:
    b = OpenAIBackend("x", EngineSettings(base_url=fake.url), api="chat")
    g = b.generate([GenRequest("hello", GenParams(max_new_tokens=2))])[0]
    assert g.texts == ("oo",)
    assert fake.bodies[-1]["messages"] == [{"role": "user", "content": "hello"}]
    with pytest.raises(SftevalError, match="chat completions cannot score"):
        b.loglikelihood([LoglikRequest("c", ("a",))])


def _no_wait(monkeypatch: pytest.MonkeyPatch, waits: list[float] | None = None) -> None:
    async def record(s: float) -> None:
        if waits is not None:
            waits.append(s)

    monkeypatch.setattr("sfteval.backends.http.backoff_sleep", record)


def test_retries_with_backoff_then_succeeds(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    _no_wait(monkeypatch, waits)
    b = backend(fake, model_name="fake-model")
    fake.fail_next = 3
    assert b.generate([GenRequest("ab", GenParams(max_new_tokens=1))])[0].texts == ("b",)
    assert len(waits) == 3 and waits[0] < waits[1] < waits[2]  # exponential backoff


def test_gives_up_after_retries(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_wait(monkeypatch)
    b = backend(fake, model_name="fake-model")
    fake.fail_next = 100
    with pytest.raises(SftevalError, match=r"after 5 attempt\(s\) \(HTTP 503: warming up\)"):
        b.generate([GenRequest("ab", GenParams(max_new_tokens=1))])


def test_client_error_is_not_retried_and_names_the_cause(fake: Any) -> None:
    b = backend(fake, model_name="nope")
    with pytest.raises(SftevalError, match="404: model nope does not exist"):
        b.generate([GenRequest("ab", GenParams(max_new_tokens=1))])
    assert len(fake.bodies) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_wait(monkeypatch)
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(SftevalError, match="cannot reach .*127.0.0.1.*/v1/models") as e:
        OpenAIBackend("m", EngineSettings(base_url=url))
    assert "--base-url" in str(e.value)
    with pytest.raises(SftevalError, match="needs a server URL"):
        OpenAIBackend("m", EngineSettings())


def test_api_key_sent_from_env(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    http = HttpClient(HttpSettings(base_url=fake.url, api_key="sekrit"))
    http.request("GET", "models")
    http.close()
    assert fake.headers[-1]["Authorization"] == "Bearer sekrit"
