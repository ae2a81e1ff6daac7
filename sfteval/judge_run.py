"""`sfteval judge` as a library call: pair two runs, judge every item in both orders
through a backend, write (or resume) a run-like folder, and optionally cast the judge's
verdicts as votes of rater `judge:<name>` in the ratings store.

The folder is `OUT/runs/judge-<name>-<hash8>/`, the hash over everything that shapes
the verdicts (judge fingerprint or endpoint+model, the two run ids, benchmarks, limit,
rubric SHA-256, generation settings), so a rerun of the same command resumes and a
different judge never mixes into an old folder. results.json follows the run schema
(`sfteval.run/1`) with `model.kind = "judge"` and one benchmark `judge_<bench>` per
judged benchmark, so compare / gate / report / dashboard need nothing new; the samples
file holds each item's outcome, scores, parsed verdicts and the raw replies.

Not covered: a run lock against two concurrent judges on one folder (run them on
different --out roots); sampling judges (temperature is 0).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.fileio import sha256_text, truncate_torn_tail
from sfteval.judge import (
    ORDERS,
    RUBRIC,
    RUBRIC_SHA256,
    RUBRIC_VERSION,
    ItemVerdict,
    JudgeModel,
    PairItem,
    Reply,
    aggregate,
    item_scores,
    judge_items,
    prompts_for,
    prompts_hash,
    question_text,
)
from sfteval.runfolder import (
    RunResults,
    SampleLine,
    append_samples,
    common_benchmarks,
    iter_sample_lines,
    prompts_digest,
    read_results,
    read_samples,
    samples_file,
    write_results,
)
from sfteval.types import RUN_SCHEMA

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class JudgeSettings:
    judge: str  # a checkpoint folder (hf / vllm / vllm-server) or a model id at an endpoint (openai)
    backend: str = "auto"
    benchmarks: tuple[str, ...] = ()  # default: every generative benchmark both runs have
    limit: int | None = None
    max_new_tokens: int = 512
    seed: int = 0
    out: str = "reports"
    chunk: int = 16  # items per batch (two requests each); each batch is on disk when done
    engine: EngineSettings = field(default_factory=EngineSettings)


def judge_name(s: JudgeSettings) -> str:
    raw = s.engine.model_name or s.judge if s.backend == "openai" else Path(s.judge).resolve().name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(raw)).strip("-")[:48] or "judge"


def rater_name(s: JudgeSettings) -> str:
    return f"judge:{judge_name(s)}"


class BackendJudge:
    """A JudgeModel over one of our backends, opened on first use (a fully resumed run
    loads nothing)."""

    def __init__(self, s: JudgeSettings) -> None:
        self.s = s
        self._backend: Any = None
        self._render: Callable[[str], str] = lambda text: text
        self.chat_template: bool | None = None

    def _open(self) -> Any:
        if self._backend is None:
            from sfteval.backends import backend_class

            if self.s.backend == "openai":
                from sfteval.backends.openai import OpenAIBackend

                # One chat message per prompt: the server applies the judge's template.
                self._backend = OpenAIBackend(self.s.judge, self.s.engine, api="chat")
                self.chat_template = True
            else:
                from sfteval.backends.hf import load_tokenizer
                from sfteval.prompts import make_renderer
                from sfteval.runner import choose_backend
                from sfteval.types import Message

                name = choose_backend(self.s.backend)[0]
                renderer = make_renderer(load_tokenizer(self.s.judge), "auto")
                self.chat_template = renderer.chat
                self._render = lambda text: renderer.conversation([Message("user", text)])
                self._backend = backend_class(name)(self.s.judge, self.s.engine)
        return self._backend

    def reply(self, prompts: Sequence[str]) -> list[Reply]:
        from sfteval.types import GenParams, GenRequest

        backend = self._open()
        params = GenParams(max_new_tokens=self.s.max_new_tokens, temperature=0.0)
        gens = backend.generate([GenRequest(self._render(p), params) for p in prompts])
        # the backend's finish reason travels to the samples line: a judge reply cut at
        # max_new_tokens is recorded as `length`, not as a clean stop
        return [Reply(g.texts[0], str(g.finish_reasons[0]) if g.finish_reasons else "unknown") if g.texts
                else Reply("", "unknown") for g in gens]

    def info(self) -> dict[str, Any]:
        return {**(self._backend.info() if self._backend is not None else {"name": self.s.backend}),
                "chat_template_used": self.chat_template}

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def load_results(run: Path) -> RunResults:
    return read_results(run)


def load_samples(run: Path, benchmark: str) -> dict[str, SampleLine]:
    return read_samples(samples_file(run, benchmark))


def pair_items(base_run: Path, tuned_run: Path, benchmark: str, limit: int | None) -> list[PairItem]:
    base = load_samples(base_run, benchmark)
    tuned = load_samples(tuned_run, benchmark)
    items = [PairItem(i, question_text(b.prompt), b.output, tuned[i].output)
             for i, b in base.items() if i in tuned]
    if not items:
        raise SftevalError(f"the two runs share no item ids on '{benchmark}'", path=str(tuned_run), field="benchmark")
    return items if limit is None else items[:limit]


def _is_generative(run: Path, benchmark: str) -> bool:
    first = next(iter(load_samples(run, benchmark).values()), None)
    return first is not None and first.finish_reason != "loglik"


def _benchmarks(base_run: Path, tuned_run: Path, wanted: Sequence[str]) -> list[str]:
    common = common_benchmarks(base_run, tuned_run)
    if wanted:
        missing = [b for b in wanted if b not in common]
        if missing:
            raise SftevalError(f"benchmark '{missing[0]}' is not in both runs", path=str(tuned_run), field="benchmark",
                               hint=f"in both: {', '.join(common) or 'none'}")
        bad = [b for b in wanted if not _is_generative(base_run, b)]
        if bad:
            raise SftevalError(f"'{bad[0]}' is scored by log-likelihood: there are no written answers to judge",
                               field="benchmark")
        return list(wanted)
    found = [b for b in common if _is_generative(base_run, b)]
    if not found:
        raise SftevalError("the two runs share no generative benchmark", path=str(tuned_run), field="benchmark")
    return found


def _judge_key(s: JudgeSettings) -> dict[str, Any]:
    if s.backend == "openai":
        return {"endpoint": s.engine.base_url, "model": s.engine.model_name or s.judge}
    from sfteval.provenance import fingerprint

    return {"fingerprint": fingerprint(s.judge)["digest"]}


def run_judge(base_run: str | Path, tuned_run: str | Path, s: JudgeSettings, model: JudgeModel | None = None,
              progress: Progress | None = None) -> Path:
    """Judge (or resume judging) every item; returns the judge run folder."""
    from sfteval.provenance import environment

    base_run, tuned_run = Path(base_run), Path(tuned_run)
    base_res, tuned_res = load_results(base_run), load_results(tuned_run)
    if base_run.resolve() == tuned_run.resolve():
        raise SftevalError("base and tuned are the same run", path=str(base_run))
    benches = _benchmarks(base_run, tuned_run, s.benchmarks)
    items = {b: pair_items(base_run, tuned_run, b, s.limit) for b in benches}  # bad input fails before any model
    gen = {"max_new_tokens": s.max_new_tokens, "temperature": 0.0}
    key = {"judge": _judge_key(s), "base": base_res.run_id, "tuned": tuned_res.run_id,
           "benchmarks": benches, "limit": s.limit, "rubric_sha256": RUBRIC_SHA256, "gen": gen}
    run_id = f"judge-{judge_name(s)}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]}"
    run_dir = Path(s.out) / "runs" / run_id
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    owned = model is None
    judge = model if model is not None else BackendJudge(s)
    results: dict[str, Any] = {}
    try:
        for bench in benches:
            t0 = time.perf_counter()
            path = run_dir / "samples" / f"judge_{bench}.jsonl"
            verdict_s = _fill(judge, items[bench], path, s.chunk, lambda d, n, b=bench: progress and progress(b, d, n))
            rows = _read(path, items[bench])
            scores = [dict(r.scores) for r in rows]
            unparsed = sum(v is None for r in rows for v in r.meta["verdicts"].values())
            metrics = aggregate(scores)
            results[f"judge_{bench}"] = {
                "kind": "judge", "role": "target", "general": False,
                "description": f"pairwise judge of '{bench}': tuned vs base, both orders per item",
                "n": len(rows),
                "metrics": {k: v.to_dict() for k, v in metrics.items()},
                "primary_metric": "win_rate",
                "breakdown": {},
                "counts": {o: sum(r.answer == o for r in rows) for o in ("win", "tie", "loss")},
                "unparsed_verdicts": unparsed,
                "settings": {"judge": judge_name(s), "rubric": RUBRIC_VERSION, "rubric_sha256": RUBRIC_SHA256,
                             "gen": gen, "orders": list(ORDERS), "tie_rule": "verdict changes with the order -> tie"},
                "data": {"benchmark": bench, "base_run": str(base_run), "tuned_run": str(tuned_run),
                         "sha256": None, "rows": len(rows)},
                "prompts_digest": prompts_digest({r.id: r.prompt_hash for r in rows}),
                "samples_file": f"samples/judge_{bench}.jsonl",
                "timing": {"judge_s": round(verdict_s, 3), "total_s": round(time.perf_counter() - t0, 3)},
            }
        backend_info = judge.info()
    finally:
        if owned:
            judge.close()  # type: ignore[attr-defined]
    doc = {
        "schema": RUN_SCHEMA, "run_id": run_id, "label": rater_name(s), "created": created,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"kind": "judge", "path": None if s.backend == "openai" else str(Path(s.judge).resolve()),
                  "judge": judge_name(s), "fingerprint": {"digest": hashlib.sha256(json.dumps(key["judge"], sort_keys=True).encode()).hexdigest()}},
        "config": {**{k: v for k, v in asdict(s).items() if k != "engine"}, "engine": asdict(s.engine)},
        "environment": environment(),
        "backend": backend_info,
        "prompting": {"rubric": RUBRIC_VERSION, "rubric_sha256": RUBRIC_SHA256},
        "rubric": RUBRIC,
        "judged": {"base": {"run_id": base_res.run_id, "path": str(base_run)},
                   "tuned": {"run_id": tuned_res.run_id, "path": str(tuned_run)}},
        "skipped": {},
        "benchmarks": results,
    }
    write_results(run_dir, RunResults.from_dict(doc))  # checked against the run schema, then written
    return run_dir


def _fill(judge: JudgeModel, items: list[PairItem], path: Path, chunk: int, progress: Callable[[int, int], Any]) -> float:
    truncate_torn_tail(path)
    expected = {it.item_id: prompts_hash(prompts_for(it)) for it in items}
    done: set[str] = set()
    if path.is_file():
        for line, rec in iter_sample_lines(path):
            sid = rec.id
            if expected.get(sid) != rec.meta.get("judge_prompts_sha256"):
                raise SftevalError(f"item '{sid}' on disk was judged on other prompts or outputs", path=str(path),
                                   line=line, field="meta.judge_prompts_sha256",
                                   hint="the runs changed since: delete this judge folder or use another --out")
            done.add(sid)
    spent = 0.0
    progress(len(done), len(items))
    todo = [it for it in items if it.item_id not in done]
    for start in range(0, len(todo), max(1, chunk)):
        batch = todo[start : start + chunk]
        t0 = time.perf_counter()
        verdicts = judge_items(judge, batch)
        spent += time.perf_counter() - t0
        append_samples(path, [_line(it, v, expected[it.item_id]) for it, v in zip(batch, verdicts)])
        done.update(it.item_id for it in batch)
        progress(len(done), len(items))
    return spent


def _line(item: PairItem, v: ItemVerdict, judged_hash: str) -> SampleLine:
    """One judged item: its two replies (base first, then tuned first) with their finish
    reasons as the line's outputs, written by the one samples writer (which refuses a
    finish reason docs/run-format.md does not list)."""
    return SampleLine(
        id=item.item_id, prompt=item.question, prompt_hash=sha256_text(item.question),
        outputs=tuple(v.replies[o] for o in ORDERS),
        finish_reasons=tuple(v.finish_reasons.get(o, "unknown") for o in ORDERS),
        answer=v.outcome, reference=None, scores=item_scores(v),
        meta={"verdicts": v.verdicts, "preferred": v.preferred, "consistent": v.consistent,
              "replies": v.replies, "judge_prompts_sha256": judged_hash,
              "base_output": item.base_output, "tuned_output": item.tuned_output},
    )


def _read(path: Path, items: list[PairItem]) -> list[SampleLine]:
    order = {it.item_id: i for i, it in enumerate(items)}
    rows = [r for _, r in iter_sample_lines(path) if r.id in order]
    return sorted(rows, key=lambda r: order[r.id])


def record_votes(run_dir: str | Path, db: str, study: str | None = None) -> tuple[str, str, int]:
    """Cast a judge run's verdicts as votes of rater `judge:<name>`: a win is a vote for the
    side the tuned output sits on for that rater, a loss for the other, a tie as "tie".
    The study is `study` (it must exist), else the one study of these two runs on the
    benchmark already in the store (the humans' study), else their default study
    (created). Items outside the study are skipped; votes already there are kept (the
    store refuses a second vote). Returns (study, rater, votes written)."""
    from sfteval.ratings import VoteStore, build_study, tuned_side

    run_dir = Path(run_dir)
    res = load_results(run_dir)
    if res.model.kind != "judge":
        raise SftevalError("not a judge run (model.kind != 'judge')", path=str(run_dir / "results.json"))
    store = VoteStore(db)
    rater = res.label
    written = 0
    study_id = study
    for bench_key, info in res.benchmarks.items():
        data = info.data
        if study is None:
            study_id = _study_of(store, data["base_run"], data["tuned_run"], data["benchmark"])
            if study_id is None:
                built = build_study(data["base_run"], data["tuned_run"], data["benchmark"])
                store.create_study(built)
                study_id = built.study_id
        assert study_id is not None
        items = set(store.item_ids(study_id))
        for item_id, row in load_samples(run_dir, bench_key).items():
            if item_id not in items:
                continue
            side = tuned_side(study_id, rater, item_id)
            choice = {"win": side, "loss": "B" if side == "A" else "A", "tie": "tie"}[row.answer]
            written += store.record_vote(study_id, item_id, rater, choice)
    return str(study_id), rater, written


def _study_of(store: Any, base_run: str, tuned_run: str, benchmark: str) -> str | None:
    """The study of these two runs on `benchmark` in the store: None if there is none,
    an error naming them if there are several (say which with --study)."""
    key = (str(Path(base_run).resolve()), str(Path(tuned_run).resolve()), benchmark)
    found = [s.study_id for s in store.studies()
             if (str(Path(s.base_run).resolve()), str(Path(s.tuned_run).resolve()), s.benchmark) == key]
    if len(found) > 1:
        raise SftevalError(f"{len(found)} studies compare these runs on '{benchmark}': {', '.join(found)}",
                           field="study", hint="say which with --study NAME")
    return found[0] if found else None
