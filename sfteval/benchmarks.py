"""Benchmark definitions: one TOML per benchmark in `sfteval/catalog/`, suites in
`sfteval/catalog/suites/`. A TOML names a scorer kind, its data, prompt and generation
settings; the behaviour lives in `sfteval/kinds/`.

    name = "gsm8k"
    kind = "math"
    role = "general"                    # target | train | general (sfteval.types.Role)
    [data]   hub = "openai/gsm8k", config = "main", split = "test", local = "..."
    [prompt] num_fewshot = 8, fewshot_seed = 1234
    [generation] max_new_tokens = 256, stop = ["Question:"]
    [options] ...                       # kind-specific knobs

Data resolution: `--data NAME=PATH` (a file or a folder of split files) beats
`data.local` beats `data.hub`; the few-shot pool's order is in `sfteval.datasource`.
Local paths in a TOML are relative to that TOML's folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval.config import check_fields, load_toml
from sfteval.errors import SftevalError
from sfteval.types import ROLES, GenParams

# The built-in catalog ships inside the package (package data), so a wheel install finds it.
REPO_BENCHMARKS = Path(__file__).resolve().parent / "catalog"


def benchmarks_dir() -> Path:
    """Built-in benchmark folder (override with $SFTEVAL_BENCHMARKS)."""
    return Path(os.environ.get("SFTEVAL_BENCHMARKS", REPO_BENCHMARKS))


@dataclass(frozen=True)
class DataSpec:
    hub: str | None = None
    config: str | None = None
    revision: str | None = None  # hub datasets: branch, tag or commit (recorded as resolved)
    split: str = "test"
    local: str | None = None
    fewshot_split: str | None = None  # hub split for exemplars
    fewshot_local: str | None = None  # local file for exemplars
    format: str = "auto"  # for conversation data (alpaca | sharegpt | messages)


@dataclass(frozen=True)
class PromptSpec:
    num_fewshot: int = 0
    fewshot_seed: int = 1234
    chat_fewshot: int = 0  # exemplars when the chat template is used (default zero-shot)
    instruction: str = ""  # appended to the question in chat mode


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    kind: str
    description: str = ""
    role: str = "target"  # one of ROLES
    data: DataSpec = field(default_factory=DataSpec)
    prompt: PromptSpec = field(default_factory=PromptSpec)
    gen: GenParams = field(default_factory=GenParams)
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the TOML it came from

    @property
    def general(self) -> bool:
        """Counts toward catastrophic-forgetting checks."""
        return self.role == "general"

    def settings(self) -> dict[str, Any]:
        """What shapes prompts and scoring: recorded and hashed into the run id."""
        return {
            "kind": self.kind,
            "data": self.data.__dict__,
            "prompt": self.prompt.__dict__,
            "gen": {**self.gen.__dict__, "stop": list(self.gen.stop)},
            "options": self.options,
        }


_TOP = {"name", "kind", "description", "role", "general", "data", "prompt", "generation", "options"}


def parse_role(raw: dict[str, Any], path: str) -> str:
    """`role = "target" | "train" | "general"`. A TOML from before roles may say
    `general = true | false` instead (general, else target); both must then agree."""
    general = raw.get("general")
    if general is not None and not isinstance(general, bool):
        raise SftevalError("expected true or false", path=path, field="general")
    role = raw.get("role")
    if role is None:
        return "general" if general else "target"
    if role not in ROLES:
        raise SftevalError(f"unknown role {role!r}", path=path, field="role", hint=f"one of: {', '.join(ROLES)}")
    if general is not None and general != (role == "general"):
        raise SftevalError(f"general = {str(general).lower()} contradicts role = {role!r}", path=path,
                           field="general", hint="drop `general`: the role says it")
    return str(role)


def parse_spec(raw: dict[str, Any], path: Path) -> BenchmarkSpec:
    p = str(path)
    check_fields(raw, _TOP, path=p)
    for key in ("name", "kind"):
        if key not in raw:
            raise SftevalError("missing field", path=p, field=key)
    data = raw.get("data", {})
    prompt = raw.get("prompt", {})
    gen = raw.get("generation", {})
    check_fields(data, set(DataSpec.__dataclass_fields__), path=p, section="data")
    check_fields(prompt, set(PromptSpec.__dataclass_fields__), path=p, section="prompt")
    check_fields(gen, set(GenParams.__dataclass_fields__), path=p, section="generation")
    base = path.parent
    for key in ("local", "fewshot_local"):
        if data.get(key):
            data = {**data, key: str((base / data[key]).resolve())}
    if "stop" in gen:
        gen = {**gen, "stop": tuple(gen["stop"])}
    try:
        return BenchmarkSpec(
            name=str(raw["name"]),
            kind=str(raw["kind"]),
            description=str(raw.get("description", "")),
            role=parse_role(raw, p),
            data=DataSpec(**data),
            prompt=PromptSpec(**prompt),
            gen=GenParams(**gen),
            options=dict(raw.get("options", {})),
            source=p,
        )
    except TypeError as e:
        raise SftevalError(f"bad benchmark definition: {e}", path=p) from e


def load_spec(name_or_path: str) -> BenchmarkSpec:
    """A built-in benchmark by name, or a TOML file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = benchmarks_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            known = sorted(p.stem for p in benchmarks_dir().glob("*.toml"))
            raise SftevalError(f"unknown benchmark '{name_or_path}'", field="benchmark", hint=f"known: {', '.join(known)}")
    return parse_spec(load_toml(path), path)


def load_suite(name_or_path: str) -> list[str]:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = benchmarks_dir() / "suites" / f"{name_or_path}.toml"
        if not path.is_file():
            known = sorted(p.stem for p in (benchmarks_dir() / "suites").glob("*.toml"))
            raise SftevalError(f"unknown suite '{name_or_path}'", field="suite", hint=f"known: {', '.join(known)}")
    raw = load_toml(path)
    check_fields(raw, {"name", "description", "benchmarks"}, path=str(path))
    names = raw.get("benchmarks")
    if not isinstance(names, list) or not names:
        raise SftevalError("expected a non-empty list of benchmark names", path=str(path), field="benchmarks")
    # Entries may be paths relative to the suite file.
    return [str((path.parent / n).resolve()) if str(n).endswith(".toml") else str(n) for n in names]


def resolve_benchmarks(names: Sequence[str], suite: str | None) -> list[BenchmarkSpec]:
    wanted = list(load_suite(suite)) if suite else []
    wanted += [n for n in names if n not in wanted]
    if not wanted:
        raise SftevalError("no benchmarks selected", field="benchmark", hint="pass -b NAME or --suite offline|default")
    specs = [load_spec(n) for n in wanted]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise SftevalError(f"benchmark '{s.name}' selected twice", path=s.source, field="name")
        seen.add(s.name)
    return specs


@dataclass(frozen=True)
class LoadedRows:
    rows: list[tuple[int, dict[str, Any]]]  # (line number, row)
    info: dict[str, Any]  # recorded: source, split, files [{path, sha256, rows}], sha256, rows, hub?


def with_overrides(spec: BenchmarkSpec, data: str | None, fewshot: str | None) -> BenchmarkSpec:
    """The spec with `--data` / `--fewshot-data` in place of its TOML data. A `--data`
    override also drops the TOML's few-shot file: the pool then comes from the given
    folder, a sibling split file, or the hub (see sfteval.datasource)."""
    if data is None and fewshot is None:
        return spec
    d = spec.data
    if data is not None:
        d = dataclasses.replace(d, local=data, fewshot_local=fewshot)
    else:
        d = dataclasses.replace(d, fewshot_local=fewshot)
    return dataclasses.replace(spec, data=d)


def load_rows(spec: BenchmarkSpec, override: str | None = None, *, fewshot: bool = False) -> LoadedRows:
    """The benchmark's rows (or its few-shot pool) from a local file, a folder of split
    files or the hub; refuses an empty split (by its file's name) and duplicate ids."""
    from sfteval.datasource import file_records, locate
    from sfteval.formats import read_rows

    located = locate(spec, override, fewshot=fewshot)
    rows: list[tuple[int, dict[str, Any]]] = []
    counts = []
    for f in located.files:
        part = read_rows(f)
        if not part:
            raise SftevalError("empty data file (no rows)", path=str(f), hint="give a file with at least one row")
        counts.append(len(part))
        offset = len(rows) if len(located.files) > 1 else 0  # several shards: rows numbered across the split
        rows += [(line + offset, row) for line, row in part]
    files, digest = file_records(located.files, counts)
    source = str(located.files[0]) if len(files) == 1 else str(located.files[0].parent)
    info = {"source": source, **located.info, "files": files, "sha256": digest, "rows": len(rows)}
    if "hub" in located.info:
        info["source"] = located.info["source"]
    check_unique_ids(rows, str(located.files[0]) if len(files) == 1 else source)
    return LoadedRows(rows, info)


def check_unique_ids(rows: list[tuple[int, dict[str, Any]]], source: str) -> None:
    """Ids are the data's id field (else the row index); a duplicate is named with both lines."""
    from sfteval.formats import ID_FIELDS

    seen: dict[str, int] = {}
    for i, (line, row) in enumerate(rows):
        rid = row_id(row, i)
        if rid in seen:
            key = next((k for k in ID_FIELDS if row.get(k) is not None), "id")
            raise SftevalError(f"duplicate id '{rid}' (first at line {seen[rid]})", path=source, line=line, field=key,
                               hint="ids must be unique within a split")
        seen[rid] = line


def require(row: dict[str, Any], key: str, source: str, line: int) -> Any:
    if key not in row or row[key] is None:
        raise SftevalError("missing field", path=source, line=line, field=key)
    return row[key]


def row_id(row: dict[str, Any], index: int) -> str:
    """Stable sample id: the data's own id field, else the 0-based row index."""
    from sfteval.formats import ID_FIELDS

    for key in ID_FIELDS:
        if row.get(key) is not None:
            return str(row[key])
    return str(index)


def limited(rows: list[tuple[int, dict[str, Any]]], limit: int | None) -> list[tuple[int, int, dict[str, Any]]]:
    """(index, line, row) for the first `limit` rows of the evaluated split."""
    picked = rows if limit is None else rows[:limit]
    return [(i, line, row) for i, (line, row) in enumerate(picked)]
