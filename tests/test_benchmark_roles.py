"""A benchmark's declared `role` (target | train | general) replaces name conventions:
parsed from the TOML with errors naming file and field, declared by every catalog entry,
and what the runner's data lookup and the diagnoses go by."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfteval.benchmarks import REPO_BENCHMARKS, load_spec
from sfteval.config import RunConfig, load_toml
from sfteval.errors import SftevalError
from sfteval.preflight import data_override
from sfteval.runfolder import RUN_SCHEMA, RunResults
from sfteval.diagnoses.common import train_and_heldout


def _toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "b.toml"
    path.write_text('name = "b"\nkind = "reference"\n' + body)
    return path


def test_unknown_role_names_file_and_field(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'role = "teacher"\n')
    with pytest.raises(SftevalError) as e:
        load_spec(str(path))
    assert e.value.field == "role" and str(path) in str(e.value) and "teacher" in str(e.value)


def test_general_flag_contradicting_the_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SftevalError) as e:
        load_spec(str(_toml(tmp_path, 'role = "target"\ngeneral = true\n')))
    assert e.value.field == "general"
    with pytest.raises(SftevalError, match="true or false"):
        load_spec(str(_toml(tmp_path, 'general = "yes"\n')))


def test_legacy_general_flag_still_reads(tmp_path: Path) -> None:
    assert load_spec(str(_toml(tmp_path, "general = true\n"))).role == "general"
    assert load_spec(str(_toml(tmp_path, "general = false\n"))).role == "target"
    assert load_spec(str(_toml(tmp_path, ""))).role == "target"


def test_every_catalog_benchmark_declares_its_role() -> None:
    for path in sorted(REPO_BENCHMARKS.glob("*.toml")):
        raw = load_toml(path)
        assert raw.get("role") in ("target", "train", "general"), path.name


def test_train_data_goes_to_the_benchmark_whose_role_is_train(tmp_path: Path) -> None:
    spec = load_spec(str(_toml(tmp_path, 'role = "train"\n')))  # not named "train"
    cfg = RunConfig(train_data="sft.jsonl")
    assert data_override(spec, cfg) == "sft.jsonl"
    assert data_override(load_spec("heldout"), cfg) is None


def test_diagnoses_pair_train_with_the_target_of_its_kind() -> None:
    res = RunResults.from_dict({"schema": RUN_SCHEMA, "benchmarks": {
        "mmlu": {"role": "general", "kind": "choice"}, "qa": {"role": "target", "kind": "math"},
        "mine": {"role": "target", "kind": "reference"}, "sample": {"role": "train", "kind": "reference"}}})
    assert train_and_heldout(res) == ("sample", "mine")
    no_train = RunResults.from_dict({"schema": RUN_SCHEMA, "benchmarks": {"qa": {"role": "target"}}})
    assert train_and_heldout(no_train) == (None, "qa")
