"""Loading the next checkpoint's weights into a running in-process vLLM engine.

Covered: `ReloadExtension`, a vLLM worker extension (`worker_extension_cls`, mixed into
each worker by vLLM itself) whose `sfteval_reload_weights(path)` runs vLLM's own
in-place reload (`Worker.reload_weights`: the layerwise loader re-runs each layer's
`process_weights_after_loading`) and then repairs the one thing that path misses on a
CPU, so a reloaded engine gives exactly the outputs of a fresh engine on that checkpoint
(tests/test_vllm_reload.py).

Why the repair (read in vllm 0.32.0, measured): on a CPU every linear layer and the LM
head compute through `layer.cpu_linear`, a closure over a PACKED copy of the weight
built by `dispatch_cpu_unquantized_gemm` (model_executor/layers/utils.py: sgl
`convert_weight_packed` or a oneDNN handle) when the weights are first processed. The
layerwise reload (model_loader/reload/layerwise.py) re-processes only layers that
received weights. A tied LM head (`ParallelLMHead.tie_weights`: lm_head.weight IS
embed_tokens.weight; Llama's `load_weights` skips `lm_head.weight` when tied) receives
none, so `finalize_layerwise_processing` puts its tensors back without re-processing
and its `cpu_linear` keeps packing the OLD embedding: the logits are the old
checkpoint's head on the new body (measured: wrong log-probs). Embedding-method layers
keep their weight after packing (`remove_weight=False`), so re-running their
`process_weights_after_loading` on the live parameter rebuilds the packed copy from the
new weights. Linear layers drop their weight after packing (`remove_weight=True`) and
are re-packed by the reload itself as they receive their weights.

Not covered: quantized checkpoints (their methods' packing is not re-checked here),
changing architecture or tokenizer (the sweep starts a new engine for those).
"""

from __future__ import annotations

from typing import Any

WORKER_EXTENSION = "sfteval.backends.vllm_reload.ReloadExtension"


def repack_embedding_methods(model: Any) -> int:
    """Rebuild the CPU packed GEMM copy of every embedding-method layer (embeddings, LM
    head, tied or not) from its current weight; returns how many were rebuilt."""
    from vllm.model_executor.layers.vocab_parallel_embedding import (
        UnquantizedEmbeddingMethod,
    )

    n = 0
    for module in model.modules():
        method = getattr(module, "quant_method", None)
        weight = getattr(module, "weight", None)
        if isinstance(method, UnquantizedEmbeddingMethod) and hasattr(module, "cpu_linear") and weight is not None and weight.numel():
            method.process_weights_after_loading(module)
            n += 1
    return n


class ReloadExtension:
    """Mixed into vLLM's worker class (vLLM checks for name clashes): called by name
    through `LLM.collective_rpc`, so no function is pickled across processes."""

    def sfteval_reload_weights(self, weights_path: str) -> int:
        from vllm.platforms import current_platform

        worker: Any = self
        worker.reload_weights(weights_path=weights_path)
        if not current_platform.is_cpu():
            return 0  # GPU kernels read the parameters themselves: nothing packed aside
        return repack_embedding_methods(worker.model_runner.get_model())
