"""Reading lighteval output folders: results files and `--save-details` parquet files.

The layout read is lighteval 0.13.0's (read from its `EvaluationTracker` and checked on
real runs of it in tests/test_interop_lighteval.py):

- `DIR/results/<model_name>/results_<date_id>.json`: `config_general` (model_name,
  model_config, num_fewshot_seeds, max_samples, lighteval_sha, timings), `results`
  (`"<task>|<n_shot>"` -> metric -> value, `<metric>_stderr`; plus `all` and
  `<suite>:_average|n` groups), `versions`, `config_tasks` (each task's
  `LightevalTaskConfig`, its metrics with `corpus_level_fn` by name), `summary_tasks`
  (xxhash digests of prompts, inputs and outputs);
- `DIR/details/<model_name>/<date_id>/details_<task>|<n_shot>_<date_id>.parquet`: one row
  per `Detail{doc, model_response, metric}` (datasets' `to_parquet` of the dataclasses).

`<model_name>` may hold slashes (a local path or `org/name`); folders nest accordingly.
Not covered: details files of earlier lighteval releases, whose rows had flat columns
instead of doc/model_response/metric (refused with an error), hub-pushed details, the
`--results-path-template` option (pass the results file itself), and lighteval's inspect-ai
backend (`lighteval eval`), which writes inspect logs, not these files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import read_json, sha256_file

_RESULTS = re.compile(r"^results_(?P<date>.+)\.json$")
GROUP_TASKS = ("all",)  # aggregates over tasks: no details of their own


@dataclass(frozen=True)
class LightevalDetail:
    """One parquet row: one document and the model's response to it."""

    doc_id: str
    prompt: str  # model_response.input as text (a chat's messages as JSON); "" when not logged
    prompt_logged: bool  # lighteval 0.13.0's transformers backend logs input as null
    query: str
    choices: tuple[str, ...]
    gold_index: tuple[int, ...]
    texts: tuple[str, ...]  # generations (generative tasks), else ()
    logprobs: tuple[float, ...]  # per choice (log-likelihood tasks), else ()
    metrics: Mapping[str, Any]  # metric -> per-sample value (a number, or a corpus metric's input)
    doc: Mapping[str, Any]
    response: Mapping[str, Any]
    row: int


@dataclass(frozen=True)
class LightevalTask:
    name: str  # "<task>|<n_shot>", lighteval's key
    base_name: str
    n_shot: int | None
    config: Mapping[str, Any]
    version: Any
    reported: Mapping[str, Any]  # results[task]: metric -> value, metric_stderr -> value
    summary: Mapping[str, Any]
    details_path: Path
    details_sha256: str
    details: tuple[LightevalDetail, ...]


@dataclass(frozen=True)
class LightevalOutput:
    results_path: Path
    results_sha256: str
    date_id: str
    raw: Mapping[str, Any]
    tasks: Mapping[str, LightevalTask] = field(default_factory=dict)

    @property
    def general(self) -> Mapping[str, Any]:
        return self.raw.get("config_general") or {}

    @property
    def model_name(self) -> str:
        return str(self.general.get("model_name") or "lighteval")


def find_outputs(root: str | Path) -> list[LightevalOutput]:
    """Every lighteval results file under `root` (its --output-dir, or one results file), read."""
    root = Path(root)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("results_*.json") if _RESULTS.match(p.name))
    else:
        raise SftevalError("lighteval output folder not found", path=str(root), field="DIR",
                           hint="the folder given to lighteval --output-dir (with --save-details)")
    if not files:
        raise SftevalError("no lighteval results file (results/<model>/results_<date>.json) here", path=str(root),
                           hint="run lighteval with --output-dir DIR --save-details, then import DIR")
    return [read_output(f) for f in files]


def read_output(results_path: Path) -> LightevalOutput:
    raw = read_json(results_path)
    where = str(results_path)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("results"), Mapping):
        raise SftevalError("not a lighteval results file (no 'results' object)", path=where, field="results")
    if not isinstance(raw.get("config_general"), Mapping) or not raw["config_general"].get("model_name"):
        raise SftevalError("not a lighteval results file (no 'config_general.model_name')", path=where,
                           field="config_general.model_name")
    m = _RESULTS.match(results_path.name)
    if m is None:
        raise SftevalError("a lighteval results file is named results_<date_id>.json", path=where,
                           hint="its details folder is found by that date_id")
    date_id = m.group("date")
    configs = raw.get("config_tasks") or {}
    if not isinstance(configs, Mapping):
        raise SftevalError("'config_tasks' is not an object", path=where, field="config_tasks")
    folder = _details_folder(results_path, str(raw["config_general"]["model_name"]), date_id)
    tasks: dict[str, LightevalTask] = {}
    for name, reported in raw["results"].items():
        if name in GROUP_TASKS or ":_average|" in name:
            continue  # aggregates over tasks: no samples of their own
        if not isinstance(reported, Mapping):
            raise SftevalError(f"results of task '{name}' is not an object", path=where, field=f"results.{name}")
        path = None if folder is None else folder / f"details_{name}_{date_id}.parquet"
        if path is None or not path.is_file():
            raise SftevalError(f"no details file for task '{name}' (details_{name}_{date_id}.parquet)", path=where,
                               field=f"results.{name}", hint="re-run lighteval with --save-details")
        base, _, shot = name.rpartition("|")
        cfg = configs.get(name) or {}
        if not isinstance(cfg, Mapping):
            raise SftevalError(f"config of task '{name}' is not an object", path=where, field=f"config_tasks.{name}")
        tasks[name] = LightevalTask(
            name=name, base_name=base or name, n_shot=int(shot) if shot.isdigit() else cfg.get("num_fewshots"),
            config=cfg, version=_version(raw, name, cfg), reported=reported,
            summary=(raw.get("summary_tasks") or {}).get(name) or {}, details_path=path,
            details_sha256=sha256_file(path), details=tuple(read_details(path)))
    return LightevalOutput(results_path, sha256_file(results_path), date_id, raw, tasks)


def _version(raw: Mapping[str, Any], name: str, cfg: Mapping[str, Any]) -> Any:
    """`versions[task]` where lighteval filled it (0.13.0 leaves it empty), else the config's."""
    versions = raw.get("versions") or {}
    return versions[name] if isinstance(versions, Mapping) and name in versions else cfg.get("version")


def _details_folder(results_path: Path, model_name: str, date_id: str) -> Path | None:
    """`<out>/details/<model_name>/<date_id>/` for `<out>/results/<model_name>/results_<date_id>.json`."""
    depth = len(Path(model_name.strip("/")).parts)
    parents = results_path.parents
    if len(parents) > depth + 1 and parents[depth].name == "results":
        cand = parents[depth + 1] / "details" / model_name.strip("/") / date_id
        if cand.is_dir():
            return cand
    # A copied or moved results file: the one details folder of that date_id beside or below it.
    found = sorted({p.parent for p in results_path.parent.rglob(f"details_*_{date_id}.parquet")})
    return found[0] if len(found) == 1 else None


def read_details(path: Path) -> list[LightevalDetail]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow comes with datasets / the lighteval extra
        raise SftevalError("reading lighteval details needs pyarrow", path=str(path),
                           hint="pip install 'sfteval[lighteval]'") from exc
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise SftevalError(f"not a readable parquet file ({exc})", path=str(path)) from exc
    return [_detail(path, i, row) for i, row in enumerate(rows)]


def _obj(row: Mapping[str, Any], key: str, path: Path, i: int) -> Mapping[str, Any]:
    v = row.get(key)
    if not isinstance(v, Mapping):
        raise SftevalError(f"details row {i} has no '{key}' object", path=str(path), line=i, field=key,
                           hint="a lighteval >= 0.10 details file has columns doc, model_response, metric")
    return v


def _detail(path: Path, i: int, row: Mapping[str, Any]) -> LightevalDetail:
    doc, resp, metric = _obj(row, "doc", path, i), _obj(row, "model_response", path, i), _obj(row, "metric", path, i)
    if doc.get("id") in (None, ""):
        raise SftevalError(f"details row {i} has no document id", path=str(path), line=i, field="doc.id")
    gold = doc.get("gold_index")
    golds = tuple(int(g) for g in gold) if isinstance(gold, (list, tuple)) else (() if gold is None else (int(gold),))
    return LightevalDetail(
        doc_id=str(doc["id"]), prompt=prompt_text(resp.get("input")), prompt_logged=bool(resp.get("input")),
        query=str(doc.get("query") or ""),
        choices=tuple(str(c) for c in doc.get("choices") or ()), gold_index=golds,
        texts=tuple(str(t) for t in (resp.get("text_post_processed") or resp.get("text") or ())),
        logprobs=tuple(float(x) for x in resp.get("logprobs") or ()),
        metrics={str(k): v for k, v in metric.items() if v is not None}, doc=doc, response=resp, row=i)


def prompt_text(raw: Any) -> str:
    """The model's logged input as one string: the rendered prompt, or a chat's messages as JSON."""
    if isinstance(raw, str):
        return raw
    if raw:
        import json

        return json.dumps(raw, ensure_ascii=False, sort_keys=True)
    return ""
