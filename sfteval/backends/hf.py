"""The `hf` backend: transformers on CPU or CUDA.

- Generation: requests grouped by settings, sorted by length, batched with left
  padding; greedy or sampling; stop strings, matched in the generated text only (never
  across the prompt boundary), cut the text at the first match; EOS ids
  from the checkpoint's generation_config. finish_reason: "stop" (a stop string),
  "eos" (an EOS token), "length" (max_new_tokens reached).
- Log-likelihood: every one-token continuation (MMLU letters) is read at the
  context's last position; each longer continuation gets its own row (context +
  continuation but its last token), which also holds that position; a request with
  only one-token continuations gets one row, the context. Rows of all requests are
  sorted by length and batched together (left padding). Only the needed positions'
  logits are materialised (`logits_to_keep`), which keeps big vocabularies cheap.
- Sampling seeds: one torch seed per batch, from the batch's first request seed, so a
  resumed run (same chunks, same batches) reproduces its samples.
- A peft adapter folder (adapter_config.json) is loaded onto its local base and merged
  (the shared adapter policy, `sfteval.backends.adapters`); the continuation split,
  dtype "auto" and finish reasons are the shared rules of `sfteval.backends.shared`.
Not covered: multi-GPU sharding (use the vLLM backends for large models).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfteval.backends import Progress
from sfteval.backends.adapters import load_merged_hf, tokenizer_dir
from sfteval.backends.shared import encoder, resolve_dtype, split_continuation, torch_dtype
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import GenParams, GenRequest, Generation, Loglik, LoglikRequest


def load_tokenizer(model_path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    if not Path(model_path).is_dir():
        raise SftevalError("checkpoint folder not found", path=model_path)
    path = Path(tokenizer_dir(model_path))  # an adapter without its own tokenizer uses its base's
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise SftevalError(
            "checkpoint has no tokenizer (tokenizer.json / tokenizer_config.json)",
            path=model_path,
            hint="save the tokenizer with the model: tokenizer.save_pretrained(CKPT)",
        )
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - transformers raises many types here
        raise SftevalError(f"cannot load the tokenizer: {e}", path=model_path) from e


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


class HFBackend:
    name = "hf"
    chunk_size = 64  # requests per runner chunk (the resume granularity)

    def __init__(self, model_path: str, engine: EngineSettings = EngineSettings()) -> None:
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bar is the one that matters
        self.engine = engine
        self.path = model_path
        self.tokenizer = load_tokenizer(model_path, engine.trust_remote_code)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = torch_dtype(resolve_dtype(engine.dtype, self.device))
        self.adapter = (Path(model_path) / "adapter_config.json").is_file()
        try:
            model = load_merged_hf(model_path, self.dtype, engine.trust_remote_code)
        except (OSError, ValueError, json.JSONDecodeError) as e:
            raise SftevalError(f"cannot load the model weights: {e}", path=model_path) from e
        self.model = model.to(self.device).eval()
        self.eos = eos_ids(self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos[0]

    # -- generation -------------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest], progress: Progress | None = None) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            key = (r.params.max_new_tokens, r.params.temperature, r.params.top_p, r.params.n, r.params.stop)
            groups.setdefault(key, []).append(i)
        for idxs in groups.values():
            encoded = {i: self.tokenizer(requests[i].prompt, add_special_tokens=False)["input_ids"] for i in idxs}
            order = sorted(idxs, key=lambda i: -len(encoded[i]))
            bs = max(1, self.engine.batch_size)
            for start in range(0, len(order), bs):
                batch = order[start : start + bs]
                outs = self._generate_batch([encoded[i] for i in batch], requests[batch[0]].params)
                for i, out in zip(batch, outs):
                    results[i] = out
                if progress:
                    progress(len(batch))
        return [r for r in results if r is not None]

    def _generate_batch(self, ids: list[list[int]], params: GenParams) -> list[Generation]:
        import torch

        input_ids, attention = self._left_pad(ids)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n,
            eos_token_id=self.eos,
            pad_token_id=self.pad_id,
        )
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            torch.manual_seed(params.seed)
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        if params.stop:
            # Not transformers' `stop_strings`: it matches across the prompt boundary, so a
            # prompt ending in ":" with stop "::" stopped at the first generated ":".
            kwargs.update(stopping_criteria=_stop_on_text(self.tokenizer, params.stop, input_ids.shape[1]))
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        new = out[:, input_ids.shape[1] :].tolist()
        gens = []
        for b in range(len(ids)):
            texts, reasons, counts = [], [], []
            for j in range(params.n):
                text, reason, count = self._finish(new[b * params.n + j], params)
                texts.append(text)
                reasons.append(reason)
                counts.append(count)
            gens.append(Generation(tuple(texts), tuple(reasons), tuple(counts)))
        return gens

    def _finish(self, tokens: list[int], params: GenParams) -> tuple[str, str, int]:
        """Trim padding/EOS, cut at the first stop string, and say why it ended."""
        n, reason = len(tokens), "length"
        for k, t in enumerate(tokens):
            if t in self.eos:
                n, reason = k, "eos"
                break
        text = self.tokenizer.decode(tokens[:n], skip_special_tokens=False)
        cut = min((p for p in (text.find(s) for s in params.stop) if p >= 0), default=-1)
        if cut >= 0:
            return text[:cut], "stop", n
        if reason == "length" and n < params.max_new_tokens:
            reason = "eos"  # ended on padding after an EOS seen by generate
        return text, reason, n

    def _left_pad(self, ids: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(ids), width), dtype=torch.long)
        for b, x in enumerate(ids):
            input_ids[b, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            attention[b, width - len(x) :] = 1
        return input_ids.to(self.device), attention.to(self.device)

    # -- log-likelihood ---------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: Progress | None = None) -> list[Loglik]:
        import torch

        # Every one-token continuation is read at the context's last position, which
        # any row of this request holds; each longer continuation needs its own row
        # (context + its tokens but the last). So a request costs max(1, number of
        # longer continuations) rows: one per MMLU question when the letters are one
        # token each. Rows of all requests are sorted by length and batched together.
        rows: list[tuple[list[int], int, list[tuple[int, int, list[int]]]]] = []  # (ids, context length, served)
        n_tokens: list[tuple[int, ...]] = []
        for i, r in enumerate(requests):
            ctx, conts = self._split(r)
            if not ctx:
                raise SftevalError("log-likelihood needs a non-empty context", field="context",
                                   hint="render the prompt with its BOS text, or put text before the continuation")
            short = [(i, j, c) for j, c in enumerate(conts) if len(c) == 1]
            longer = [(ctx + c[:-1], len(ctx), [(i, j, c)]) for j, c in enumerate(conts) if len(c) != 1]
            if longer:  # a longer continuation's row also holds the context's last position
                longer[0][2].extend(short)
            elif short:
                rows.append((ctx, len(ctx), short))
            rows += longer
            n_tokens.append(tuple(len(c) for c in conts))
        rows.sort(key=lambda row: -len(row[0]))
        left = [0] * len(requests)  # rows still to run per request, for progress
        for _, _, served in rows:
            left[served[0][0]] += 1
        lps = [[0.0] * len(k) for k in n_tokens]
        greedy = [[False] * len(k) for k in n_tokens]
        bs = max(1, self.engine.batch_size)
        for start in range(0, len(rows), bs):
            batch = rows[start : start + bs]
            keep = max(len(ids) - n_ctx + 1 for ids, n_ctx, _ in batch)
            logp = self._forward([ids for ids, _, _ in batch], keep=keep)  # [B, keep, V]
            finished = 0
            for b, (ids, n_ctx, served) in enumerate(batch):
                first = keep - (len(ids) - n_ctx) - 1  # the position that predicts the first continuation token
                for i, j, c in served:
                    pos = logp[b, first : first + len(c)]
                    tok = torch.tensor(c, dtype=torch.long)
                    lps[i][j] = float(pos.gather(-1, tok.unsqueeze(-1)).sum())
                    greedy[i][j] = bool((pos.argmax(-1) == tok).all())
                left[served[0][0]] -= 1
                finished += left[served[0][0]] == 0
            if progress and finished:
                progress(finished)
        return [Loglik(tuple(lps[i]), tuple(greedy[i]), n_tokens[i]) for i in range(len(requests))]

    def _split(self, req: LoglikRequest) -> tuple[list[int], list[list[int]]]:
        """Context ids and each continuation's ids, by the shared rule (`split_continuation`)."""
        enc = encoder(self.tokenizer)
        parts = [split_continuation(enc, req.context, c) for c in req.continuations]
        ctx = parts[0][0] if parts else enc(req.context)
        return ctx, [cont for _, cont in parts]

    def _forward(self, ids: list[list[int]], keep: int) -> Any:
        import torch

        input_ids, attention = self._left_pad(ids)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, logits_to_keep=keep)
        return torch.log_softmax(out.logits.float(), dim=-1).cpu()

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "name": self.name,
            "engine": "transformers",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if self.device == "cuda" else "cpu",
            "dtype": str(self.dtype).replace("torch.", ""),
            "batch_size": self.engine.batch_size,
            "eos_token_ids": self.eos,
            "adapter_mode": "merge" if self.adapter else None,
        }

    def close(self) -> None:
        self.model = None
        import gc

        gc.collect()


def _stop_on_text(tokenizer: Any, stop: Sequence[str], prompt_width: int) -> Any:
    """A stopping criterion per row: a stop string occurs in the *generated* text.

    A match completes in the newest token, so each step decodes only the last few
    generated tokens: enough for the longest stop string even at one UTF-8 byte per
    token (byte-fallback tokens), so the cost stays flat with length.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    lookback = max(len(s.encode("utf-8")) for s in stop) + 4

    class StopOnText(StoppingCriteria):  # transformers' seam for custom criteria
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            start = max(prompt_width, input_ids.shape[1] - lookback)
            tails = tokenizer.batch_decode(input_ids[:, start:].tolist(), skip_special_tokens=False)
            return torch.tensor([any(s in t for s in stop) for t in tails], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopOnText()])
