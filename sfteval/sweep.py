"""Checkpoint sweeps: evaluate every `checkpoint-<step>/` of a trainer's output folder.

`run_sweep(root, cfg, select)` runs `sfteval.runner.execute_run` once per complete
checkpoint (in step order, one engine per sweep where the weights allow, or as Ray
tasks: `sfteval.sweep_exec`), then writes `OUT/sweeps/<key>/sweep.json`, where the key is
`<name>-<hash8>`: the label (default: the folder's name) and a hash of the folder's
resolved path, so two trainer folders both named `out` never share a record:

    {"schema": "sfteval.sweep/1", "source": "<root>",
     "checkpoints": [{"step", "path", "run_id", "run_dir", "metrics": {bench: {metric: Estimate}}}],
     "train_log": [{"step", "epoch", "train_loss", "eval_loss"?, "lr", "grad_norm", "tokens_per_s"}],
     "select": {"metric": "bench/metric", "mode": "max" | "min"},
     "best": {"step", "run_id", "value", "ci95", "n", "method", "chosen_on": "select",
              "reported_on": "report", "select_value", "split": {"method", "select_n", "report_n",
              "select_ids_sha256", "report_ids_sha256"}, "all_items_step", "note"}}

"best" is chosen on the `select` half of the selection metric's items (a hash of the item
id, `sfteval.selection.split_of`) and its value and interval are those of the `report`
half: choosing the best of K and reporting it on the same items is biased upward (the
kept checkpoint's CI covered 83-91%, and base-vs-best claimed a gain 7-14% of the time
with nothing changed). A base-vs-best comparison must use the report half too
(`sfteval compare BASE KEPT --items report`). Without per-item scores to split, the
all-items choice is kept and marked `chosen_on: "all"` with a note saying it is biased.

sweep.json is rewritten (atomically) after each checkpoint, so a sweep cut short keeps
what it finished and a re-run resumes (each run folder resumes on its own).

Covered: folders named exactly `checkpoint-<digits>` that hold a model (config.json
plus weights) or a peft adapter (adapter_config.json plus adapter weights); temp
folders (`.tmp-checkpoint-*`, as train/ writes) and half-written ones are skipped.
Not covered: choosing the best checkpoint by a training-log column (read train_log).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from sfteval.config import RunConfig
from sfteval.errors import SftevalError
from sfteval.runfolder import SWEEP_SCHEMA, SweepRecord, read_results, read_samples, write_sweep
from sfteval.runfolder import read_train_log as read_log_file
_CKPT = re.compile(r"^checkpoint-(\d+)$")
TRAIN_LOG = "train_log.jsonl"
WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


def _complete(path: Path) -> bool:
    if (path / "adapter_config.json").is_file():
        return any(path.glob("adapter_model.*"))
    return (path / "config.json").is_file() and any(any(path.glob(p)) for p in WEIGHTS)


def find_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete `checkpoint-<step>/` folders under `root`, in step order."""
    root = Path(root)
    found = []
    for p in root.iterdir() if root.is_dir() else ():
        m = _CKPT.match(p.name)
        if m and p.is_dir() and _complete(p):
            found.append((int(m.group(1)), p))
    return sorted(found)


def read_train_log(root: Path) -> list[dict[str, Any]]:
    """The trainer's log rows (the columns the sweep shows); [] when there is none.

    The trainer may still be writing: a torn last line is ignored.
    """
    path = root / TRAIN_LOG
    if not path.is_file():
        return []
    return [row.to_dict() for row in read_log_file(path)]  # the TRAIN_LOG_FIELDS columns


def parse_select(select: str | None, first_metrics: dict[str, dict[str, Any]], primary: dict[str, str]) -> tuple[str, str, str]:
    """(bench, metric, mode) from "bench/metric[:max|min]", "bench", or None (first
    benchmark's primary metric, maximised)."""
    mode = "max"
    if select and ":" in select:
        select, mode = select.rsplit(":", 1)
        if mode not in ("max", "min"):
            raise SftevalError(f"unknown selection mode '{mode}'", field="select", hint="bench/metric:max or bench/metric:min")
    if not select:
        bench = next(iter(first_metrics))
        return bench, primary.get(bench) or next(iter(first_metrics[bench])), mode
    bench, _, metric = select.partition("/")
    if bench not in first_metrics:
        raise SftevalError(f"no benchmark '{bench}' in this run", field="select", hint=f"choose from: {', '.join(first_metrics)}")
    metric = metric or primary.get(bench, "")
    if metric not in first_metrics[bench]:
        raise SftevalError(
            f"benchmark '{bench}' has no metric '{metric}'", field="select", hint=f"choose from: {', '.join(first_metrics[bench])}"
        )
    return bench, metric, mode


def best_of(entries: list[dict[str, Any]], bench: str, metric: str, mode: str) -> dict[str, Any] | None:
    """The checkpoint with the best value on ALL items; ties go to the earliest step.
    Its value is biased upward (chosen on the items it is reported on): `choose_best`
    records this only when per-item scores are not there to split."""
    scored = [(e["metrics"][bench][metric]["value"], e) for e in entries if metric in e["metrics"].get(bench, {})]
    if not scored:
        return None
    sign = 1 if mode == "max" else -1
    value, e = max(scored, key=lambda ve: (sign * ve[0], -ve[1]["step"]))
    return {"step": e["step"], "run_id": e["run_id"], "value": float(value)}


ItemCache = dict[str, dict[str, float]]  # run_dir -> {item id: score} of the selection metric


def _item_scores(entry: dict[str, Any], bench: str, metric: str, cache: ItemCache) -> dict[str, float] | None:
    """One checkpoint's per-item scores of the selection metric, from its samples (cached:
    the sweep re-chooses after every checkpoint); None when unreadable or not per item."""
    key = str(entry.get("run_dir") or "")
    if key in cache:
        return cache[key] or None
    scores: dict[str, float] = {}
    try:
        info = read_results(Path(key)).benchmarks.get(bench) if key else None
        if info is not None:
            rows = read_samples(Path(key) / info.samples_path)
            scores = {i: v for i, r in rows.items() if (v := r.score(metric)) is not None}
    except (SftevalError, OSError, ValueError):
        scores = {}
    cache[key] = scores
    return scores or None


def choose_best(entries: list[dict[str, Any]], bench: str, metric: str, mode: str,
                cache: ItemCache | None = None) -> dict[str, Any] | None:
    """sweep.json's "best": chosen on the `select` half of the items and reported on the
    `report` half (`sfteval.selection.choose_on_split`; the split and what each half was
    used for are recorded), so neither its value nor a base-vs-best claim made on the
    report half (`compare --items report`) carries the winner's curse. When per-item
    scores cannot be split (samples gone, a corpus metric such as `bleu`, too few items),
    the all-items choice is recorded with `chosen_on: "all"` and a note that its value is
    biased upward."""
    import numpy as np

    from sfteval.selection import choose_on_split

    cache = {} if cache is None else cache
    scored = [e for e in entries if metric in e["metrics"].get(bench, {})]
    per = [_item_scores(e, bench, metric, cache) for e in scored]
    if scored and all(p is not None for p in per):
        ids = sorted(set.intersection(*(set(p) for p in per if p is not None)))
        if ids:
            matrix = np.array([[p[i] for i in ids] for p in per if p is not None], dtype=float)
            recorded = str(scored[0]["metrics"][bench][metric].get("method", ""))
            pick = choose_on_split([e["step"] for e in scored], ids, matrix, mode,
                                   proportion=True if recorded == "wilson" else False)
            if pick is not None:
                e = scored[pick.pop("index")]
                all_items = best_of(entries, bench, metric, mode) or {}
                return {"step": e["step"], "run_id": e["run_id"], **{k: v for k, v in pick.items() if k != "step"},
                        "all_items_step": all_items.get("step"),
                        "note": "chosen on the select half, value and interval on the report half: compare base "
                                "with it on the report half (sfteval compare BASE KEPT --items report)"}
    best = best_of(entries, bench, metric, mode)
    if best is None:
        return None
    return best | {"chosen_on": "all", "reported_on": "all",
                   "note": "chosen and reported on the same items (per-item scores could not be split): the value "
                           "is biased upward, and so is a base-vs-best claim on these items"}


def run_sweep(root: str | Path, cfg: RunConfig, select: str | None = None, ray: str | None = None,
              fmt: str = "text", all_metrics: bool = False) -> Path:
    """Evaluate every checkpoint under `root` (locally in step order, or as Ray tasks when
    `ray` is "local" or an address: sfteval.sweep_exec); returns the sweep folder."""
    from sfteval.sweep_exec import evaluate_checkpoints

    root = Path(root)
    ckpts = find_checkpoints(root)
    if not ckpts:
        raise SftevalError("no complete checkpoint-<step>/ folders here", path=str(root), hint="point at the trainer's output folder")
    name = _safe(cfg.label or root.resolve().name)
    out_dir = sweep_dir(cfg.out, root, cfg.label)
    entries: list[dict[str, Any]] = []
    chosen: tuple[str, str, str] | None = None
    doc: dict[str, Any] = {}
    primaries: dict[str, str] = {}  # benchmark -> primary metric, for the summary
    item_cache: ItemCache = {}
    for step, path, run_dir in evaluate_checkpoints(ckpts, cfg, name, ray=ray):
        results = read_results(run_dir)
        primaries.update({b: r.primary_metric for b, r in results.benchmarks.items() if r.primary_metric})
        metrics = {b: {m: e.to_dict() for m, e in r.metrics.items()} for b, r in results.benchmarks.items()}
        if chosen is None:  # check the selection on the first run, not after the last
            chosen = parse_select(select, metrics, {b: r.primary_metric or "" for b, r in results.benchmarks.items()})
        entries.append({"step": step, "path": str(path), "run_id": results.run_id, "run_dir": str(run_dir), "metrics": metrics})
        entries.sort(key=lambda e: e["step"])  # Ray results arrive in any order
        bench, metric, mode = chosen
        doc = {
            "schema": SWEEP_SCHEMA,
            "source": str(root.resolve()),
            "checkpoints": entries,
            "train_log": read_train_log(root),
            "select": {"metric": f"{bench}/{metric}", "mode": mode},
            "best": choose_best(entries, bench, metric, mode, item_cache),
        }
        write_sweep(out_dir / "sweep.json", SweepRecord.from_dict(doc))
    print_table(doc, fmt, all_metrics, primaries)
    return out_dir


def sweep_key(root: str | Path, label: str | None = None) -> str:
    """`<name>-<hash8>`: readable, and unique per trainer folder (hash of its resolved path)."""
    resolved = Path(root).resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:8]
    return f"{_safe(label or resolved.name)}-{digest}"


def sweep_dir(out: str | Path, root: str | Path, label: str | None = None) -> Path:
    """Where the sweep of trainer folder `root` is recorded under the output root `out`."""
    return Path(out) / "sweeps" / sweep_key(root, label)


def _safe(raw: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in raw).strip("-") or "sweep"


def table_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary: one row per checkpoint, primary metrics and losses."""
    cols: list[tuple[str, str]] = []
    for e in doc["checkpoints"]:
        for b, ms in e["metrics"].items():
            for m in ms:
                if (b, m) not in cols:
                    cols.append((b, m))
    log_rows = sorted((r for r in doc["train_log"] if "step" in r), key=lambda r: r["step"])
    best = (doc.get("best") or {}).get("step")
    header = ["step", *(f"{b}/{m}" for b, m in cols), "train_loss", "eval_loss", "best"]
    rows = []
    for e in doc["checkpoints"]:
        cells = [str(e["step"])]
        for b, m in cols:
            est = e["metrics"].get(b, {}).get(m)
            cells.append("" if est is None else f"{est['value']:.3f} [{est['ci95'][0]:.3f}, {est['ci95'][1]:.3f}]")
        cells += [_num(_logged(log_rows, e["step"], "train_loss")), _num(_logged(log_rows, e["step"], "eval_loss"))]
        cells.append("*" if e["step"] == best else "")
        rows.append(cells)
    return header, rows


def _logged(rows: list[dict[str, Any]], step: int, key: str) -> Any:
    """The last logged value of `key` at or before `step` (logging and saving intervals differ)."""
    value = None
    for r in rows:
        if r["step"] > step:
            break
        if r.get(key) is not None:
            value = r[key]
    return value


def _num(v: Any) -> str:
    return "" if v is None else f"{float(v):.4f}"


def summary_tables(doc: dict[str, Any], all_metrics: bool = False, primaries: dict[str, str] | None = None) -> list[Any]:
    """The sweep's summary as two narrow tables (readable at 80 columns, any number of
    benchmarks): one row per checkpoint and benchmark (its primary metric, or every metric),
    then the logged losses by step. A wide one-column-per-metric table was unreadable."""
    from sfteval.tables import Table, ci3, f3

    best = (doc.get("best") or {}).get("step")
    sel = doc["select"]
    rows, records = [], []
    for e in doc["checkpoints"]:
        for b, ms in e["metrics"].items():
            primary = _primary(doc, e, b, primaries or {})
            for m, est in ms.items():
                if not all_metrics and primary is not None and m != primary:
                    continue
                keep = "*" if e["step"] == best and f"{b}/{m}" == sel["metric"] else ""
                rows.append((str(e["step"]), b, m, f3(est["value"]), ci3(est.get("ci95")), keep))
                records.append({"step": e["step"], "benchmark": b, "metric": m, "value": est["value"],
                                "ci95": est.get("ci95"), "n": est.get("n"), "best": e["step"] == best})
    title = f"sweep {doc['source']}"
    chosen = doc.get("best") or {}
    how = (f", chosen on the select half ({chosen['split']['select_n']} items), "
           f"{chosen['value']:.3f} {ci3(chosen.get('ci95'))} on the report half ({chosen['split']['report_n']})"
           if chosen.get("chosen_on") == "select" else
           ", chosen on all items (biased upward)" if chosen.get("chosen_on") == "all" else "")
    notes = (f"* the checkpoint kept: best by {sel['metric']} ({sel['mode']}){how}",)
    tables = [Table(title, ("step", "benchmark", "metric", "value", "95% CI", "kept"), tuple(rows),
                    right=frozenset({0, 3, 4}), notes=notes, records=tuple(records))]
    log_rows = sorted((r for r in doc.get("train_log", []) if "step" in r), key=lambda r: r["step"])
    if log_rows:
        loss = [(str(e["step"]), _num(_logged(log_rows, e["step"], "train_loss")), _num(_logged(log_rows, e["step"], "eval_loss")))
                for e in doc["checkpoints"]]
        tables.append(Table("losses logged at or before each checkpoint", ("step", "train_loss", "eval_loss"),
                            tuple(loss), right=frozenset({0, 1, 2}),
                            records=tuple({"step": int(r[0]), "train_loss": _logged(log_rows, int(r[0]), "train_loss"),
                                           "eval_loss": _logged(log_rows, int(r[0]), "eval_loss")} for r in loss)))
    return tables


def _primary(doc: dict[str, Any], entry: dict[str, Any], bench: str, primaries: dict[str, str]) -> str | None:
    """A benchmark's primary metric: the selection's metric, else the run's record of it."""
    sb, _, sm = doc["select"]["metric"].partition("/")
    if sb == bench:
        return sm
    if bench in primaries:
        return primaries[bench]
    try:
        return read_results(Path(entry["run_dir"])).benchmarks[bench].primary_metric
    except Exception:  # noqa: BLE001 - an unreadable run folder shows every metric instead
        return None


def print_table(doc: dict[str, Any], fmt: str = "text", all_metrics: bool = False,
                primaries: dict[str, str] | None = None) -> None:
    """The sweep summary on stdout (plain text by default: it survives a pipe)."""
    from sfteval.tables import check_format, echo

    echo(summary_tables(doc, all_metrics, primaries), check_format(fmt))
