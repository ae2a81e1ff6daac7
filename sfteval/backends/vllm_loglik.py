"""Log-likelihood scoring on an in-process `vllm.LLM` (the `vllm` backend's half that
never generates text).

Covered: only continuation positions are ever computed, avoiding the `prompt_logprobs`
memory blow-ups and slowness peers hit (lm-eval #2490/#2698/#2418).
- "steps" (vLLM >= 0.32): each continuation token is a next-token query on its prefix
  (`max_tokens=1`, `logprob_token_ids=[the ids wanted there]`); queries on one prefix
  share a request, so MMLU letters cost ONE request per question over the context, and
  longer continuations reuse the context from vLLM's prefix cache.
- "prompt_logprobs" (vLLM < 0.32, or SFTEVAL_VLLM_LOGLIK=prompt_logprobs to cross-check):
  each (context, continuation) is one request with `prompt_logprobs=0`; only the
  continuation positions are read.
Requests go in bounded chunks (LOGLIK_CHUNK) and are reduced to floats at once.

Not covered: the continuation split and length checks (`VLLMBackend.loglikelihood`, on
the shared rules in `sfteval.backends.shared`).
"""

from __future__ import annotations

import os
from typing import Any

from sfteval.backends import Progress
from sfteval.types import Loglik

LOGLIK_CHUNK = 1024  # multi-token scoring requests per engine call: bounds memory
Splits = list[list[tuple[list[int], list[int]]]]  # per request: (context ids, continuation ids) per continuation


def loglik_method() -> str:
    """"steps" (next-token log-probs of chosen ids, vLLM >= 0.32), else "prompt_logprobs".

    SFTEVAL_VLLM_LOGLIK=prompt_logprobs forces the older path (to cross-check the two).
    """
    from vllm import SamplingParams

    forced = os.environ.get("SFTEVAL_VLLM_LOGLIK")
    if forced in ("steps", "prompt_logprobs"):
        return forced
    return "steps" if "logprob_token_ids" in SamplingParams.__struct_fields__ else "prompt_logprobs"


def score_steps(llm: Any, lora: Any, splits: Splits, index: list[int], progress: Progress | None) -> dict[int, Loglik]:
    """Each continuation token as a next-token query on its own prefix.

    Queries on the same prefix merge into ONE request that asks for all their ids
    through `logprob_token_ids`, so MMLU letters cost one request per question.
    Depth-0 queries (prefix = the context) run first and leave the context in the
    prefix cache; deeper ones (context + the continuation's first k tokens) run
    after and recompute only their tail. No prompt_logprobs: no per-position
    vocabulary tensors and no per-token Python objects for the context.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    result: dict[int, Loglik] = {}
    items = list(zip(index, splits))
    for start in range(0, len(items), LOGLIK_CHUNK):
        chunk = items[start : start + LOGLIK_CHUNK]
        layers: tuple[dict[tuple[int, ...], set[int]], dict[tuple[int, ...], set[int]]] = ({}, {})
        for _, parts in chunk:
            for ctx, cont in parts:
                for k, tok in enumerate(cont):
                    layers[min(k, 1)].setdefault(tuple(ctx + cont[:k]), set()).add(tok)
        answers: dict[tuple[int, ...], tuple[dict[int, float], int]] = {}
        for layer in layers:
            keys = list(layer)
            if not keys:
                continue
            prompts = [TokensPrompt(prompt_token_ids=list(k)) for k in keys]
            params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=sorted(layer[k]), detokenize=False) for k in keys]
            for key, out in zip(keys, llm.generate(prompts, params, use_tqdm=False, lora_request=lora)):
                o = out.outputs[0]  # temperature 0: the sampled token is the argmax
                answers[key] = ({t: float(lp.logprob) for t, lp in o.logprobs[0].items()}, o.token_ids[0])
        for i, parts in chunk:
            scores = [_sum_steps(answers, ctx, cont) for ctx, cont in parts]
            result[i] = Loglik(tuple(x[0] for x in scores), tuple(x[1] for x in scores), tuple(len(c) for _, c in parts))
            if progress:
                progress(1)
    return result


def score_prompts(llm: Any, lora: Any, splits: Splits, index: list[int], progress: Progress | None) -> dict[int, Loglik]:
    """One request per (context, continuation): prompt log-probs, read on the tail only."""
    if not index:
        return {}
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    flat = [(i, ctx, cont) for i, parts in zip(index, splits) for ctx, cont in parts]
    sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, flat_logprobs=True, detokenize=False)
    scores: dict[int, list[tuple[float, bool, int]]] = {i: [] for i in index}
    done: dict[int, int] = {i: 0 for i in index}
    need = {i: len(parts) for i, parts in zip(index, splits)}
    for start in range(0, len(flat), LOGLIK_CHUNK):
        chunk = flat[start : start + LOGLIK_CHUNK]
        prompts = [TokensPrompt(prompt_token_ids=ctx + cont) for _, ctx, cont in chunk]
        outs = llm.generate(prompts, sp, use_tqdm=False, lora_request=lora)
        for (i, ctx, cont), out in zip(chunk, outs):
            scores[i].append(continuation_score(out.prompt_logprobs, len(ctx), cont))
            done[i] += 1
            if progress and done[i] == need[i]:
                progress(1)
        del outs  # drop the per-token arrays before the next chunk
    return {
        i: Loglik(
            logprobs=tuple(s[0] for s in scores[i]),
            is_greedy=tuple(s[1] for s in scores[i]),
            num_tokens=tuple(s[2] for s in scores[i]),
        )
        for i in index
    }


def _sum_steps(answers: dict, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
    total, greedy = 0.0, True
    for k, tok in enumerate(cont):
        dist, top = answers[tuple(ctx + cont[:k])]
        total += dist[tok]
        greedy = greedy and top == tok
    return total, greedy


def continuation_score(prompt_logprobs: Any, n_ctx: int, cont: list[int]) -> tuple[float, bool, int]:
    """(sum of log-probs, every token the argmax, token count) over the continuation.

    `prompt_logprobs[k]` scores prompt token k (entry 0 is empty: nothing predicts the
    first token). Works for vLLM's FlatLogprobs and its list-of-dicts form alike.
    """
    total, greedy = 0.0, True
    for k, tok in enumerate(cont, start=n_ctx):
        entry = prompt_logprobs[k][tok]
        total += float(entry.logprob)
        greedy = greedy and entry.rank == 1
    return total, greedy, len(cont)
