"""Shared helpers for the dashboard tests (a plain module, not conftest, so that test
files can import it without depending on how pytest names conftest modules)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
ROOT = TESTS.parent
APP = ROOT / "sfteval" / "dashboard" / "app.py"
sys.path.insert(0, str(ROOT / "sfteval" / "dashboard"))  # `import data` as the pages do

from runfolders import FakeBench, write_run, write_sweep  # noqa: E402, F401  (the last two: re-exported for conftest)

# Strings that identify a model; the Rate page must never show any of them before a vote.
IDENTITY = ("llama-base", "llama-sft", "/ckpt/")

N = 12


def benches_for(tuned: bool) -> list[FakeBench]:
    gsm = [1.0 if (i % 3 != 0) == tuned or i % 4 == 0 else 0.0 for i in range(N)]
    chat = [0.6 if tuned else 0.4] * N
    who = "sft" if tuned else "base"
    return [
        FakeBench("gsm8k", {"exact_match_strict": gsm}, kind="math", general=True,
                  meta=[{"subject": ["algebra", "geometry"][i % 2]} for i in range(N)], breakdown_by="subject",
                  outputs=[f"{who} reasoning for item {i}. #### {2 * i}" for i in range(N)]),
        FakeBench("chat", {"rougeL": chat}, kind="reference",
                  prompts=[f"Write a haiku about topic number {i}." for i in range(N)],
                  outputs=[f"{'a careful answer' if tuned else 'short reply'} number {i}" for i in range(N)],
                  references=[f"reference text {i}" for i in range(N)]),
    ]


def comparison_for(base: Path, tuned: Path) -> dict:
    est = lambda v, lo, hi: {"value": v, "stderr": 0.05, "ci95": [lo, hi], "n": N, "method": "wilson"}  # noqa: E731
    return {
        "schema": "sfteval.compare/1", "created": "2026-11-23T17:05:00Z",
        "base": {"run_id": base.name, "label": "llama-base", "path": str(base), "model_path": "/ckpt/llama-base",
                 "fingerprint": None},
        "tuned": {"run_id": tuned.name, "label": "llama-sft", "path": str(tuned), "model_path": "/ckpt/llama-sft",
                  "fingerprint": None},
        "settings": {"seed": 0, "resamples": 2000, "alpha": 0.05, "margin": 0.01, "general": ["gsm8k"]},
        "mismatches": [{"benchmark": "chat", "field": "settings.gen.seed", "base": 0, "tuned": 1,
                        "blocking": False, "count": None, "ids": []}],
        "only_in_base": [], "only_in_tuned": [],
        "benchmarks": {
            "gsm8k": {
                "kind": "math", "general": True, "primary_metric": "exact_match_strict",
                "n_base": N, "n_tuned": N, "n_aligned": N,
                "metrics": {"exact_match_strict": {
                    "binary": True, "base": est(0.5, 0.25, 0.75), "tuned": est(0.33, 0.14, 0.6),
                    "base_reported": None, "tuned_reported": None,
                    "delta": {"value": -0.17, "stderr": 0.08, "ci95": [-0.33, -0.02], "n": N,
                              "method": "paired-bootstrap(B=2000,seed=0)"},
                    "p_value": 0.03, "test": "mcnemar-exact", "p_holm": 0.06, "retention": 0.66,
                    "flips": {"lost": 3, "gained": 1, "lost_ids": ["1", "2", "5"], "gained_ids": ["3"]}}},
                "forgetting": {"verdict": "forgot", "detail": "drop beyond margin", "metric": "exact_match_strict",
                               "margin": 0.01, "delta": -0.17, "ci95": [-0.33, -0.02]},
                "top_flips": [{"direction": "lost", "id": "1", "prompt": "Question 1: what is 1 + 1?",
                               "reference": "2", "base_output": "FLIP-BASE-OUTPUT", "tuned_output": "FLIP-TUNED-OUT",
                               "base_answer": "2", "tuned_answer": None}],
                "breakdown": {"subject": {
                    "algebra": {"base": est(0.6, 0.3, 0.8), "tuned": est(0.3, 0.1, 0.6), "delta": -0.3},
                    "geometry": {"base": est(0.4, 0.2, 0.7), "tuned": est(0.4, 0.2, 0.7), "delta": 0.0}}},
            },
            "chat": {
                "kind": "reference", "general": False, "primary_metric": "rougeL",
                "n_base": N, "n_tuned": N, "n_aligned": N,
                "metrics": {"rougeL": {
                    "binary": False, "base": est(0.4, 0.38, 0.42), "tuned": est(0.6, 0.58, 0.62),
                    "base_reported": None, "tuned_reported": None,
                    "delta": {"value": 0.2, "stderr": 0.01, "ci95": [0.18, 0.22], "n": N, "method": "paired"},
                    "p_value": 0.0001, "test": "paired-t", "p_holm": 0.0002, "retention": 1.5, "flips": None}},
                "forgetting": None, "top_flips": [], "breakdown": {},
            },
        },
        "holm": {"family": ["gsm8k/exact_match_strict", "chat/rougeL"], "method": "holm"},
        "forgetting": {"margin": 0.01, "forgot": ["gsm8k"], "no evidence": [], "improved": []},
        "drift": {"chat": {"truncation_rate": {"base": 0.0, "tuned": 0.25, "delta": 0.25, "p_value": 0.03,
                                               "test": "mcnemar-exact"}, "flags": ["truncation_rate"]}},
    }


def run_ids(reports: Path) -> tuple[Path, Path]:
    runs = sorted((reports / "runs").iterdir())
    base = next(r for r in runs if r.name.startswith("llama-base"))
    tuned = next(r for r in runs if r.name.startswith("llama-sft"))
    return base, tuned


def open_page(page: str):
    """AppTest of the whole app, switched to one page, after one clean run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page != "runs":
        at.switch_page(f"views/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rendered_text(at) -> str:
    """Everything rendered: every element's protobuf, labels, options and values."""
    out: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(reports: Path, db: Path, log_path: Path, extra: list[str] | None = None) -> Iterator[str]:
    """Run `sfteval dashboard` for real; yield its URL once /_stcore/health says ok."""
    port = _free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sfteval.cli", "dashboard", "--reports", str(reports), "--port", str(port),
             "--db", str(db), *(extra or [])],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own group: we stop exactly it
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("dashboard did not start:\n" + log_path.read_text())
                time.sleep(0.5)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
