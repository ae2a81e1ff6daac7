"""The vllm-server backend's process handling, against a fake server (fast) and the real
vLLM api_server (`vllm`): it comes up, answers, and leaves no process behind on close,
on a crash at start-up, on a start-up timeout, on Ctrl-C, or when our process dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sfteval.backends.vllm import vllm_usable
from sfteval.backends.vllm_server import ServerProcess, VLLMServerBackend, engine_flags, group_alive
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.types import GenParams, GenRequest, LoglikRequest

FAKE = textwrap.dedent(
    """
    import json, signal, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    mode, port = sys.argv[1], int(sys.argv[2])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("child", child.pid, flush=True)
    if mode == "crash":
        print("ValueError: boom, no such model", flush=True)
        sys.exit(3)
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "hang":
        time.sleep(600)
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def _send(self, obj):
            data = json.dumps(obj).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            self._send({"data": [{"id": "sfteval"}]})
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            ids = body["prompt"]
            many = ids if ids and isinstance(ids[0], list) else [ids]  # a list of prompts, as vLLM takes
            self._send({"choices": [{"index": i, "text": "t" * len(p), "token_ids": [0] * len(p), "finish_reason": "stop",
                                     "stop_reason": None} for i, p in enumerate(many)]})
    HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


@pytest.fixture()
def fake_cmd(tmp_path: Path) -> Any:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE)
    return lambda mode: [sys.executable, str(script), mode, "{port}"]


def child_pid(server: ServerProcess) -> int:
    for _ in range(100):
        for line in server.log_tail(50).splitlines():
            if line.startswith("child "):
                return int(line.split()[1])
        time.sleep(0.1)
    raise AssertionError("fake server did not report its child")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_engine_flags() -> None:
    kw = {"model": "/m", "dtype": "float32", "max_model_len": 512, "enforce_eager": True, "enable_lora": False, "x": None}
    assert engine_flags(kw) == ["--dtype", "float32", "--max-model-len", "512", "--enforce-eager"]


def test_starts_answers_and_stops_the_whole_group(fake_cmd: Any, tiny_model: Path) -> None:
    b = VLLMServerBackend(str(tiny_model), EngineSettings(), command=fake_cmd("ok"))
    kid = child_pid(b.server)
    pgid = b.server.pgid
    g = b.generate([GenRequest("<s>ab", GenParams(max_new_tokens=3))])[0]
    # The prompt went as token ids (one BOS, not two): the fake answers one "t" per id.
    ids = b.client.encode("<s>ab")
    assert g.texts == ("t" * len(ids),) and g.finish_reasons == ("eos",)
    assert ids.count(ids[0]) == 1
    assert b.info()["port"] == b.port
    b.close()
    b.close()
    assert not group_alive(pgid) and not alive(kid)


def test_ctrl_c_mid_run_then_close_leaves_nothing(fake_cmd: Any, tiny_model: Path) -> None:
    """Ctrl-C while requests are in flight: queued ones are dropped, and the close()
    that the runner's `finally` makes stops the whole group."""
    b = VLLMServerBackend(str(tiny_model), EngineSettings(concurrency=2), command=fake_cmd("ok"))
    pgid, kid = b.server.pgid, child_pid(b.server)

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            b.generate([GenRequest(f"<s>{i}", GenParams(max_new_tokens=2)) for i in range(50)], progress=interrupt)
    finally:
        b.close()
    assert not group_alive(pgid) and not alive(kid)


def test_crash_at_startup_fails_with_log_tail_and_no_orphans(fake_cmd: Any, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pgids: list[int] = []
    real_init = ServerProcess.__init__

    def spy(self: ServerProcess, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        pgids.append(self.pgid)

    monkeypatch.setattr(ServerProcess, "__init__", spy)
    with pytest.raises(SftevalError, match=r"exited with code 3[\s\S]*boom, no such model"):
        VLLMServerBackend(str(tiny_model), EngineSettings(), command=fake_cmd("crash"))
    time.sleep(0.2)
    assert pgids and not group_alive(pgids[0])


def test_startup_timeout_kills_the_server(fake_cmd: Any, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTEVAL_VLLM_SERVER_TIMEOUT_S", "1.5")
    made: list[ServerProcess] = []
    real_init = ServerProcess.__init__

    def spy(self: ServerProcess, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        made.append(self)

    monkeypatch.setattr(ServerProcess, "__init__", spy)
    with pytest.raises(SftevalError, match="did not answer .*/health within 2 s"):
        VLLMServerBackend(str(tiny_model), EngineSettings(), command=fake_cmd("hang"))
    assert not group_alive(made[0].pgid)


def test_ctrl_c_while_starting_leaves_nothing(fake_cmd: Any, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[ServerProcess] = []
    real_init = ServerProcess.__init__

    def spy(self: ServerProcess, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        made.append(self)

    def interrupted(self: ServerProcess, timeout_s: float, poll_s: float = 0.5) -> None:
        child_pid(self)  # the group is up, with a grandchild
        raise KeyboardInterrupt

    monkeypatch.setattr(ServerProcess, "__init__", spy)
    monkeypatch.setattr(ServerProcess, "wait_healthy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        VLLMServerBackend(str(tiny_model), EngineSettings(), command=fake_cmd("hang"))
    assert not group_alive(made[0].pgid)


def test_a_server_ignoring_sigterm_is_killed(fake_cmd: Any, tmp_path: Path) -> None:
    cmd = [c.replace("{port}", "0") for c in fake_cmd("ignore_term")]
    s = ServerProcess(cmd, "http://127.0.0.1:9/health")
    kid = child_pid(s)
    t0 = time.monotonic()
    s.stop(grace_s=1.0)
    assert not group_alive(s.pgid) and not alive(kid)
    assert time.monotonic() - t0 < 10


def test_server_dies_with_its_parent(fake_cmd: Any, tmp_path: Path) -> None:
    """Our process killed with SIGKILL (no finally, no atexit): the server still goes."""
    cmd = [c.replace("{port}", "0") for c in fake_cmd("hang")]
    code = (
        "import sys, time\n"
        "from sfteval.backends.vllm_server import ServerProcess\n"
        f"s = ServerProcess({cmd!r}, 'http://127.0.0.1:9/health')\n"
        "print(s.proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).parents[1]))
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    assert alive(server_pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server_pid)
    os.killpg(server_pid, signal.SIGKILL)  # the fake's own sleeper child (vLLM's follow their parent)


# -- the real server -----------------------------------------------------------------------
@pytest.mark.vllm
def test_real_vllm_server_generates_scores_and_stops(tiny_model: Path) -> None:
    ok, why = vllm_usable()
    if not ok:
        pytest.skip(why)
    b = VLLMServerBackend(str(tiny_model), EngineSettings(dtype="float32", max_model_len=512, concurrency=4))
    pgid = b.server.pgid
    try:
        reqs = [GenRequest(f"<s>Question: {i} + 1?\nAnswer:", GenParams(max_new_tokens=8)) for i in range(6)]
        g = b.generate(reqs)
        assert len(g) == 6 and all(len(x.texts) == 1 for x in g)
        assert all(x.finish_reasons[0] in ("length", "eos", "stop") for x in g)
        again = b.generate(reqs[:2])
        assert again == g[:2]  # greedy: reproducible
        ll = b.loglikelihood([LoglikRequest("<s>Question: pick.\nAnswer:", ("A", "B", " Alpha beta"))])[0]
        assert len(ll.logprobs) == 3 and all(v < 0 for v in ll.logprobs)
        assert ll.num_tokens[0] == 1 and ll.num_tokens[2] > 1
    finally:
        b.close()
    assert not group_alive(pgid)
