"""The model and engine flags that `run` and `compare` share, defined once.

`compare BASE TUNED` evaluates checkpoints through the same runner as `run`, so it takes
the same engine settings; defining each flag here once keeps the two from drifting
(a test checks that every engine flag of `run` is a flag of `compare`).
"""

from __future__ import annotations

from typing import Optional

import typer

from sfteval.config import EngineSettings

PANEL = "Engine"

TRUST_REMOTE_CODE = typer.Option(
    False, "--trust-remote-code", help="Run the model repo's own Python code (transformers / vLLM); off by default.",
    rich_help_panel=PANEL,
)
DTYPE = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16.", rich_help_panel=PANEL)
BATCH_SIZE = typer.Option(16, "--batch-size", min=1, help="hf backend batch size.", rich_help_panel=PANEL)
BASE_URL = typer.Option(None, "--base-url", help="openai backend: the endpoint, e.g. http://127.0.0.1:8000/v1.",
                        rich_help_panel=PANEL)
MAX_MODEL_LEN = typer.Option(None, "--max-model-len", min=1, help="vLLM: context length.", rich_help_panel=PANEL)
TENSOR_PARALLEL = typer.Option(1, "--tensor-parallel-size", min=1, help="vLLM: GPUs per model replica.",
                               rich_help_panel=PANEL)
DATA_PARALLEL = typer.Option(1, "--data-parallel-size", min=1, help="vLLM: model replicas.", rich_help_panel=PANEL)
GPU_MEMORY = typer.Option(None, "--gpu-memory-utilization", min=0.05, max=1.0,
                          help="vLLM: share of GPU memory (host RAM for KV cache on CPU).", rich_help_panel=PANEL)
MODEL_NAME = typer.Option(None, "--model-name", help="openai: the model id at the endpoint.", rich_help_panel=PANEL)
CONCURRENCY = typer.Option(64, "--concurrency", min=1, help="openai/vllm-server: requests in flight over one connection pool.", rich_help_panel=PANEL)
BERTSCORE_MODEL = typer.Option("auto", "--bertscore-model",
                               help="auto (roberta-large if cached, else the bundled MiniLM) or a model name/dir.")
FEWSHOT_DATA = typer.Option([], "--fewshot-data",
                            help="NAME=PATH: the few-shot split for a benchmark (file or folder); repeatable.")

# The flag names above that set EngineSettings (the drift test reads this).
ENGINE_FLAGS = ("--trust-remote-code", "--dtype", "--batch-size", "--base-url", "--max-model-len",
                "--tensor-parallel-size", "--data-parallel-size", "--gpu-memory-utilization", "--model-name",
                "--concurrency")


def engine_settings(
    *, dtype: str, batch_size: int, base_url: Optional[str], max_model_len: Optional[int], tensor_parallel_size: int,
    data_parallel_size: int, gpu_memory_utilization: Optional[float], model_name: Optional[str], concurrency: int,
    trust_remote_code: bool,
) -> EngineSettings:
    return EngineSettings(
        dtype=dtype, batch_size=batch_size, base_url=base_url, max_model_len=max_model_len,
        tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization, model_name=model_name, concurrency=concurrency,
        trust_remote_code=trust_remote_code,
    )
