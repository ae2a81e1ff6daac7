"""`--shard I/N` + `sfteval merge` == an unsharded run; data parallel N == 1 (greedy);
`--backend auto` says why and picks hf for a model whose engine start-up would dominate."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sfteval.config import EngineSettings, RunConfig
from sfteval.errors import SftevalError
from sfteval.fileio import read_json
from sfteval.runner import execute_run
from sfteval.shard import Shard, merge_shards, parse_shard

# hf with batch_size 1: every request is computed alone, so cutting the requests
# differently (shards, replicas) cannot change a single float.
ENGINE = EngineSettings(batch_size=1)
TIMING = ("created", "finished", "sessions")


def _cfg(model: Path, out: Path, **kw: Any) -> RunConfig:
    base = dict(checkpoint=str(model), benchmarks=("offline_mmlu",), backend="hf", out=str(out), limit=7, engine=ENGINE)
    base.update(kw)
    return RunConfig(**base)


def comparable(run_dir: Path) -> dict[str, Any]:
    """results.json without what differs between equal runs: times, sessions, how it was split."""
    doc = read_json(run_dir / "results.json")
    for k in (*TIMING, "merged_from", "environment"):
        doc.pop(k, None)
    for b in doc["benchmarks"].values():
        b.pop("timing", None)
    doc["backend"].pop("data_parallel", None)
    doc["config"].pop("out")  # the merge writes under its own --out
    doc["config"]["engine"].pop("data_parallel_size", None)
    return doc


def samples(run_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((run_dir / "samples").glob("*.jsonl"))}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 2 samples, so that 7 items make 4 chunks to share out."""
    from sfteval.backends.hf import HFBackend

    monkeypatch.setattr(HFBackend, "chunk_size", 2)


@pytest.fixture(scope="module")
def unsharded(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sfteval.backends.hf import HFBackend

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HFBackend, "chunk_size", 2)
        return execute_run(_cfg(tiny_model, tmp_path_factory.mktemp("whole")))


def test_parse_shard() -> None:
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(None) is None
    assert Shard(2, 3).take(list(range(8)), 1) == [1, 4, 7]
    assert Shard(2, 2).take(list(range(7)), 2) == [2, 3, 6]
    for bad in ("0/2", "3/2", "1-2", "a/b"):
        with pytest.raises(SftevalError, match="--shard expects I/N"):
            parse_shard(bad)


def test_two_shards_merged_equal_the_unsharded_run(unsharded: Path, tiny_model: Path, tmp_path: Path) -> None:
    parts = [execute_run(_cfg(tiny_model, tmp_path / f"s{i}", shard=f"{i}/2")) for i in (1, 2)]
    for i, p in enumerate(parts, start=1):
        doc = read_json(p / "results.json")
        assert p.name == f"{unsharded.name}-shard{i}of2"  # never the unsharded folder
        assert doc["shard"] == {"index": i, "count": 2, "unit": 2, "rule": doc["shard"]["rule"], "unsharded_run_id": unsharded.name}
        assert doc["benchmarks"]["offline_mmlu"]["n"] == (4 if i == 1 else 3)  # 7 items = chunks 2,2,2,1, round robin
    merged = merge_shards(list(reversed(parts)), tmp_path / "merged")  # any order
    assert merged.name == unsharded.name
    assert samples(merged) == samples(unsharded)
    assert comparable(merged) == comparable(unsharded)
    with pytest.raises(SftevalError, match="missing shard"):
        merge_shards(parts[:1], tmp_path / "m2")
    with pytest.raises(SftevalError, match="given twice"):
        merge_shards([parts[0], parts[0]], tmp_path / "m3")
    with pytest.raises(SftevalError, match="already there"):
        merge_shards(parts, tmp_path / "merged")


def test_merge_command(unsharded: Path, tiny_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sfteval.cli import app

    parts = [execute_run(_cfg(tiny_model, tmp_path / f"s{i}", shard=f"{i}/3")) for i in (1, 2, 3)]
    res = CliRunner().invoke(app, ["merge", *map(str, parts), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert samples(tmp_path / "m" / "runs" / unsharded.name) == samples(unsharded)


@pytest.mark.slow
def test_data_parallel_two_replicas_equal_one(tiny_model: Path, tmp_path: Path) -> None:
    both = ("offline_mmlu", "offline_gsm8k")  # scoring and generation
    one = execute_run(_cfg(tiny_model, tmp_path / "one", benchmarks=both, limit=3))
    dp = execute_run(_cfg(tiny_model, tmp_path / "dp", benchmarks=both, limit=3,
                          engine=dataclasses.replace(ENGINE, data_parallel_size=2)))
    assert dp.name == one.name
    doc = read_json(dp / "results.json")
    assert doc["backend"]["data_parallel"]["size"] == 2
    assert samples(dp) == samples(one)
    assert comparable(dp) == comparable(one)


def test_data_parallel_slices_keep_order() -> None:
    from sfteval.backends.parallel import replica_env, slices

    assert slices(7, 3) == [(0, 3), (3, 5), (5, 7)] and slices(1, 2) == [(0, 1), (1, 1)]
    assert replica_env(1, 2, 2, ["0", "1", "2", "3"], 16) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert replica_env(0, 2, 1, [], 16)["OMP_NUM_THREADS"] == "8"
    with pytest.raises(SftevalError, match="needs 4 GPUs; 2 visible"):
        replica_env(1, 2, 2, ["0", "1"], 16)


def test_auto_explains_and_picks_hf_for_a_tiny_model(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfteval.backends import auto

    assert 100_000 < auto.count_params(str(tiny_model)) < 1_000_000  # the tiny Llama: ~0.46M
    monkeypatch.setattr("sfteval.backends.vllm.vllm_usable", lambda: (True, "vllm 0.32.0 on cpu"))
    name, why = auto.choose_backend("auto", str(tiny_model))
    assert name == "hf" and "engine start-up" in why and "parameters" in why
    monkeypatch.setenv("SFTEVAL_AUTO_SMALL_PARAMS", "1000")
    name, why = auto.choose_backend("auto", str(tiny_model))
    assert name == "vllm" and why.startswith("auto: vllm 0.32.0 on cpu")
    monkeypatch.setattr("sfteval.backends.vllm.vllm_usable", lambda: (False, "vllm is not importable: X"))
    assert auto.choose_backend("auto", str(tiny_model)) == ("hf", "auto: vllm is not importable: X")
    assert auto.choose_backend("vllm", str(tiny_model)) == ("vllm", "requested")
