"""The rules every backend must apply the same way, written once.

If two backends split a continuation differently, read "auto" as different dtypes, or
name the end of a generation differently, their scores differ for reasons nobody can
see in the samples (lm-eval #2851, #3150). So those rules live here and every backend
calls them:

- `split_continuation`: which tokens a log-likelihood request scores. The context is
  tokenized alone and context+continuation whole; the continuation is the tail the
  whole adds. When a BPE merge crosses the boundary (the whole does not start with the
  context's tokens) or the tail is empty, the continuation is tokenized on its own.
- `resolve_dtype`: our "auto" (bf16 on a GPU that supports it, else fp32), the same
  canonical names for every engine, and one error for a name we do not know.
- `map_finish`: an engine's (finish_reason, stop_reason) -> ours: "stop" (a stop
  string), "eos" (an EOS / end-of-turn token), "length" (token budget), "error".

Adapter policy (merge vs serve the LoRA) is in `sfteval.backends.adapters`.
Not covered: rules of one engine only (vLLM's sampling params, HF padding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from sfteval.errors import SftevalError
from sfteval.types import FinishReason

# What a generation can end with (a subset of the run format's FinishReason, which also
# names scoring-only lines).
GEN_FINISH_REASONS: tuple[str, ...] = ("stop", "length", "eos", "error")
assert set(GEN_FINISH_REASONS) <= set(get_args(FinishReason))
DTYPES: dict[str, str] = {
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}

Encoder = Callable[[str], list[int]]  # text -> token ids, special tokens never added


def encoder(tok: Any) -> Encoder:
    """An HF tokenizer as an Encoder: prompts arrive rendered, BOS text included."""
    return lambda text: [int(t) for t in tok(text, add_special_tokens=False)["input_ids"]]


def split_continuation(encode: Encoder, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids), tokenizing the whole so BPE merges match generation."""
    ctx = list(encode(context))
    whole = list(encode(context + continuation))
    if whole[: len(ctx)] != ctx or len(whole) == len(ctx):  # a merge across the boundary: separate pieces
        return ctx, list(encode(continuation))
    return ctx, whole[len(ctx) :]


def resolve_dtype(setting: str, device: str) -> str:
    """Canonical dtype name for `setting` on `device` ("cpu", "cuda", ...).

    "auto" is ours, not vLLM's (which would run an fp32 checkpoint in bf16 on a CPU and
    fp16 on a GPU): bf16 on a CUDA GPU that supports it, else fp32, for every backend,
    so that hf and vllm compare at one precision.
    """
    if setting == "auto":
        if device != "cuda":
            return "float32"
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    try:
        return DTYPES[setting]
    except KeyError:
        raise SftevalError(f"unknown dtype '{setting}'", field="dtype", hint="auto | float32 | bfloat16 | float16") from None


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, DTYPES.get(name, name))


def map_finish(finish_reason: str | None, stop_reason: Any = None, *, stop_reason_sent: bool = True, had_stops: bool = False) -> str:
    """An engine's (finish_reason, stop_reason) -> one of GEN_FINISH_REASONS.

    vLLM (in process and over HTTP) says "stop" for both a stop string and an EOS
    token; stop_reason tells them apart: the matched string, or None / a token id for
    EOS and the generation config's extra end tokens (e.g. <|im_end|>). A server that
    does not send stop_reason (`stop_reason_sent=False`) leaves "stop" ambiguous: it is
    "eos" when the request had no stop strings, else "stop".
    """
    if finish_reason == "length":
        return "length"
    if finish_reason == "stop":
        if stop_reason_sent:
            return "stop" if isinstance(stop_reason, str) else "eos"
        return "stop" if had_stops else "eos"
    return "error"
