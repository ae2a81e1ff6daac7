"""Everything about a run's inputs is checked before the first model or engine starts.

The runner calls `prepare` (the `--data` / `--fewshot-data` overrides applied to the
selected benchmarks) and then `build_all`, which builds every selected benchmark's
samples up front: each data file (evaluated split and few-shot pool) is read whole and
parsed, empty files are refused by their own name, ids must be unique within a split
(the duplicate named with its line), and every row that will be evaluated has its fields
checked by its kind while rendering the prompt. The runner then reuses these samples, so
the check costs one pass over the data, not a second one. A bad line in the last
benchmark's data therefore fails in seconds, before any weights load.

Not covered: rows beyond `--limit` are parsed and id-checked but not field-checked (they
are not evaluated); problems only a model can reveal (a prompt longer than its context).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from sfteval.benchmarks import BenchmarkSpec, load_spec, resolve_benchmarks, with_overrides
from sfteval.config import RunConfig
from sfteval.errors import SftevalError
from sfteval.kinds import BuildContext, Built, get_kind


def prepare(specs: Sequence[BenchmarkSpec], cfg: RunConfig) -> list[BenchmarkSpec]:
    """The specs with the run's data overrides in place (see benchmarks.with_overrides)."""
    unknown = set(cfg.fewshot_data) - {s.name for s in specs}
    if unknown:
        raise SftevalError(f"--fewshot-data names benchmark(s) not selected: {', '.join(sorted(unknown))}",
                           field="fewshot-data")
    return [with_overrides(s, data_override(s, cfg), cfg.fewshot_data.get(s.name)) for s in specs]


def data_override(spec: BenchmarkSpec, cfg: RunConfig) -> str | None:
    """--data NAME=PATH, else --train-data for the benchmark whose declared role is `train`."""
    return cfg.data.get(spec.name) or (cfg.train_data if spec.role == "train" else None)


def build_all(specs: Sequence[BenchmarkSpec], context: Callable[[BenchmarkSpec], BuildContext]) -> dict[str, Built]:
    """Every benchmark's samples, in order; the first bad input raises before any model runs."""
    built: dict[str, Built] = {}
    for spec in specs:
        b = get_kind(spec.kind).build(spec, context(spec))
        seen: set[str] = set()
        for dup in (s.id for s in b.samples):  # a kind that derives ids itself must not collide either
            if dup not in seen:
                seen.add(dup)
                continue
            raise SftevalError(f"benchmark '{spec.name}' has two samples with id '{dup}'",
                               path=str(b.data.get("source") or spec.source), field="id")
        built[spec.name] = b
    return built


def select_specs(cfg: RunConfig) -> tuple[list[BenchmarkSpec], dict[str, str]]:
    """The benchmarks a run evaluates (with run-level options applied), and those skipped
    with the reason (a user-data benchmark given no data)."""
    specs = resolve_benchmarks(cfg.benchmarks, cfg.suite)
    if cfg.train_data:
        specs.append(load_spec("train"))
    skipped: dict[str, str] = {}
    kept = []
    for s in specs:
        kind = get_kind(s.kind)
        needs_data = getattr(kind, "user_data", False) and not (s.data.local or s.data.hub)
        given = data_override(s, cfg)
        if needs_data and not given:
            if cfg.benchmarks and s.name in cfg.benchmarks:
                raise SftevalError(f"benchmark '{s.name}' needs data", field="data", hint=f"pass --data {s.name}=PATH")
            skipped[s.name] = f"no data: pass --data {s.name}=PATH"
            continue
        run_level = {"bertscore_model": cfg.bertscore_model, "bootstrap_seed": cfg.seed,
                     "bootstrap_resamples": cfg.bootstrap_resamples}
        extra = {k: run_level[k] for k in getattr(kind, "run_options", ())}
        kept.append(dataclasses.replace(s, options={**s.options, **extra}) if extra else s)
    unknown = set(cfg.data) - {s.name for s in specs}
    if unknown:
        raise SftevalError(f"--data names benchmark(s) not selected: {', '.join(sorted(unknown))}", field="data")
    if not kept:
        raise SftevalError("every selected benchmark was skipped", hint="; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return kept, skipped
