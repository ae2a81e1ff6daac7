"""Data parallel: N replicas of one backend, each in its own process, over shards of
every call's requests, merged back in request order.

Why processes: vLLM 0.32's `LLM` refuses `data_parallel_size > 1` in one process, and
the hf backend holds the GIL while it tokenizes and decodes. Each replica is started
with `data_parallel_size=1` through the normal constructor (so every backend rule
applies unchanged), on its own slice of the GPUs (`tensor_parallel_size` each, through
CUDA_VISIBLE_DEVICES) or, on a CPU, its share of the cores (OMP/torch threads).

A call's requests are cut into N contiguous slices (sizes differing by at most one);
replica r answers slice r; answers are concatenated, so the output list is in request
order. Sampling seeds are per request, so the outputs are those of one replica given
the same requests, provided the engine is batch-invariant: true of hf with
batch_size=1 and of any engine for greedy decoding up to floating-point rounding of
batched kernels (vLLM documents VLLM_BATCH_INVARIANT=1 for bitwise equality on GPUs).

Not covered: replicas on other machines (use `sfteval run OUT/ --ray` or `--shard`),
load balancing by prompt length (slices are by count), a replica that dies midway
(the call fails with its error; re-running resumes from the samples on disk).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sfteval.backends import backend_class

if TYPE_CHECKING:
    from sfteval.backends import Backend, Progress
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import GenRequest, Generation, Loglik, LoglikRequest

START_TIMEOUT_S = float(os.environ.get("SFTEVAL_REPLICA_START_TIMEOUT_S", "1800"))


def slices(n_items: int, n_parts: int) -> list[tuple[int, int]]:
    """[start, stop) of n_parts contiguous slices covering n_items (sizes differ by <= 1)."""
    base, extra = divmod(n_items, n_parts)
    out, start = [], 0
    for r in range(n_parts):
        stop = start + base + (r < extra)
        out.append((start, stop))
        start = stop
    return out


def replica_env(rank: int, size: int, tensor_parallel: int, gpus: list[str], cpus: int) -> dict[str, str]:
    """Environment for replica `rank`: its GPUs, or its share of the CPU threads."""
    if gpus:
        need = (rank + 1) * tensor_parallel
        if need > len(gpus):
            raise SftevalError(
                f"data parallel {size} x tensor parallel {tensor_parallel} needs {size * tensor_parallel} GPUs; {len(gpus)} visible",
                field="data_parallel_size",
            )
        return {"CUDA_VISIBLE_DEVICES": ",".join(gpus[rank * tensor_parallel : need])}
    threads = str(max(1, cpus // size))
    return {"OMP_NUM_THREADS": threads, "SFTEVAL_TORCH_THREADS": threads}


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def _replica_main(conn: Any, name: str, model_path: str, engine: EngineSettings, env: dict[str, str]) -> None:
    os.environ.update(env)
    try:
        if "SFTEVAL_TORCH_THREADS" in env:
            import torch

            torch.set_num_threads(int(env["SFTEVAL_TORCH_THREADS"]))
        backend = backend_class(name)(model_path, engine)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", backend.info()))
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                break
            method, requests = msg
            try:
                conn.send(("ok", getattr(backend, method)(requests)))
            except BaseException as e:  # noqa: BLE001
                conn.send(("error", f"{type(e).__name__}: {e}"))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        backend.close()


class DataParallelBackend:
    """`engine.data_parallel_size` replicas of backend `name`; same interface as one."""

    chunk_size = 2048  # per instance: the replicated backend's, so chunks (resume points) match N = 1

    def __init__(self, name: str, model_path: str, engine: EngineSettings) -> None:
        self.name = name
        self.size = engine.data_parallel_size
        self.chunk_size = backend_class(name).chunk_size
        one = dataclasses.replace(engine, data_parallel_size=1)
        ctx = mp.get_context("spawn")  # never fork a process holding torch threads / CUDA
        gpus = _visible_gpus()
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        try:
            for rank in range(self.size):
                env = replica_env(rank, self.size, engine.tensor_parallel_size, gpus, os.cpu_count() or 1)
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_replica_main, args=(child, name, model_path, one, env), daemon=True)
                p.start()
                child.close()
                self._procs.append(p)
                self._conns.append(parent)
            self._infos = [self._receive(r, timeout=START_TIMEOUT_S, what="start") for r in range(self.size)]
        except BaseException:
            self.close()
            raise

    def _receive(self, rank: int, timeout: float | None, what: str) -> Any:
        conn, proc = self._conns[rank], self._procs[rank]
        if not conn.poll(timeout):
            raise SftevalError(f"data-parallel replica {rank} did not {what} within {timeout:.0f} s", field="data_parallel_size")
        try:
            status, payload = conn.recv()
        except EOFError:
            raise SftevalError(
                f"data-parallel replica {rank} exited (code {proc.exitcode}) during {what}", field="data_parallel_size"
            ) from None
        if status == "error":
            raise SftevalError(f"data-parallel replica {rank}: {payload}", field="data_parallel_size")
        return payload

    def _run(self, method: str, requests: Sequence[Any], progress: Progress | None) -> list[Any]:
        parts = slices(len(requests), self.size)
        busy = [r for r, (a, b) in enumerate(parts) if b > a]
        for r in busy:
            a, b = parts[r]
            self._conns[r].send((method, list(requests[a:b])))
        out: list[Any] = []
        for r in busy:  # in rank order: the concatenation is request order
            got = self._receive(r, timeout=None, what=method)
            out.extend(got)
            if progress:
                progress(len(got))
        return out

    def generate(self, requests: Sequence[GenRequest], progress: Progress | None = None) -> list[Generation]:
        return self._run("generate", requests, progress)

    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: Progress | None = None) -> list[Loglik]:
        return self._run("loglikelihood", requests, progress)

    def info(self) -> dict[str, Any]:
        return {**self._infos[0], "data_parallel": {"size": self.size, "replicas": "processes", "split": "contiguous slices per call"}}

    def close(self) -> None:
        conns, procs = self._conns, self._procs
        self._conns, self._procs = [], []
        for c in conns:
            try:
                c.send(None)
            except (OSError, BrokenPipeError):
                pass
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        for c in conns:
            c.close()


def open_backend(name: str, model_path: str, engine: EngineSettings) -> Backend:
    """The backend `name` on `model_path`; N replicas when engine.data_parallel_size > 1.
    (Here, not in the package, so that the package never imports this module.)"""
    if engine.data_parallel_size > 1:
        return DataParallelBackend(name, model_path, engine)
    return backend_class(name)(model_path, engine)
