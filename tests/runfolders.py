"""Write synthetic run folders exactly as docs/run-format.md describes, for tests.

`write_run(out, label, [FakeBench(...), ...])` -> the run folder path
(`out/runs/<label>-<hash8>/` with results.json and samples/<bench>.jsonl).
`write_sweep(...)` writes `out/sweeps/<name>/sweep.json`; `write_sft(...)` writes an SFT
file in the `messages` format. Metrics in results.json are the means of the per-sample
scores with the same error bars `sfteval.stats.mean_estimate` gives, so a reader sees
what the runner would have written. Files go through the runner's own writer
(`sfteval.runfolder.write`: sample lines, results.json, prompts_digest, sweep.json), so
the fixtures cannot drift from the format. Shared with the dashboard tests: keep it stable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval.runfolder import (
    BenchmarkResult,
    ModelInfo,
    RunResults,
    SampleLine,
    SweepRecord,
    append_samples,
    prompts_digest,
    write_results,
)
from sfteval.runfolder import write_sweep as write_sweep_file
from sfteval.runfolder.records import legacy_role
from sfteval.stats import mean_estimate


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class FakeBench:
    """One benchmark's samples. Lists are per item; None means a sensible default."""

    name: str
    scores: dict[str, Sequence[float]]  # metric -> per-item score
    kind: str = "choice"
    general: bool = False
    role: str | None = None  # default: general when `general`, else train/target by name (legacy_role)
    primary_metric: str | None = None  # default: the first metric
    ids: Sequence[str] | None = None
    prompts: Sequence[str] | None = None
    outputs: Sequence[str] | None = None
    answers: Sequence[Any] | None = None
    references: Sequence[Any] | None = None
    finish_reasons: Sequence[str] | None = None
    meta: Sequence[dict[str, Any]] | None = None
    breakdown_by: str | None = None  # a meta key, e.g. "subject"
    settings: dict[str, Any] = field(
        default_factory=lambda: {
            "num_fewshot": 0,
            "fewshot_ids": [],
            "fewshot_seed": 1234,
            "chat_template": False,
            "gen": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "n": 1, "stop": [], "seed": 0},
        }
    )
    data_sha: str = "d" * 64

    @property
    def n(self) -> int:
        return len(next(iter(self.scores.values())))

    @property
    def bench_role(self) -> str:
        return self.role or legacy_role(self.name, {"general": self.general})


def _item(values: Sequence[Any] | None, i: int, default: Any) -> Any:
    return default if values is None else values[i]


def samples_of(bench: FakeBench) -> list[SampleLine]:
    rows = []
    for i in range(bench.n):
        sid = str(_item(bench.ids, i, str(i)))
        prompt = _item(bench.prompts, i, f"Question {sid}: what is {sid} plus {sid}?\nAnswer:")
        answer = _item(bench.answers, i, str(2 * i))
        rows.append(SampleLine(
            id=sid, prompt=prompt, prompt_hash=sha(prompt),
            outputs=(_item(bench.outputs, i, f" The answer is {answer}."),),
            finish_reasons=(_item(bench.finish_reasons, i, "stop"),),
            answer=answer, reference=_item(bench.references, i, str(2 * i)),
            scores={m: float(v[i]) for m, v in bench.scores.items()}, meta=dict(_item(bench.meta, i, {})),
        ))
    return rows


def bench_entry(bench: FakeBench, rows: list[SampleLine]) -> BenchmarkResult:
    breakdown = {}
    if bench.breakdown_by:
        groups: dict[str, list[SampleLine]] = {}
        for r in rows:
            groups.setdefault(str(r.meta[bench.breakdown_by]), []).append(r)
        breakdown = {
            bench.breakdown_by: {
                g: {m: mean_estimate([float(r.scores[m]) for r in rs]) for m in bench.scores}
                for g, rs in sorted(groups.items())
            }
        }
    return BenchmarkResult(
        name=bench.name, kind=bench.kind, role=bench.bench_role, n=len(rows),
        metrics={m: mean_estimate([float(r.scores[m]) for r in rows]) for m in bench.scores},
        primary_metric=bench.primary_metric or next(iter(bench.scores)), settings=bench.settings,
        data={"source": f"/data/{bench.name}.jsonl", "split": "test", "sha256": bench.data_sha, "rows": len(rows)},
        prompts_digest=prompts_digest({r.id: r.prompt_hash for r in rows}), samples_file=f"samples/{bench.name}.jsonl",
        breakdown=breakdown, timing={"generate_s": 0.1, "score_s": 0.01},
    )


def write_run(
    out: str | Path,
    label: str,
    benches: Sequence[FakeBench],
    *,
    model_path: str | None = None,
    trainer: dict[str, Any] | None = None,
    backend: str = "hf",
    seed: int = 0,
) -> Path:
    """Write `out/runs/<label>-<hash8>/` and return that folder."""
    fingerprint = sha(f"{label}:{model_path}")
    run_id = f"{label}-{sha(fingerprint + backend + str(seed))[:8]}"
    run_dir = Path(out) / "runs" / run_id
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    entries = {}
    for bench in benches:
        rows = samples_of(bench)
        path = run_dir / "samples" / f"{bench.name}.jsonl"
        path.unlink(missing_ok=True)  # rewritten whole, as a fresh run would
        append_samples(path, rows)
        entries[bench.name] = bench_entry(bench, rows)
    results = RunResults(
        run_id=run_id, label=label, created="2026-11-23T17:00:00Z", finished="2026-11-23T17:01:00Z",
        model=ModelInfo(
            kind="checkpoint", path=model_path or f"/ckpt/{label}",
            fingerprint={"path": model_path or f"/ckpt/{label}", "files": {}, "digest": fingerprint},
            trainer=trainer or {},
        ),
        config={"benchmarks": [b.name for b in benches], "suite": None, "backend": backend, "limit": None,
                "seed": seed, "chat_template": "auto", "data": {}},
        environment={"python": "3.11", "platform": "test", "git_sha": None, "packages": {}, "device": "cpu"},
        backend={"name": backend, "dtype": "float32", "device": "cpu", "batch_size": 16},
        benchmarks=entries,
    )
    write_results(run_dir, results)
    (run_dir / "run.log").write_text("synthetic run written by tests/runfolders.py\n", encoding="utf-8")
    return run_dir


def write_sft(path: str | Path, pairs: Sequence[tuple[str, str]], *, prefix: str = "t") -> Path:
    """An SFT file in the `messages` format: one (user, assistant) pair per row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": f"{prefix}{i}", "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
        for i, (u, a) in enumerate(pairs)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_sweep(
    out: str | Path,
    name: str,
    checkpoints: Sequence[dict[str, Any]],
    train_log: Sequence[dict[str, Any]],
    *,
    select: str,
    mode: str = "max",
) -> Path:
    """`out/sweeps/<name>/sweep.json`. Each checkpoint: {"step", "metrics": {bench: {metric: Estimate}}}."""
    bench, metric = select.split("/", 1)
    cks = []
    for ck in checkpoints:
        run_id = ck.get("run_id", f"ckpt-{ck['step']}")
        cks.append({"step": ck["step"], "path": f"/ckpt/step-{ck['step']}", "run_id": run_id,
                    "run_dir": f"/reports/runs/{run_id}", "metrics": ck["metrics"]})
    pick = max if mode == "max" else min
    best = pick(cks, key=lambda c: c["metrics"][bench][metric]["value"])
    data = {
        "schema": "sfteval.sweep/1",
        "source": "/ckpt",
        "checkpoints": cks,
        "train_log": list(train_log),
        "select": {"metric": select, "mode": mode},
        "best": {"step": best["step"], "run_id": best["run_id"], "value": best["metrics"][bench][metric]["value"]},
    }
    path = Path(out) / "sweeps" / name / "sweep.json"
    return write_sweep_file(path, SweepRecord.from_dict(data))
