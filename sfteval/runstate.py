"""What a run has recorded so far, so that resuming adds to it instead of replacing it.

A run may take several sessions (killed, then re-run). `progress.json` in the run
folder, rewritten atomically after every chunk of samples, carries what results.json
would otherwise lose on a resume: the `created` time of the first session, the backend
info of the first session that opened a model, each benchmark's timings summed over
sessions, and one entry per session (when, where, how many new samples, and its backend
info when that differs from the first session's). results.json
copies these when it is written; progress.json is then removed. A finished run that
is resumed reads them back from results.json.

Covered: the metadata of resumed runs. Not covered: the samples themselves (the
runner's resume skips ids already on disk) and the lock (`sfteval.runlock`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import atomic_write_json, read_json

PROGRESS_NAME = "progress.json"
PROGRESS_SCHEMA = "sfteval.progress/1"
SUMMED = ("generate_s", "score_s", "model_load_s")  # work done in a session: adds up over sessions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunState:
    """created / backend / timings / sessions of one run folder, across its sessions."""

    run_id: str
    created: str
    backend: dict[str, Any] | None = None  # the first opened backend's info()
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # benchmark -> summed timings
    sessions: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"schema": PROGRESS_SCHEMA, "run_id": self.run_id, "created": self.created, "backend": self.backend,
                "timings": self.timings, "sessions": list(self.sessions)}


def load_prior(run_dir: Path, run_id: str) -> RunState | None:
    """The run's state so far: progress.json (newest), else a finished results.json, else None.

    progress.json is always at least as new as results.json (results.json is written from
    it, and it is removed after), so it wins when both exist.
    """
    progress = run_dir / PROGRESS_NAME
    if progress.is_file():
        doc = read_json(progress)
        if not isinstance(doc, dict) or doc.get("schema") != PROGRESS_SCHEMA or doc.get("run_id") != run_id:
            raise SftevalError(f"not this run's progress record (expected run {run_id!r})", path=str(progress),
                               hint="delete this run folder, or use another --out")
        return _state(doc, run_id)
    results = run_dir / "results.json"
    if results.is_file():
        doc = read_json(results)
        if not isinstance(doc, dict) or doc.get("run_id") != run_id:
            raise SftevalError(f"results.json of another run in this folder (expected run {run_id!r})",
                               path=str(results), field="run_id", hint="delete this run folder, or use another --out")
        timings = {b: dict(i.get("timing") or {}) for b, i in (doc.get("benchmarks") or {}).items() if isinstance(i, dict)}
        backend = {k: v for k, v in (doc.get("backend") or {}).items() if k != "selected_because"}
        return _state({**doc, "timings": timings, "backend": backend if len(backend) > 1 else None}, run_id)
    return None


def _state(doc: dict[str, Any], run_id: str) -> RunState:
    backend = doc.get("backend")
    return RunState(
        run_id=run_id,
        created=str(doc.get("created") or now()),
        backend=dict(backend) if isinstance(backend, dict) else None,
        timings={str(b): {k: float(v) for k, v in (t or {}).items() if isinstance(v, (int, float))}
                 for b, t in (doc.get("timings") or {}).items()},
        sessions=tuple(s for s in doc.get("sessions") or () if isinstance(s, dict)),
    )


def begin(prior: RunState | None, run_id: str) -> RunState:
    """The state at the start of a session: the prior one (or a new run) plus this session."""
    session = {"started": now(), "host": socket.gethostname(), "pid": os.getpid(), "new_samples": {}}
    base = prior or RunState(run_id=run_id, created=session["started"])
    return replace(base, sessions=(*base.sessions, session))


def add_session_work(state: RunState, before: RunState, bench: str, timing: dict[str, float], new: int,
                     backend: dict[str, Any] | None) -> RunState:
    """`before` (the state this session began with) plus this session's work on `bench` so
    far: `timing` and `new` are cumulative within the session."""
    prev = before.timings.get(bench, {})
    merged = {k: round(prev.get(k, 0.0) + timing.get(k, 0.0), 3) for k in SUMMED if k in prev or k in timing}
    merged.update({k: v for k, v in timing.items() if k not in SUMMED})  # e.g. aggregate_s: this session's
    sessions = list(state.sessions)
    last = dict(sessions[-1])
    last["new_samples"] = {**last.get("new_samples", {}), bench: new}
    if backend is not None and state.backend is not None and backend != state.backend:
        last["backend"] = backend  # this session's engine differs from the first: say so, keep both
    sessions[-1] = last
    return replace(
        state,
        backend=state.backend if state.backend is not None else backend,
        timings={**state.timings, bench: merged},
        sessions=tuple(sessions),
    )


def save(run_dir: Path, state: RunState) -> None:
    atomic_write_json(run_dir / PROGRESS_NAME, state.to_dict())


def generated_anything(state: RunState) -> bool:
    """Whether this (the last) session wrote any new sample."""
    return any(n > 0 for n in (state.sessions[-1].get("new_samples") or {}).values()) if state.sessions else False
