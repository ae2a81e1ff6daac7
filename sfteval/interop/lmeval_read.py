"""Reading lm-evaluation-harness output folders: results files and `--log_samples` files.

Two layouts are recognised (both read back to the same `LmEvalOutput`):

- current (lm-eval >= 0.4.3, checked against 0.4.13): `DIR/<model_sanitized>/results_<date>.json`
  beside `samples_<task>_<date>.jsonl`, one line per (document, filter), with
  `arguments` as `{"gen_args_<i>": {"arg_<j>": ...}}`;
- the one before it (0.4.0 - 0.4.2): `results.json` beside `<model_args>_<task>.jsonl`,
  with `arguments` as a list of argument lists.

Log-likelihoods in `resps` / `filtered_resps` are stored by lm-eval as strings
(`[["-12.77", "False"], ...]`); they are converted to numbers here.
Not covered: lm-eval group aggregates (groups have no samples of their own). lighteval's
details files are read by `sfteval.interop.lighteval_read`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import iter_jsonl, read_json, sha256_file

_CURRENT = re.compile(r"^results_(?P<date>.+)\.json$")


@dataclass(frozen=True)
class LmEvalDoc:
    """Every filter's line of one document, merged."""

    doc_id: str
    prompt: str
    prompt_hash: str
    doc_hash: str
    target: str
    continuations: tuple[str, ...]  # the choices' continuations (multiple choice), else ()
    raw_output: str  # the generation (generate_until), else ""
    logliks: tuple[float, ...]  # per continuation (loglikelihood kinds), else ()
    filtered: Mapping[str, Any]  # filter -> filtered response
    metrics: Mapping[str, Mapping[str, float]]  # filter -> metric -> value
    line: int


@dataclass(frozen=True)
class LmEvalTask:
    name: str
    output_type: str
    config: Mapping[str, Any]
    version: Any
    n_shot: Any
    reported: Mapping[str, Any]  # results[task]: "acc,none", "acc_stderr,none", ...
    higher_is_better: Mapping[str, bool]
    samples_path: Path
    samples_sha256: str
    docs: tuple[LmEvalDoc, ...]
    task_hash: str | None = None


@dataclass(frozen=True)
class LmEvalOutput:
    results_path: Path
    results_sha256: str
    layout: str  # "current" | "previous"
    raw: Mapping[str, Any]
    tasks: Mapping[str, LmEvalTask] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        cfg = self.raw.get("config") or {}
        args = cfg.get("model_args")
        if isinstance(args, Mapping) and args.get("pretrained"):
            return str(args["pretrained"])
        if isinstance(args, str):
            m = re.search(r"pretrained=([^,]+)", args)
            if m:
                return m.group(1)
        return str(self.raw.get("model_name") or cfg.get("model") or "lm-eval")


def find_outputs(root: str | Path) -> list[LmEvalOutput]:
    """Every lm-eval results file under `root` (a folder, or one results file), read."""
    root = Path(root)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*.json") if _CURRENT.match(p.name) or p.name == "results.json")
    else:
        raise SftevalError("lm-eval output folder not found", path=str(root), field="DIR",
                           hint="the folder given to lm_eval --output_path (with --log_samples)")
    if not files:
        raise SftevalError("no lm-eval results file (results_*.json or results.json) here", path=str(root),
                           hint="run lm_eval with --output_path DIR --log_samples, then import DIR")
    return [read_output(f) for f in files]


def read_output(results_path: Path) -> LmEvalOutput:
    raw = read_json(results_path)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("results"), Mapping):
        raise SftevalError("not an lm-eval results file (no 'results' object)", path=str(results_path),
                           field="results")
    m = _CURRENT.match(results_path.name)
    layout = "current" if m else "previous"
    tasks: dict[str, LmEvalTask] = {}
    configs = raw.get("configs") or {}
    for task in raw["results"]:
        if task not in configs:
            continue  # a group's aggregate: no samples of its own
        sp = _samples_path(results_path, task, m.group("date") if m else None)
        if sp is None:
            raise SftevalError(f"no samples file for task '{task}' next to the results", path=str(results_path),
                               field=f"results.{task}", hint="re-run lm_eval with --log_samples")
        cfg = configs[task]
        tasks[task] = LmEvalTask(
            name=task, output_type=str(cfg.get("output_type") or ""), config=cfg,
            version=(raw.get("versions") or {}).get(task), n_shot=(raw.get("n-shot") or {}).get(task),
            reported=raw["results"][task], higher_is_better=(raw.get("higher_is_better") or {}).get(task) or {},
            samples_path=sp, samples_sha256=sha256_file(sp), docs=tuple(_read_docs(sp, str(cfg.get("output_type")))),
            task_hash=(raw.get("task_hashes") or {}).get(task))
    return LmEvalOutput(results_path, sha256_file(results_path), layout, raw, tasks)


def _samples_path(results_path: Path, task: str, date: str | None) -> Path | None:
    folder = results_path.parent
    if date is not None:
        p = folder / f"samples_{task}_{date}.jsonl"
        return p if p.is_file() else None
    found = sorted(folder.glob(f"*_{task}.jsonl"))
    return found[0] if found else None


def _arguments(raw: Any) -> list[list[Any]]:
    """Both layouts' `arguments` as a list of argument lists."""
    if isinstance(raw, Mapping):
        keyed = sorted(raw.items(), key=lambda kv: int(str(kv[0]).rsplit("_", 1)[-1]))
        return [[a for _, a in sorted(v.items(), key=lambda kv: int(str(kv[0]).rsplit("_", 1)[-1]))]
                for _, v in keyed]
    if isinstance(raw, list):
        return [list(a) if isinstance(a, (list, tuple)) else [a] for a in raw]
    return []


def _ll(x: Any) -> float:
    """A log-likelihood as lm-eval logs it: [ll, is_greedy] with ll maybe a string."""
    while isinstance(x, (list, tuple)) and x:
        x = x[0]
    return float(x)


def _read_docs(path: Path, output_type: str) -> list[LmEvalDoc]:
    merged: dict[str, dict[str, Any]] = {}
    for n, row in iter_jsonl(path):
        if "doc_id" not in row:
            raise SftevalError("sample line has no doc_id", path=str(path), line=n, field="doc_id")
        did = str(row["doc_id"])
        flt = str(row.get("filter") or "none")
        names = row.get("metrics") or [k for k, v in row.items() if isinstance(v, (int, float, bool))
                                        and k not in ("doc_id",)]
        values: dict[str, float] = {}
        for name in names:
            v = row.get(name)
            if isinstance(v, bool) or isinstance(v, (int, float)):
                values[str(name)] = float(v)
        d = merged.get(did)
        if d is None:
            args = _arguments(row.get("arguments"))
            is_gen = output_type == "generate_until"
            resps = row.get("resps") or []
            d = merged[did] = {
                "doc_id": did, "prompt": str(args[0][0]) if args and args[0] else "",
                "prompt_hash": str(row.get("prompt_hash") or ""), "doc_hash": str(row.get("doc_hash") or ""),
                "target": str(row.get("target", "")),
                "continuations": () if is_gen else tuple(str(a[1]) for a in args if len(a) > 1),
                "raw_output": str(_first(resps)) if is_gen and resps else "",
                "logliks": () if is_gen else tuple(_ll(r) for r in (row.get("filtered_resps") or [])),
                "filtered": {}, "metrics": {}, "line": n,
            }
        if flt in d["metrics"]:
            raise SftevalError(f"document {did} appears twice for filter '{flt}'", path=str(path), line=n,
                               field="doc_id")
        fr = row.get("filtered_resps")
        d["filtered"][flt] = _first(fr) if output_type == "generate_until" else None
        d["metrics"][flt] = values
    return [LmEvalDoc(**d) for d in merged.values()]


def _first(x: Any) -> Any:
    while isinstance(x, (list, tuple)) and x:
        x = x[0]
    return x
