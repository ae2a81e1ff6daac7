"""The `openai` backend: any OpenAI-compatible HTTP endpoint (a vLLM server, TGI, SGLang...).

Covered:
- `/v1/completions` for generation (n, temperature, top_p, stop, max_tokens, seed) and
  for log-likelihood through `echo` + `logprobs` (the prompt's own token log-probs,
  read on the continuation only, located by `text_offset`, or by token count when we
  send token ids). Servers that refuse echo+logprobs get one clear error.
- `/v1/chat/completions` (api="chat"): each rendered prompt goes as ONE user message
  and the server applies its own chat template, so run with chat_template=off to avoid
  templating twice. Chat has no prompt log-probs: log-likelihood is refused clearly.
- bounded concurrency (a thread pool of `engine.concurrency`), retries with exponential
  backoff and jitter on connection errors, 408/429 and 5xx; any other 4xx fails at
  once with the server's message; an unreachable server fails with the URL named.
- finish reasons: "length"; "stop" vs "eos" from vLLM's `stop_reason` when the server
  sends it (None = EOS, a string = the stop string). A server that does not send it
  leaves "stop" ambiguous: we say "eos" when the request had no stop strings, else
  "stop" (recorded in info() as `finish_reason_source`).

Not covered: streaming, tool calls, the Responses API. The prompt's tokenization is
the server's unless a tokenizer is given (the vllm-server backend sends token ids, so
nothing re-adds a BOS); for a generic server with text prompts we ask vLLM-style
servers not to add special tokens (`add_special_tokens: false`) and cannot check others.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from sfteval.backends import Progress
from sfteval.backends.shared import map_finish, split_continuation
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import GenParams, GenRequest, Generation, Loglik, LoglikRequest

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class HttpSettings:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    api_key: str | None = None
    timeout_s: float = 600.0
    retries: int = 4
    backoff_s: float = 0.5  # first wait; doubles each retry, with jitter


class HttpClient:
    """POST/GET JSON with retries. Thread-safe: one urllib call per request."""

    def __init__(self, s: HttpSettings, sleep: Callable[[float], None] | None = None) -> None:
        self.s = s
        self.base = s.base_url.rstrip("/")
        self._sleep = sleep or time.sleep

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, retries: int | None = None) -> Any:
        url = f"{self.base}/{path.lstrip('/')}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.s.api_key:
            headers["Authorization"] = f"Bearer {self.s.api_key}"
        attempts = (self.s.retries if retries is None else retries) + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.s.backoff_s * 2 ** (attempt - 1) * (1 + random.random() * 0.25))
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.s.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                if e.code not in RETRY_STATUS:
                    raise SftevalError(
                        f"{method} {url} answered {e.code}: {detail}",
                        field="base_url",
                        hint="the server refused the request; check the model name and the options it supports",
                    ) from None
                last = f"HTTP {e.code}: {detail}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        raise SftevalError(
            f"cannot reach {url} after {attempts} attempt(s) ({last})",
            field="base_url",
            hint="is the server running and is --base-url right (it usually ends in /v1)?",
        )


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read().decode("utf-8", errors="replace")
    except Exception:  # the body is a courtesy; the status code is what matters
        return str(e.reason)
    try:
        obj = json.loads(body)
        err = obj.get("error", obj)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:500]
    except (json.JSONDecodeError, AttributeError):
        return body[:500]


@dataclass
class CompletionsAPI:
    """The request/response logic shared by `openai` and `vllm-server`."""

    http: HttpClient
    model: str
    api: str = "completions"  # or "chat"
    concurrency: int = 8
    encode: Callable[[str], list[int]] | None = None  # send token ids instead of text
    extra: dict[str, Any] = field(default_factory=dict)  # server-specific body fields

    def _prompt(self, text: str) -> Any:
        return self.encode(text) if self.encode is not None else text

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any], progress: Progress | None) -> list[Any]:
        out: list[Any] = [None] * len(items)
        pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency))
        try:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
                if progress:
                    progress(1)
        except BaseException:
            # On an error or Ctrl-C: drop queued requests, do not wait for the in-flight ones.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return out

    def generate(self, requests: Sequence[GenRequest], progress: Progress | None) -> list[Generation]:
        return self._map(self._generate_one, requests, progress)

    def _generate_one(self, r: GenRequest) -> Generation:
        p: GenParams = r.params
        body: dict[str, Any] = {
            "model": self.model,
            "n": p.n,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_new_tokens,
            "seed": p.seed,
            **self.extra,
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": r.prompt}]
            path = "chat/completions"
        else:
            body["prompt"] = self._prompt(r.prompt)
            path = "completions"
        resp = self.http.request("POST", path, body)
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != p.n:
            raise SftevalError(f"the server returned {len(choices)} choices for n={p.n}", field="base_url")
        texts = tuple(_choice_text(c, self.api) for c in choices)
        reasons = tuple(
            map_finish(c.get("finish_reason"), c.get("stop_reason"), stop_reason_sent="stop_reason" in c, had_stops=bool(p.stop))
            for c in choices
        )
        usage = resp.get("usage") or {}
        ntok = (int(usage["completion_tokens"]),) if p.n == 1 and "completion_tokens" in usage else ()
        return Generation(texts=texts, finish_reasons=reasons, num_tokens=ntok)

    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: Progress | None) -> list[Loglik]:
        if self.api == "chat":
            raise SftevalError(
                "log-likelihood needs /v1/completions with echo+logprobs; chat completions cannot score a prompt",
                field="api",
                hint="use the completions API for choice benchmarks",
            )
        pairs = [(r.context, c) for r in requests for c in r.continuations]
        scored = self._map(lambda pc: self._score_one(*pc), pairs, None)
        out, k = [], 0
        for r in requests:
            part = scored[k : k + len(r.continuations)]
            k += len(r.continuations)
            out.append(Loglik(tuple(s[0] for s in part), tuple(s[1] for s in part), tuple(s[2] for s in part)))
            if progress:
                progress(1)
        return out

    def _score_one(self, context: str, continuation: str) -> tuple[float, bool, int]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1, **self.extra}
        if self.encode is not None:
            ctx_ids, cont_ids = split_continuation(self.encode, context, continuation)
            body["prompt"] = ctx_ids + cont_ids
        else:
            body["prompt"] = context + continuation
        resp = self.http.request("POST", "completions", body)
        try:
            lp = resp["choices"][0]["logprobs"]
            tokens, token_lps, tops = lp["tokens"], lp["token_logprobs"], lp.get("top_logprobs")
        except (KeyError, IndexError, TypeError):
            raise SftevalError(
                "the server returned no prompt log-probs for echo=true, logprobs=1",
                field="base_url",
                hint="this endpoint cannot score continuations; use a vLLM server or --backend vllm/hf",
            ) from None
        if self.encode is not None:
            start, end = len(ctx_ids), len(ctx_ids) + len(cont_ids)
        else:
            offsets = lp.get("text_offset")
            if not offsets:
                raise SftevalError("the server returned no text_offset with echo logprobs", field="base_url")
            full = len(context) + len(continuation)
            end = sum(1 for o in offsets if o < full)
            start = next((i for i, o in enumerate(offsets) if o >= len(context)), end)
        if end > len(token_lps) or end <= start or any(token_lps[i] is None for i in range(start, end)):
            raise SftevalError("echo logprobs do not cover the continuation", field="base_url")
        total = float(sum(token_lps[start:end]))
        greedy = all(_is_top(token_lps[i], tops[i] if tops else None) for i in range(start, end))
        return total, greedy, end - start


def _is_top(lp: float, top: dict[str, float] | None) -> bool:
    if not top:
        return False
    return lp >= max(top.values()) - 1e-6


def _choice_text(c: dict[str, Any], api: str) -> str:
    if api == "chat":
        return str((c.get("message") or {}).get("content") or "")
    return str(c.get("text") or "")


def list_models(http: HttpClient, retries: int | None = None) -> list[str]:
    resp = http.request("GET", "models", retries=retries)
    return [str(m["id"]) for m in resp.get("data", []) if "id" in m]


class OpenAIBackend:
    """`--backend openai --base-url URL [--model-name ID]`.

    The model id defaults to `engine.model_name`, else the one model the server lists.
    The API key is read from the environment variable `engine.api_key_env`. The API
    flavour is `completions` unless SFTEVAL_OPENAI_API=chat.
    """

    name = "openai"
    chunk_size = 512  # requests per runner chunk; the server batches what arrives together

    def __init__(self, model_path: str, engine: EngineSettings, *, api: str | None = None) -> None:
        if not engine.base_url:
            raise SftevalError("the openai backend needs a server URL", field="base_url", hint="pass --base-url http://HOST:PORT/v1")
        self.engine = engine
        self.http = HttpClient(HttpSettings(base_url=engine.base_url, api_key=os.environ.get(engine.api_key_env) or None))
        api = api or os.environ.get("SFTEVAL_OPENAI_API", "completions")
        if api not in ("completions", "chat"):
            raise SftevalError(f"unknown API flavour '{api}'", field="api", hint="completions or chat")
        model = engine.model_name or self._default_model(model_path)
        # vLLM-style servers honour add_special_tokens; others ignore unknown fields.
        extra = {"add_special_tokens": False} if api == "completions" else {}
        self.client = CompletionsAPI(self.http, model, api=api, concurrency=engine.concurrency, extra=extra)

    def _default_model(self, model_path: str) -> str:
        models = list_models(self.http, retries=1)  # a wrong URL should fail fast here
        if model_path in models:
            return model_path
        if len(models) == 1:
            return models[0]
        raise SftevalError(
            f"the server lists {len(models)} models ({', '.join(models[:5])}); say which",
            field="model_name",
            hint="pass --model-name ID",
        )

    def generate(self, requests: Sequence[GenRequest], progress: Progress | None = None) -> list[Generation]:
        return self.client.generate(requests, progress)

    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: Progress | None = None) -> list[Loglik]:
        return self.client.loglikelihood(requests, progress)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_url": self.http.base,
            "model": self.client.model,
            "api": self.client.api,
            "concurrency": self.client.concurrency,
            "retries": self.http.s.retries,
            "finish_reason_source": "server stop_reason when sent, else inferred from the request's stop strings",
        }

    def close(self) -> None:
        pass  # nothing held: each request opens and closes its own connection
