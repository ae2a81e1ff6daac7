"""`--shard I/N` (for schedulers without Ray, e.g. Slurm job arrays) and `sfteval merge`.

A shard evaluates a fixed subset of every benchmark: the runner's chunks (K samples at
fixed positions in build order, K = the backend's chunk_size: hf 64, openai 512, vllm
2048) go round-robin to the shards, chunk c to shard c % N + 1. Whole chunks, because
a chunk is one backend call and what is computed per call (hf's per-batch sampling
seed, a scorer's per-call record) must be the same as in the unsharded run for the
merge to equal it; round-robin so that data sorted by length or subject spreads evenly.
A benchmark of fewer than N chunks leaves some shards without work for it. The shard's
run folder is an ordinary run folder of that subset, with run id
`<unsharded id>-shard<I>of<N>` (shards never write into one folder) and a `shard`
record: {"index", "count", "rule", "unsharded_run_id"}.

`merge_shards(folders, out)` checks that the folders are the N shards of one run (same
unsharded id, every index once, same settings), interleaves their samples back into
build order and aggregates them with the benchmark's own kind, writing
OUT/runs/<unsharded id>/: the same samples files and results.json as an unsharded run
apart from timings (created/finished, per-benchmark timing, sessions). Everything else
in results.json (model, environment, backend, prompting) is taken from shard 1.

Not covered: sampled (temperature > 0) outputs on the hf backend, which seeds per batch,
so batches cut differently sample differently (vLLM seeds per request: identical).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.runfolder import RunResults, iter_sample_lines, prompts_digest, read_results, write_results

RULE = "chunks of `unit` samples in build order, chunk c to shard c % count + 1"
TIMING_KEYS = ("created", "finished", "sessions")


@dataclasses.dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        return f"-shard{self.index}of{self.count}"

    def take(self, items: Sequence[Any], unit: int) -> list[Any]:
        """This shard's items: whole blocks of `unit`, block b to shard b % count + 1."""
        return [x for p, x in enumerate(items) if (p // unit) % self.count == self.index - 1]

    def record(self, unsharded_run_id: str, unit: int) -> dict[str, Any]:
        return {"index": self.index, "count": self.count, "unit": unit, "rule": RULE, "unsharded_run_id": unsharded_run_id}


def parse_shard(text: str | None) -> Shard | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise SftevalError(f"--shard expects I/N with 1 <= I <= N, got '{text}'", field="shard",
                           hint="e.g. --shard ${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT} with a 1-based array")
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_built(built: Any, shard: Shard | None, unit: int) -> Any:
    """A kind's Built with only this shard's samples (unchanged without a shard)."""
    return built if shard is None else dataclasses.replace(built, samples=shard.take(built.samples, max(1, unit)))


def _read(folder: Path) -> dict[str, Any]:
    path = folder / "results.json"
    if not path.is_file():
        raise SftevalError("not a finished run folder (no results.json)", path=str(folder),
                           hint="finish (or re-run) this shard first")
    return read_results(folder).to_dict()  # the run-folder reader: schema and fields checked


def _check_set(docs: list[tuple[Path, dict[str, Any]]]) -> int:
    first_path, first = docs[0]
    rec = first.get("shard")
    if not rec:
        raise SftevalError("not a shard run folder (no 'shard' record)", path=str(first_path / "results.json"), field="shard")
    count, base_id = int(rec["count"]), rec["unsharded_run_id"]
    seen: dict[int, Path] = {}
    for path, d in docs:
        r = d.get("shard") or {}
        where = str(path / "results.json")
        if r.get("unsharded_run_id") != base_id or int(r.get("count", 0)) != count:
            raise SftevalError(f"shard of another run ({r.get('unsharded_run_id')}, not {base_id})", path=where, field="shard")
        if int(r["index"]) in seen:
            raise SftevalError(f"shard {r['index']}/{count} given twice (also {seen[int(r['index'])]})", path=where, field="shard")
        seen[int(r["index"])] = path
        if set(d["benchmarks"]) != set(first["benchmarks"]):
            raise SftevalError("shards hold different benchmarks", path=where, field="benchmarks")
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise SftevalError(f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing)}", field="shard",
                           hint="pass every shard's run folder")
    return count


def _interleave(parts: list[list[str]], unit: int) -> list[str]:
    """Shards' lines back in build order: chunk c is the (c // N)-th chunk of shard c % N."""
    out: list[str] = []
    n = len(parts)
    for c in range(-(-sum(len(x) for x in parts) // unit)):
        k = c // n
        out.extend(parts[c % n][k * unit : (k + 1) * unit])
    return out


def merge_shards(folders: Sequence[str | Path], out: str | Path) -> Path:
    """Join the N shard folders of one run into OUT/runs/<unsharded run id>/."""
    from sfteval.kinds import get_kind

    docs = [(Path(f), _read(Path(f))) for f in folders]
    count = _check_set(docs)
    docs.sort(key=lambda pd: int(pd[1]["shard"]["index"]))
    template = docs[0][1]
    base_id = template["shard"]["unsharded_run_id"]
    unit = int(template["shard"]["unit"])
    run_dir = Path(out) / "runs" / base_id
    if (run_dir / "results.json").is_file():
        raise SftevalError("a finished run folder is already there", path=str(run_dir), hint="merge into another --out")
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    cfg_dict = {**template["config"], "shard": None, "out": str(out)}
    specs = {s.name: s for s in _specs_from_config(cfg_dict)}
    benchmarks: dict[str, Any] = {}
    for name, entry in template["benchmarks"].items():
        lines = []
        for folder, d in docs:
            text = (folder / d["benchmarks"][name]["samples_file"]).read_text(encoding="utf-8")
            lines.append([ln for ln in text.splitlines() if ln.strip()])
        merged = _interleave(lines, unit)
        if sorted(merged) != sorted(ln for part in lines for ln in part):
            raise SftevalError(f"benchmark '{name}': shard sizes {[len(x) for x in lines]} are not one split", field="shard")
        (run_dir / entry["samples_file"]).write_text("".join(ln + "\n" for ln in merged), encoding="utf-8")
        # read back through the one sample reader (it refuses an id two shards both wrote)
        records = [s for _, s in iter_sample_lines(run_dir / entry["samples_file"])]
        spec = specs[name]
        agg = get_kind(spec.kind).aggregate(spec, records)
        from sfteval.types import to_dict

        hashes = {r.id: r.prompt_hash for r in records}
        benchmarks[name] = {
            **entry,
            "n": len(records),
            "metrics": {k: v.to_dict() for k, v in agg.metrics.items()},
            "primary_metric": agg.primary,
            "breakdown": to_dict(agg.breakdown),
            "prompts_digest": prompts_digest(hashes),
            "timing": _sum_timing([d["benchmarks"][name].get("timing") or {} for _, d in docs]),
        }
    doc = {k: v for k, v in template.items() if k != "shard"}
    doc.update(
        run_id=base_id,
        config=cfg_dict,
        benchmarks=benchmarks,
        created=min(d.get("created", "") for _, d in docs),
        finished=max(d.get("finished", "") for _, d in docs),
        merged_from={"count": count, "run_ids": [d["run_id"] for _, d in docs]},
    )
    if "sessions" in template:
        doc["sessions"] = [s for _, d in docs for s in d.get("sessions", [])]
    write_results(run_dir, RunResults.from_dict(doc))
    return run_dir


def _sum_timing(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in parts:
        for k, v in t.items():
            if isinstance(v, (int, float)):
                out[k] = round(out.get(k, 0) + v, 3)
    return out


def _specs_from_config(cfg_dict: dict[str, Any]) -> list[Any]:
    """The benchmark specs the run used, rebuilt from its recorded config."""
    from sfteval.config import EngineSettings, RunConfig
    from sfteval.preflight import select_specs

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    engine_fields = {f.name for f in dataclasses.fields(EngineSettings)}
    kw = {k: v for k, v in cfg_dict.items() if k in fields}
    kw["benchmarks"] = tuple(kw.get("benchmarks") or ())
    kw["engine"] = EngineSettings(**{k: v for k, v in (cfg_dict.get("engine") or {}).items() if k in engine_fields})
    return select_specs(RunConfig(**kw))[0]
