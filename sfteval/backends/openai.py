"""The `openai` backend: any OpenAI-compatible HTTP endpoint (a vLLM server, TGI, SGLang...).

Covered:
- `/v1/completions` for generation (n, temperature, top_p, stop, max_tokens, seed), up
  to `prompts_per_request` prompts with equal sampling parameters in one request (a list
  `prompt`): the server's per-request HTTP/validation/JSON cost is paid once per batch.
- `/v1/chat/completions` (api="chat"): each rendered prompt goes as ONE user message
  and the server applies its own chat template, so run with chat_template=off to avoid
  templating twice. Chat has no prompt log-probs: log-likelihood is refused clearly.
- transport (`sfteval.backends.http`): one pooled async client per backend,
  `engine.concurrency` requests in flight (default 64), retries with backoff only on
  retryable errors, a dead server fails with the URL named and nothing hangs.
- log-likelihood, without re-sending shared prefixes needlessly:
  "steps" (vLLM >= 0.32 servers, token-id prompts): each continuation token is a
  next-token query on its prefix, `max_tokens=1` + `logprob_token_ids` = every id
  wanted there, so MMLU's four letters cost ONE request over the context (not four
  echoes of it) and longer continuations reuse it from the server's prefix cache;
  the same scheme as the in-process vllm backend, so the numbers agree.
  "echo" (other servers, or text prompts): one request per item whose `prompt` is the
  list of context+continuation texts (one HTTP round trip per item), read back from
  the prompt's own log-probs (echo + logprobs) on the continuation only. The first
  refusal of "steps" switches to "echo" once; info() records which ran.
- finish reasons: the shared `map_finish` ("stop" vs "eos" from vLLM's stop_reason when
  sent, else inferred from whether the request had stop strings).
- prompts as token ids from the checkpoint's tokenizer when the model path is a local
  checkpoint (or a tokenizer is given: vllm-server), so nothing re-adds a BOS; else
  text with `add_special_tokens: false` for vLLM-style servers.

Not covered: streaming, tool calls, the Responses API.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval.backends import Progress
from sfteval.backends.http import HttpClient, HttpSettings  # noqa: F401 - HttpSettings re-exported
from sfteval.backends.shared import map_finish, split_continuation
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import GenParams, GenRequest, Generation, Loglik, LoglikRequest


@dataclass
class CompletionsAPI:
    """The request/response logic shared by `openai` and `vllm-server`."""

    http: HttpClient
    model: str
    api: str = "completions"  # or "chat"
    encode: Callable[[str], list[int]] | None = None  # send token ids instead of text
    extra: dict[str, Any] = field(default_factory=dict)  # server-specific body fields
    loglik_method: str = "steps"  # falls back to "echo" once the server refuses steps
    prompts_per_request: int = 16  # generation: most prompts in one /v1/completions request
    vllm_fields: bool = False  # the server is vLLM-style: ask for `return_token_ids` when batching

    @property
    def concurrency(self) -> int:
        return self.http.s.concurrency

    def _prompt(self, text: str) -> Any:
        return self.encode(text) if self.encode is not None else text

    def generate(self, requests: Sequence[GenRequest], progress: Progress | None) -> list[Generation]:
        if self.api == "chat":  # one conversation per request: chat has no list of prompts
            return self.http.gather(self._generate_one, requests, progress)
        batches = plan_batches([r.params for r in requests], self.concurrency, self.prompts_per_request)
        got = self.http.gather(lambda idx: self._generate_batch([requests[i] for i in idx]), batches, progress, weight=len)
        out: list[Generation] = [None] * len(requests)  # type: ignore[list-item]
        for idx, gens in zip(batches, got):
            for i, g in zip(idx, gens):
                out[i] = g
        return out

    def _body(self, p: GenParams) -> dict[str, Any]:
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
        return body

    async def _generate_one(self, r: GenRequest) -> Generation:
        return (await self._generate_batch([r]))[0]

    async def _generate_batch(self, rs: list[GenRequest]) -> list[Generation]:
        """One HTTP request for prompts that share their sampling parameters: the completions
        API takes a list `prompt` and answers prompt i's samples as choices i*n .. i*n+n-1
        (vLLM schedules them as separate engine requests, so outputs equal one per request).
        With several prompts `usage` is their sum, so per-prompt token counts come from
        `return_token_ids` (vLLM) where the server sends them, else are left unknown."""
        p: GenParams = rs[0].params
        body = self._body(p)
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": rs[0].prompt}]
            path = "chat/completions"
        else:
            prompts = [self._prompt(r.prompt) for r in rs]
            body["prompt"] = prompts if len(rs) > 1 else prompts[0]
            if len(rs) > 1 and self.vllm_fields:
                body["return_token_ids"] = True
            path = "completions"
        resp = await self.http.arequest("POST", path, body)
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != p.n * len(rs):
            raise SftevalError(f"the server returned {len(choices)} choices for {len(rs)} prompt(s) x n={p.n}", field="base_url")
        usage = resp.get("usage") or {}
        out = []
        for k in range(len(rs)):
            mine = choices[k * p.n:(k + 1) * p.n]
            texts = tuple(_choice_text(c, self.api) for c in mine)
            reasons = tuple(
                map_finish(c.get("finish_reason"), c.get("stop_reason"), stop_reason_sent="stop_reason" in c, had_stops=bool(p.stop))
                for c in mine
            )
            if all(isinstance(c.get("token_ids"), list) for c in mine):
                ntok: tuple[int, ...] = tuple(len(c["token_ids"]) for c in mine)
            elif len(rs) == 1 and p.n == 1 and "completion_tokens" in usage:
                ntok = (int(usage["completion_tokens"]),)
            else:
                ntok = ()
            out.append(Generation(texts=texts, finish_reasons=reasons, num_tokens=ntok))
        return out

    # -- log-likelihood -------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: Progress | None) -> list[Loglik]:
        if self.api == "chat":
            raise SftevalError(
                "log-likelihood needs /v1/completions with echo+logprobs; chat completions cannot score a prompt",
                field="api",
                hint="use the completions API for choice benchmarks",
            )
        if self.encode is not None and self.loglik_method == "steps":
            try:
                return self._loglik_steps(requests, progress)
            except _StepsUnsupported:
                self.loglik_method = "echo"
        self.loglik_method = "echo"
        return self.http.gather(self._score_echo, requests, progress)

    def _loglik_steps(self, requests: Sequence[LoglikRequest], progress: Progress | None) -> list[Loglik]:
        assert self.encode is not None
        splits = [[split_continuation(self.encode, r.context, c) for c in r.continuations] for r in requests]
        # layer 0: prefix = the context; layer 1: context + the continuation's first k tokens.
        layers: tuple[dict[tuple[int, ...], set[int]], dict[tuple[int, ...], set[int]]] = ({}, {})
        for parts in splits:
            for ctx, cont in parts:
                if not cont:
                    raise SftevalError("a continuation tokenizes to nothing", field="continuations")
                for k, tok in enumerate(cont):
                    layers[min(k, 1)].setdefault(tuple(ctx + cont[:k]), set()).add(tok)
        answers: dict[tuple[int, ...], tuple[dict[int, float], int]] = {}
        for layer in layers:  # contexts first: they fill the server's prefix cache for layer 1
            keys = list(layer)
            got = self.http.gather(lambda key, layer=layer: self._step(key, sorted(layer[key])), keys)
            answers.update(zip(keys, got))
        out = []
        for parts in splits:
            lps, greedy = [], []
            for ctx, cont in parts:
                total, top_all = 0.0, True
                for k, tok in enumerate(cont):
                    dist, top = answers[tuple(ctx + cont[:k])]
                    total += dist[tok]
                    top_all = top_all and top == tok
                lps.append(total)
                greedy.append(top_all)
            out.append(Loglik(tuple(lps), tuple(greedy), tuple(len(c) for _, c in parts)))
        if progress:
            progress(len(out))
        return out

    async def _step(self, prefix: tuple[int, ...], ids: list[int]) -> tuple[dict[int, float], int]:
        body = {"model": self.model, "prompt": list(prefix), "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
                "logprob_token_ids": ids, "return_tokens_as_token_ids": True, **self.extra}
        try:
            resp = await self.http.arequest("POST", "completions", body)
        except SftevalError as e:
            if "answered 4" in str(e):  # a 4xx: the server does not know these fields
                raise _StepsUnsupported from e
            raise
        try:
            lp = resp["choices"][0]["logprobs"]
            dist = {int(t.removeprefix("token_id:")): float(v) for t, v in lp["top_logprobs"][0].items()}
            top = int(lp["tokens"][0].removeprefix("token_id:"))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise _StepsUnsupported from None
        if not set(ids) <= set(dist):
            raise _StepsUnsupported
        return dist, top

    async def _score_echo(self, r: LoglikRequest) -> Loglik:
        """All continuations of one item in ONE request (a list of prompts), echoed back."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1, **self.extra}
        spans: list[tuple[int, int] | None] = []
        if self.encode is not None:
            prompts = []
            for c in r.continuations:
                ctx_ids, cont_ids = split_continuation(self.encode, r.context, c)
                prompts.append(ctx_ids + cont_ids)
                spans.append((len(ctx_ids), len(ctx_ids) + len(cont_ids)))
            body["prompt"] = prompts
        else:
            body["prompt"] = [r.context + c for c in r.continuations]
            spans = [None] * len(r.continuations)
        resp = await self.http.arequest("POST", "completions", body)
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(r.continuations):
            raise SftevalError(f"the server returned {len(choices)} choices for {len(r.continuations)} prompts", field="base_url")
        scores = [_echo_score(ch, r.context, c, span) for ch, c, span in zip(choices, r.continuations, spans)]
        return Loglik(tuple(s[0] for s in scores), tuple(s[1] for s in scores), tuple(s[2] for s in scores))


def plan_batches(params: Sequence[GenParams], concurrency: int, most: int) -> list[list[int]]:
    """Indices of the prompts each request carries: runs of equal sampling parameters, cut
    into requests of at most `most` prompts but small enough that `concurrency` requests
    are in flight (so 16 prompts at concurrency 4 are 4 requests of 4, not one of 16)."""
    runs: list[list[int]] = []
    for i, p in enumerate(params):
        if runs and params[runs[-1][0]] == p:
            runs[-1].append(i)
        else:
            runs.append([i])
    size = max(1, min(most, -(-len(params) // max(1, concurrency))))
    return [run[j:j + size] for run in runs for j in range(0, len(run), size)]


class _StepsUnsupported(Exception):
    """The server does not answer next-token queries with chosen ids: use echo."""


def _echo_score(choice: dict[str, Any], context: str, continuation: str, span: tuple[int, int] | None) -> tuple[float, bool, int]:
    try:
        lp = choice["logprobs"]
        token_lps, tops = lp["token_logprobs"], lp.get("top_logprobs")
    except (KeyError, IndexError, TypeError):
        raise SftevalError(
            "the server returned no prompt log-probs for echo=true, logprobs=1",
            field="base_url",
            hint="this endpoint cannot score continuations; use a vLLM server or --backend vllm/hf",
        ) from None
    if span is not None:
        start, end = span
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
        self.http = HttpClient(HttpSettings(base_url=engine.base_url, api_key=os.environ.get(engine.api_key_env) or None,
                                            concurrency=engine.concurrency))
        api = api or os.environ.get("SFTEVAL_OPENAI_API", "completions")
        if api not in ("completions", "chat"):
            raise SftevalError(f"unknown API flavour '{api}'", field="api", hint="completions or chat")
        try:
            model = engine.model_name or self._default_model(model_path)
        except BaseException:
            self.http.close()
            raise
        # vLLM-style servers honour add_special_tokens; others ignore unknown fields.
        extra = {"add_special_tokens": False} if api == "completions" else {}
        self.client = CompletionsAPI(self.http, model, api=api, encode=_local_encoder(model_path), extra=extra,
                                     vllm_fields=api == "completions")

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
            "prompts_per_request": self.client.prompts_per_request,
            "retries": self.http.s.retries,
            "prompts": "token ids" if self.client.encode is not None else "text",
            "loglikelihood": self.client.loglik_method,
            "finish_reason_source": "server stop_reason when sent, else inferred from the request's stop strings",
        }

    def close(self) -> None:
        self.http.close()  # the connection pool and its event loop


def _local_encoder(model_path: str) -> Callable[[str], list[int]] | None:
    """Token ids from the checkpoint's own tokenizer when `model_path` is a local checkpoint."""
    from sfteval.backends.adapters import TOKENIZER_FILES, tokenizer_dir

    try:
        where = Path(tokenizer_dir(model_path))
    except SftevalError:
        return None
    if not where.is_dir() or not any((where / f).is_file() for f in TOKENIZER_FILES):
        return None
    from sfteval.backends.hf import load_tokenizer
    from sfteval.backends.shared import encoder

    return encoder(load_tokenizer(model_path))
