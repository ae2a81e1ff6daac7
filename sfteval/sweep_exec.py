"""How a sweep's checkpoints get evaluated: in this process (one engine per sweep where
the weights allow), or as Ray tasks. `sfteval.sweep` owns what is recorded (sweep.json,
selection); this module only yields each finished checkpoint's run folder.

Local (`evaluate_checkpoints(..., ray=None)`), in step order:
- vllm backend: ONE engine for consecutive full-weight checkpoints of one architecture
  and tokenizer (same config.json apart from names/versions, same tokenizer and
  generation_config files): the next checkpoint's weights are loaded into the running
  engine (vLLM's `reload_weights` worker call, prefix cache reset) instead of starting
  a new one; an adapter sweep on a GPU keeps one base engine and switches LoRARequests.
  Anything else (a different architecture or tokenizer, a full checkpoint after an
  adapter) gets a fresh engine. results.json `backend.engine_reuse` records which path
  each checkpoint took. SFTEVAL_SWEEP_REUSE=0 turns reuse off (a fresh engine each).
- other backends: one backend per checkpoint, as before (hf starts in about a second).

Ray (`ray="local"` starts a local cluster, else the address of a running one): each
checkpoint is a task reserving `tensor_parallel_size` GPUs (CPUs on a cluster without
GPUs) that runs `execute_run` into a temporary folder on its worker and returns the
folder's files; the driver writes them to OUT/runs/<run_id>/ (a temporary name, then
one rename), so no shared filesystem is needed for outputs (the checkpoints must be
readable at the same path on the workers). A checkpoint whose finished run folder is
already in OUT (same checkpoint path and fingerprint, same recorded config) is not
sent again: interrupting the driver loses only the checkpoints in flight.

Not covered: reusing an engine inside a Ray task across checkpoints (each task is one
checkpoint), resuming a half-evaluated checkpoint inside Ray (it is re-run whole).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sfteval.config import RunConfig
from sfteval.errors import SftevalError
from sfteval.runfolder import read_results

Item = tuple[int, Path, RunConfig]  # (step, checkpoint folder, its run config)
_IGNORED_CONFIG_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "name_or_path"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "generation_config.json")


def evaluate_checkpoints(ckpts: Sequence[tuple[int, Path]], cfg: RunConfig, name: str, ray: str | None = None) -> Iterator[tuple[int, Path, Path]]:
    """(step, checkpoint, run folder) for every checkpoint, as each finishes."""
    items = [(step, path, dataclasses.replace(cfg, checkpoint=str(path), label=f"{name}-step{step}")) for step, path in ckpts]
    if ray is not None:
        yield from _ray_sweep(items, cfg, ray)
    else:
        yield from _local_sweep(items, cfg)


# -- local: one engine per sweep where the weights allow ---------------------------------
def engine_key(checkpoint: str) -> str:
    """Equal for checkpoints one running engine can switch between by reloading weights."""
    from sfteval.backends.adapters import read_adapter

    path = Path(checkpoint)
    adapter = read_adapter(path)
    h = hashlib.sha256()
    if adapter is not None:
        h.update(b"adapter:" + str(adapter.get("base_model_name_or_path")).encode())
    else:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        h.update(json.dumps({k: v for k, v in cfg.items() if k not in _IGNORED_CONFIG_KEYS}, sort_keys=True).encode())
    for f in _TOKENIZER_FILES:
        p = path / f
        if p.is_file():
            h.update(f.encode() + p.read_bytes())
    return h.hexdigest()


class SweepEngine:
    """A Backend for `execute_run` that keeps one engine across a sweep's checkpoints.

    Opened lazily on the first request (a resumed checkpoint with every sample on disk
    loads nothing); `point_at(ckpt)` before each run; the weights follow on first use.
    """

    def __init__(self, backend_name: str, cfg: RunConfig, why: str) -> None:
        from sfteval.backends import backend_class

        self.name = backend_name
        self.chunk_size = backend_class(backend_name).chunk_size
        self.selected_because = why
        self._engine_settings = cfg.engine
        self._backend: Any = None
        self._key: str | None = None
        self._loaded: str | None = None
        self._target: str | None = None
        self._how = ""
        self.engines_started = 0

    def point_at(self, checkpoint: str) -> None:
        self._target = checkpoint

    def _ready(self) -> Any:
        from sfteval.backends.parallel import open_backend

        assert self._target is not None
        if self._loaded == self._target:
            return self._backend
        key = engine_key(self._target)
        why_new = "first checkpoint" if self._backend is None else "architecture, tokenizer or weight kind differs"
        switched = False
        if self._backend is not None and key == self._key and hasattr(self._backend, "switch_to"):
            try:
                self._how = self._backend.switch_to(self._target)  # "weights reloaded" | "adapter switched"
                switched = True
            except SftevalError as e:  # this engine cannot take these weights in place
                why_new = str(e).splitlines()[0]
        if not switched:
            self.close()
            self._backend = open_backend(self.name, self._target, self._engine_settings)
            self.engines_started += 1
            self._how = f"new engine ({why_new})"
        self._key, self._loaded = key, self._target
        return self._backend

    def generate(self, requests: Any, progress: Any = None) -> Any:
        return self._ready().generate(requests, progress)

    def loglikelihood(self, requests: Any, progress: Any = None) -> Any:
        return self._ready().loglikelihood(requests, progress)

    def info(self) -> dict[str, Any]:
        info = dict(self._ready().info())
        info["engine_reuse"] = {"path": self._how, "engines_started_in_sweep": self.engines_started}
        return info

    def close(self) -> None:
        b, self._backend = self._backend, None
        self._loaded = self._key = None
        if b is not None:
            b.close()


def _local_sweep(items: list[Item], cfg: RunConfig) -> Iterator[tuple[int, Path, Path]]:
    import gc

    from sfteval import runner

    backend_name, why = runner.choose_backend(cfg.backend, str(items[0][1])) if items else ("hf", "")
    reuse = backend_name == "vllm" and os.environ.get("SFTEVAL_SWEEP_REUSE", "1") != "0"
    engine = SweepEngine(backend_name, cfg, why) if reuse else None
    try:
        for step, path, run_cfg in items:
            if engine is not None:
                engine.point_at(str(path))
            run_dir = runner.execute_run(run_cfg, backend=engine)
            if engine is None:
                gc.collect()  # the runner closed the engine; let its memory go before the next one
            yield step, path, run_dir
    finally:
        if engine is not None:
            engine.close()


# -- Ray: one task per checkpoint, run folders written by the driver ---------------------
def _canon_config(cfg: RunConfig) -> str:
    return json.dumps(json.loads(json.dumps(cfg.to_dict(), default=str)), sort_keys=True)


def finished_runs(out: str | Path) -> dict[tuple[str, str], Path]:
    """(checkpoint path, canonical config) -> run folder, for every finished run under OUT."""
    found: dict[tuple[str, str], Path] = {}
    for res in sorted(Path(out, "runs").glob("*/results.json")):
        if res.parent.name.startswith("."):
            continue  # a driver killed while writing left its temporary folder: not a run
        try:
            config = read_results(res.parent).config
            key = (str(config["checkpoint"]), json.dumps(config, sort_keys=True))
            found[key] = res.parent
        except (SftevalError, OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: not evidence of a finished run
    return found


def _is_finished(run_dir: Path | None, checkpoint: Path) -> bool:
    if run_dir is None:
        return False
    from sfteval.provenance import fingerprint

    try:
        doc = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        return doc["model"]["fingerprint"]["digest"] == fingerprint(str(checkpoint))["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def run_task(run_cfg: RunConfig, threads: int | None = None) -> tuple[str, dict[str, bytes]]:
    """Body of a Ray task: evaluate one checkpoint in a temporary folder; return its files."""
    from sfteval.runner import execute_run

    if threads:  # the CPUs Ray reserved for this task, not every core of the node
        import torch

        torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="sfteval-task-"))
    try:
        run_dir = execute_run(dataclasses.replace(run_cfg, out=str(tmp)))
        res = run_dir / "results.json"
        doc = json.loads(res.read_text(encoding="utf-8"))
        doc["config"]["out"] = run_cfg.out  # recorded as the driver's output root, as a local run would
        from sfteval.fileio import atomic_write_json

        atomic_write_json(res, doc)
        files = {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
        return run_dir.name, files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_folder(out: str | Path, run_id: str, files: dict[str, bytes]) -> Path:
    """Write a task's run folder under OUT/runs/ all at once (temp name, then rename)."""
    runs = Path(out) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    final = runs / run_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.incoming-", dir=runs))
    for rel, data in files.items():
        p = tmp / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise SftevalError(f"a task returned an unsafe path '{rel}'", path=str(final))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if final.exists():  # a half-finished local run of the same id: the task's complete one wins
        old = runs / f".{run_id}.replaced-{os.getpid()}"
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    tmp.rename(final)
    return final


def _ray_sweep(items: list[Item], cfg: RunConfig, address: str) -> Iterator[tuple[int, Path, Path]]:
    try:
        import ray
    except ImportError:
        raise SftevalError("--ray needs Ray", field="ray", hint="pip install 'sfteval[ray]'") from None
    done = finished_runs(cfg.out)
    todo: list[Item] = []
    for step, path, run_cfg in items:
        run_dir = done.get((str(path), _canon_config(run_cfg)))
        if _is_finished(run_dir, path):
            yield step, path, run_dir  # type: ignore[misc]
        else:
            todo.append((step, path, run_cfg))
    if not todo:
        return
    started_here = not ray.is_initialized()
    if started_here:
        env = {k: os.environ[k] for k in ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if k in os.environ}
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env} if env else None)
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        tp = max(1, cfg.engine.tensor_parallel_size) * max(1, cfg.engine.data_parallel_size)
        resources = {"num_gpus": tp, "num_cpus": 1} if gpus else {"num_cpus": tp}
        task = ray.remote(max_retries=0, **resources)(run_task)
        pending = {task.remote(run_cfg, None if gpus else tp): (step, path) for step, path, run_cfg in todo}
        failed: list[str] = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                step, path = pending.pop(ready[0])
                try:
                    run_id, files = ray.get(ready[0])
                except Exception as e:  # noqa: BLE001 - a task's error: keep the others' results
                    failed.append(f"checkpoint-{step}: {_task_error(e)}")
                    continue
                yield step, path, write_folder(cfg.out, run_id, files)
        finally:
            for ref in pending:  # interrupted: nothing in flight keeps running for nobody
                ray.cancel(ref, force=True)
        if failed:
            raise SftevalError(f"{len(failed)} checkpoint(s) failed on Ray:\n  " + "\n  ".join(failed),
                               hint="the finished checkpoints are written; fix the error and re-run to do the rest")
    finally:
        if started_here:
            ray.shutdown()


def _task_error(e: Exception) -> str:
    cause = getattr(e, "cause", None)
    return str(cause) if cause is not None else f"{type(e).__name__}: {e}"
