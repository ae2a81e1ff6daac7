"""The one loop: a checkpoint (or replayed outputs) x benchmarks -> a run folder.

For each benchmark: build samples (prompts exactly as sent), skip those already in
`samples/<name>.jsonl` (resume), generate or score the rest in fixed chunks, score them,
append each chunk's lines at once; then aggregate from the samples file alone and
write results.json last, atomically. Chunks sit at fixed positions in the sample list
and sampling seeds are per sample, so a run killed midway and resumed produces the
same samples (and results) as an uninterrupted one.

The model is loaded lazily: a run whose samples are all on disk loads nothing.

One writer at a time: the run folder is locked (`sfteval.runlock`) for the whole run, and
`sfteval.runstate` keeps created time, backend info and timings across sessions, so a
resumed run adds to them. A finished run that is re-run generates nothing and leaves
results.json untouched (byte for byte); a run that fails before its first sample leaves
no run folder behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sfteval.backends import Backend, backend_class
from sfteval.backends.parallel import open_backend
from sfteval.benchmarks import BenchmarkSpec
from sfteval.config import RunConfig
from sfteval.errors import SftevalError
from sfteval import runstate
from sfteval.fileio import sha256_file, sha256_text, truncate_torn_tail
from sfteval.kinds import BuildContext, Built, ScoreRecord, get_kind
from sfteval import preflight
from sfteval.hub import localize
from sfteval.prompts import make_renderer
from sfteval.provenance import environment, fingerprint
from sfteval.preflight import select_specs
from sfteval.runfolder import (
    BenchmarkResult,
    ModelInfo,
    RunResults,
    SampleLine,
    append_samples,
    iter_sample_lines,
    prompts_digest,
    write_results,
)
from sfteval.runlock import RunLock
from sfteval.shard import parse_shard, shard_built
from sfteval.types import Generation, GenRequest, Loglik, Sample

Reporter = Callable[[str, int, int], None]  # (benchmark, done, total)


def choose_backend(name: str, checkpoint: str | None = None) -> tuple[str, str]:
    """Resolve `auto` (rule and wording: sfteval.backends.auto). Returns (name, why)."""
    from sfteval.backends.auto import choose_backend as choose

    return choose(name, checkpoint)


def _label(cfg: RunConfig) -> str:
    raw = cfg.label or (Path(cfg.checkpoint).resolve().name if cfg.checkpoint else "replay")
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in raw).strip("-") or "run"


def plan_id(label: str, model_key: str, specs: Sequence[BenchmarkSpec], cfg: RunConfig, backend: str) -> str:
    key = json.dumps(
        {
            "model": model_key,
            "benchmarks": {s.name: s.settings() for s in specs},
            "data": cfg.data,
            "backend": backend,
            "chat_template": cfg.chat_template,
            "limit": cfg.limit,
            "seed": cfg.seed,
            "engine_dtype": cfg.engine.dtype,
        },
        sort_keys=True,
        default=str,
    )
    return f"{label}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def execute_run(cfg: RunConfig, backend: Backend | None = None, report: Reporter | None = None) -> Path:
    """Run (or resume) one evaluation; returns the run folder."""
    from sfteval.replay import load_replay

    cfg = localize(cfg)  # a hub id becomes its snapshot folder (the fingerprint records repo id + commit)
    specs, skipped = select_specs(cfg)
    specs = preflight.prepare(specs, cfg)  # --data / --fewshot-data in place
    replayed = load_replay(cfg.replay, [s.name for s in specs]) if cfg.replay else None
    if cfg.replay:
        model = {"kind": "replay", "path": None, "fingerprint": {"replay": cfg.replay, "sha256": sha256_file(cfg.replay)}}
        backend_name, why = "replay", "outputs read from file"
        model_key = model["fingerprint"]["sha256"]
    else:
        if not cfg.checkpoint:
            raise SftevalError("no checkpoint given", hint="sfteval run CKPT ... or sfteval run --replay FILE --name LABEL")
        fp = fingerprint(cfg.checkpoint)
        model = {"kind": "checkpoint", "path": fp["path"], "fingerprint": fp, "trainer": fp.get("trainer")}
        backend_name, why = (backend.name, getattr(backend, "selected_because", "given")) if backend is not None else choose_backend(cfg.backend, cfg.checkpoint)
        model_key = fp["digest"]
    tokenizer = None
    if cfg.checkpoint:
        from sfteval.backends.hf import load_tokenizer

        tokenizer = load_tokenizer(cfg.checkpoint, cfg.engine.trust_remote_code)
    renderer = make_renderer(tokenizer, cfg.chat_template)
    # Every benchmark's data read and checked now, before any model or engine starts.
    built = preflight.build_all(specs, lambda s: BuildContext(renderer, preflight.data_override(s, cfg), cfg.limit, cfg.seed))
    label = _label(cfg)
    run_id = plan_id(label, model_key, specs, cfg, backend_name)
    if cfg.shard:  # a shard's folder of its own (sfteval.shard)
        run_id += parse_shard(cfg.shard).suffix
    run_dir = Path(cfg.out) / "runs" / run_id
    plan = _Plan(specs, skipped, replayed, model, backend_name, why, renderer, label, run_id, run_dir, built)
    lock = RunLock(run_dir).acquire()  # refuses a second live writer, naming its pid
    try:
        return _execute_locked(cfg, plan, backend, report)
    finally:
        if not (run_dir / "results.json").is_file() and not _has_samples(run_dir):
            _discard_empty(run_dir)  # failed before its first sample: leave nothing a reader takes for a run
        lock.release()
        _rmdir_quiet(run_dir)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything decided before the run folder is locked."""

    specs: list[BenchmarkSpec]
    skipped: dict[str, str]
    replayed: Any
    model: dict[str, Any]
    backend_name: str
    why: str
    renderer: Any
    label: str
    run_id: str
    run_dir: Path
    built: dict[str, Built]  # by preflight.build_all


def _has_samples(run_dir: Path) -> bool:
    return any(p.stat().st_size > 0 for p in (run_dir / "samples").glob("*.jsonl"))


def _discard_empty(run_dir: Path) -> None:
    """Remove what a run wrote before its first sample (only files we know; never others)."""
    for p in (run_dir / "samples").glob("*.jsonl"):
        p.unlink(missing_ok=True)
    (run_dir / runstate.PROGRESS_NAME).unlink(missing_ok=True)
    _rmdir_quiet(run_dir / "samples")


def _rmdir_quiet(path: Path) -> None:
    try:
        path.rmdir()  # only when empty: a folder with anything in it stays
    except OSError:
        pass


def _clean_temp_files(run_dir: Path) -> None:
    """Temp files of atomic writes cut short by a kill; safe to drop while we hold the lock."""
    for p in (*run_dir.glob(".*.tmp"), *(run_dir / "samples").glob(".*.tmp")):
        p.unlink(missing_ok=True)


def _execute_locked(cfg: RunConfig, plan: _Plan, backend: Backend | None, report: Reporter | None) -> Path:
    run_dir, run_id, backend_name, replayed = plan.run_dir, plan.run_id, plan.backend_name, plan.replayed
    _clean_temp_files(run_dir)
    state = runstate.begin(runstate.load_prior(run_dir, run_id), run_id)
    start = state
    chunk = backend.chunk_size if backend is not None else (64 if cfg.replay else backend_class(backend_name).chunk_size)

    opened: list[Backend] = [backend] if backend is not None else []
    load_s = [0.0]  # model/engine start-up, kept out of the generation time

    def get_backend() -> Backend:
        if not opened:
            t = time.perf_counter()
            opened.append(open_backend(backend_name, cfg.checkpoint, cfg.engine))
            load_s[0] = time.perf_counter() - t
        return opened[0]

    results: dict[str, BenchmarkResult] = {}
    try:
        for spec in plan.specs:
            kind = get_kind(spec.kind)
            built = shard_built(plan.built[spec.name], parse_shard(cfg.shard), chunk)
            t0 = time.perf_counter()
            source = None
            if replayed:
                if cfg.limit is None:
                    replayed.check_ids(spec.name, {s.id for s in built.samples})
                source = lambda samples, name=spec.name: replayed.outputs_for(name, [s.id for s in samples])  # noqa: E731
            path = run_dir / "samples" / f"{spec.name}.jsonl"
            if source is None:
                source = lambda samples: _from_backend(get_backend(), samples)  # noqa: E731
            hashes = {s.id: sha256_text(s.prompt) for s in built.samples}
            loaded_before = load_s[0]

            def session_timing(t: dict[str, float], loaded_before: float = loaded_before) -> dict[str, float]:
                if load_s[0] == loaded_before:
                    return t
                # the model was opened inside this benchmark's first chunk: not generation time
                return {**t, "generate_s": round(t["generate_s"] - load_s[0], 3), "model_load_s": round(load_s[0], 3)}

            def progress(t: dict[str, float], new: int, name: str = spec.name) -> None:
                nonlocal state
                info = opened[0].info() if opened else None
                state = runstate.add_session_work(state, start, name, session_timing(t), new, info)
                runstate.save(run_dir, state)

            timing = session_timing(_fill(spec, kind, built, hashes, path, chunk, source, report, progress))
            records = _read_ordered(path, built.samples)
            agg = kind.aggregate(spec, records)
            aggregate_s = round(time.perf_counter() - t0 - sum(timing.values()), 3)
            info = opened[0].info() if opened else None
            state = runstate.add_session_work(state, start, spec.name, {**timing, "aggregate_s": aggregate_s},
                                              state.sessions[-1]["new_samples"].get(spec.name, 0), info)
            results[spec.name] = BenchmarkResult(
                name=spec.name, kind=spec.kind, role=spec.role, description=spec.description, n=len(records),
                metrics=agg.metrics, primary_metric=agg.primary, breakdown=agg.breakdown, settings=built.settings,
                data=built.data, prompts_digest=prompts_digest(hashes), samples_file=f"samples/{spec.name}.jsonl",
                timing=state.timings[spec.name], source=spec.source,
            )
    finally:
        for b in opened:
            if b is not backend:
                b.close()
    if not runstate.generated_anything(state) and _finished_as_planned(run_dir, results):
        # A finished run re-run: nothing new, so results.json stays exactly as it was.
        (run_dir / runstate.PROGRESS_NAME).unlink(missing_ok=True)
        return run_dir
    backend_info = state.backend or {"name": backend_name}
    extra: dict[str, Any] = {"sessions": list(state.sessions)}
    if cfg.shard:
        shard = parse_shard(cfg.shard)
        extra["shard"] = shard.record(run_id.removesuffix(shard.suffix), chunk)
    doc = RunResults(
        run_id=run_id, label=plan.label, created=state.created,
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"), model=ModelInfo.from_dict(plan.model),
        config=cfg.to_dict(), environment=environment(), backend={**backend_info, "selected_because": plan.why},
        prompting=plan.renderer.info(), skipped=plan.skipped, benchmarks=results, extra=extra,
    )
    write_results(run_dir, doc)  # the one place results.json is written
    (run_dir / runstate.PROGRESS_NAME).unlink(missing_ok=True)  # results.json carries it all now
    return run_dir


def _finished_as_planned(run_dir: Path, results: dict[str, BenchmarkResult]) -> bool:
    """results.json is there and holds every planned benchmark with the same samples."""
    try:
        old = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        benches = old["benchmarks"]
        return set(benches) == set(results) and all(_canon(benches[b]) == _canon(r.to_dict())
                                                    for b, r in results.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False  # unreadable or not ours: rewrite it from the samples


def _canon(bench: dict[str, Any]) -> str:
    """A benchmark entry as JSON text, timing aside (NaN compares equal to NaN this way)."""
    return json.dumps({k: v for k, v in bench.items() if k != "timing"}, sort_keys=True, default=str)


def _fill(
    spec, kind, built: Built, hashes: dict[str, str], path: Path, chunk: int, source, report: Reporter | None,
    progress: Callable[[dict[str, float], int], None] | None = None,
) -> dict[str, float]:
    """Generate + score every sample not yet on disk, chunk by chunk; returns timings.

    `progress(timings so far, new samples so far)` runs after each chunk is on disk."""
    truncate_torn_tail(path)
    done: set[str] = set()
    if path.is_file():
        for line, rec in iter_sample_lines(path):  # refuses an id seen twice (file:line)
            sid = rec.id
            if sid not in hashes or rec.prompt_hash != hashes[sid]:
                raise SftevalError(
                    f"sample '{sid}' on disk was made from a different prompt than this run builds",
                    path=str(path), line=line, field="prompt_hash",
                    hint="the data or prompt settings changed: delete this run folder or use another --out",
                )
            done.add(sid)
    total, gen_s, score_s, new = len(built.samples), 0.0, 0.0, 0
    if report:
        report(spec.name, len(done), total)
    for start in range(0, total, max(1, chunk)):
        todo = [s for s in built.samples[start : start + chunk] if s.id not in done]
        if not todo:
            continue
        t0 = time.perf_counter()
        outputs = list(source(todo))
        t1 = time.perf_counter()
        scored = kind.score(spec, todo, outputs)
        t2 = time.perf_counter()
        append_samples(path, [_line(s, o, r, hashes[s.id]) for s, o, r in zip(todo, outputs, scored)])
        gen_s, score_s, new = gen_s + t1 - t0, score_s + t2 - t1, new + len(todo)
        done.update(s.id for s in todo)
        if progress:
            progress({"generate_s": round(gen_s, 3), "score_s": round(score_s, 3)}, new)
        if report:
            report(spec.name, len(done), total)
    return {"generate_s": round(gen_s, 3), "score_s": round(score_s, 3)}


def _from_backend(backend: Backend, todo: list[Sample]) -> list[Generation | Loglik]:
    reqs = [s.request for s in todo]
    if all(isinstance(r, GenRequest) for r in reqs):
        return list(backend.generate(reqs))
    return list(backend.loglikelihood(reqs))


def _line(sample: Sample, out: Generation | Loglik, rec: ScoreRecord, prompt_hash: str) -> SampleLine:
    if isinstance(out, Generation):
        outputs, reasons = tuple(out.texts), tuple(out.finish_reasons)
        if out.num_tokens:
            rec.meta.setdefault("num_tokens", list(out.num_tokens) if len(out.num_tokens) > 1 else out.num_tokens[0])
    else:  # scored by log-likelihood: the chosen continuation stands in for an output
        outputs, reasons = ("" if rec.answer is None else str(rec.answer),), ("loglik",)
    return SampleLine(id=sample.id, prompt=sample.prompt, prompt_hash=prompt_hash, outputs=outputs,
                      finish_reasons=reasons, answer=rec.answer, reference=sample.reference, scores=rec.scores,
                      meta={**sample.meta, **rec.meta})


def _read_ordered(path: Path, samples: Sequence[Sample]) -> list[SampleLine]:
    """The benchmark's lines in sample order, as `Kind.aggregate` reads them."""
    order = {s.id: i for i, s in enumerate(samples)}
    records = [rec for _, rec in iter_sample_lines(path) if rec.id in order]
    return sorted(records, key=lambda r: order[r.id])
