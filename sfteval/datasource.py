"""Where a benchmark split comes from: a local file, a folder of split files, or the hub.

`--data NAME=PATH` names a file (the evaluated split) or a folder of split files named as
on the hub: `test`, `train`, `dev`, `validation` (the benchmark's own split names) with
the suffix .jsonl / .json / .parquet / .csv, as `SPLIT.EXT`, as hub shards
`SPLIT-00000-of-00001.EXT`, or as `SPLIT/*.EXT`, directly in the folder or under a
`CONFIG/` or `data/` subfolder (the hub's own `DATA/split-00000-of-00001.parquet` layout).

The few-shot split, in order: `--fewshot-data NAME=PATH` (or the TOML's
`data.fewshot_local`); with a folder, the same folder; with a file, a sibling file named
after the few-shot split (never the evaluated file itself); else the hub. Hub datasets
are fetched as snapshots through `sfteval.hub` (cache, offline mode, tokens as
huggingface_hub has them) and read with the same folder reader; their repo id, requested
revision and resolved commit are recorded. When the hub cannot be reached, the answer is
one error naming the benchmark, the split and the flag to pass, within seconds.

Every split records the files it came from with their sha256 (`info["files"]`); the
split's `sha256` is the file's own for one file, else the sha256 of `name:sha256` lines.
Not covered: hub datasets that need a loading script or a custom `data_files` layout
(pass them with --data), gzip-compressed files other than HumanEval's bundled one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sfteval.errors import SftevalError
from sfteval.fileio import sha256_file

if TYPE_CHECKING:
    from sfteval.benchmarks import BenchmarkSpec

SPLIT_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
_SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}(?:-[0-9a-f]+)?$")


@dataclass(frozen=True)
class Located:
    files: list[Path]
    info: dict[str, Any]  # source, split, config?, hub? (filled in with sha256/rows on read)


def _in_dir(d: Path, split: str) -> list[Path]:
    whole = [d / f"{split}{s}" for s in SPLIT_SUFFIXES if (d / f"{split}{s}").is_file()]
    shards = sorted(
        p for p in d.iterdir()
        if p.is_file() and p.suffix in SPLIT_SUFFIXES and (m := _SHARD.match(p.stem)) and m.group("split") == split
    )
    sub = d / split
    nested = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix in SPLIT_SUFFIXES) if sub.is_dir() else []
    forms = [f for f in (whole, shards, nested) if f]
    if len(whole) > 1 or len(forms) > 1:
        found = sorted(str(p) for f in forms for p in f)
        raise SftevalError(f"more than one file for split '{split}': {', '.join(found)}", path=str(d),
                           hint="keep one copy of each split")
    return forms[0] if forms else []


def split_files(folder: Path, split: str, config: str | None = None) -> list[Path]:
    """The files holding `split` in `folder` (hub layouts included), or [] when none."""
    for d in [folder] + [folder / c for c in (config, "data", "default") if c]:
        if d.is_dir() and (found := _in_dir(d, split)):
            return found
    return []


def _splits_here(folder: Path) -> list[str]:
    names = set()
    for p in list(folder.glob("*")) + list(folder.glob("*/*")):
        if p.is_file() and p.suffix in SPLIT_SUFFIXES:
            m = _SHARD.match(p.stem)
            names.add(m.group("split") if m else p.stem)
    return sorted(names)


def _local(path: str, split: str, config: str | None, flag: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = split_files(p, split, config)
        if not files:
            raise SftevalError(
                f"no '{split}' split in this folder (found: {', '.join(_splits_here(p)) or 'no data files'})",
                path=str(p), hint=f"add {split}.jsonl (or .json/.parquet/.csv, or {split}-00000-of-00001.parquet), "
                                  f"or pass {flag}",
            )
        return files
    if p.is_file():
        return [p]
    raise SftevalError("data file or folder not found", path=str(p), hint=f"check the path given to {flag}")


def _sibling(path: str, split: str) -> list[Path]:
    p = Path(path)
    if not p.is_file():
        return []
    try:
        files = split_files(p.parent, split)
    except SftevalError:
        return []
    return [] if any(f.resolve() == p.resolve() for f in files) else files


def _hub(spec: BenchmarkSpec, split: str, role: str, flag: str) -> Located:
    from sfteval import hub

    d = spec.data
    assert d.hub
    dirs = [f"{c}/" for c in (d.config, "data", "default") if c] + [""]
    patterns = [f"{p}{split}{sep}*" for p in dirs for sep in ("-", ".", "/")]
    online, why = hub.hub_reachable()
    what = f"benchmark '{spec.name}': the {role} split '{split}' comes from hub dataset '{d.hub}'"
    try:
        snap = hub.snapshot(hub.HubRef(d.hub, d.revision), repo_type="dataset", allow_patterns=patterns,
                            what="dataset", hint=f"pass {flag}")
    except SftevalError as e:
        if online:
            raise SftevalError(f"{what}: {e.message}", field=e.field, hint=e.hint) from e
        raise SftevalError(f"{what}, which is not in the hub cache, and {why}", field="data",
                           hint=f"pass {flag} (a local copy of that split)") from e
    files = split_files(snap.path, split, d.config)
    if not files:
        state = "" if online else f" ({why}: only the cache was searched)"
        raise SftevalError(f"{what}, but its snapshot {snap.commit[:12]} has no '{split}' files in a layout "
                           f"sfteval reads{state}", path=str(snap.path), hint=f"pass {flag}")
    info = {"source": d.hub, "config": d.config, "split": split, "hub": snap.record()}
    return Located(files, info)


def locate(spec: BenchmarkSpec, override: str | None = None, *, fewshot: bool = False) -> Located:
    """The files of the benchmark's evaluated split (or of its few-shot pool)."""
    d = spec.data
    local = override or d.local
    if not fewshot:
        flag = f"--data {spec.name}=PATH"
        if local:
            return Located(_local(local, d.split, d.config, flag), {"split": d.split})
        if d.hub:
            return _hub(spec, d.split, "evaluated", flag)
        raise SftevalError(f"benchmark '{spec.name}' has no data", path=spec.source, field="data", hint=f"pass {flag}")
    split = d.fewshot_split or "train"
    flag = f"--fewshot-data {spec.name}=PATH"
    if d.fewshot_local:
        return Located(_local(d.fewshot_local, split, d.config, flag), {"split": split})
    if local and Path(local).is_dir():
        return Located(_local(local, split, d.config, flag), {"split": split})
    if local and (sib := _sibling(local, split)):
        return Located(sib, {"split": split, "found_as": "sibling"})
    if d.hub:
        return _hub(spec, split, "few-shot", flag + f" (or put {split}.jsonl next to the data file)" if local else flag)
    raise SftevalError(f"benchmark '{spec.name}' has no few-shot data (split '{split}')", path=spec.source,
                       field="data.fewshot_local", hint=f"pass {flag}, or set num_fewshot = 0")


def file_records(files: list[Path], rows_per_file: list[int]) -> tuple[list[dict[str, Any]], str]:
    """[{path, sha256, rows}] and the split's sha256 (the file's own for one file)."""
    recs = [{"path": str(f.resolve()), "sha256": sha256_file(f), "rows": n} for f, n in zip(files, rows_per_file)]
    if len(recs) == 1:
        return recs, recs[0]["sha256"]
    joined = "".join(f"{Path(r['path']).name}:{r['sha256']}\n" for r in recs)
    return recs, hashlib.sha256(joined.encode()).hexdigest()
