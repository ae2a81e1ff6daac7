"""Local copies of hub benchmarks through one flag, and the offline answer when they are missing.

`--data NAME=PATH` as a file (few-shot pool from a sibling split file or
`--fewshot-data`), as a folder of hub-named split files (jsonl, and the hub's own
`CONFIG/split-00000-of-00001.parquet` layout), hub datasets read from a real hub cache,
and: no few-shot pool and no hub -> exit 2 within seconds, naming benchmark, split and flag.
These run `sfteval run --replay` (no model) in a fresh process, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubcache import add_snapshot, commit_sha
from sfteval.errors import SftevalError
from sfteval.fileio import read_json, sha256_file


def _gsm8k(n: int, start: int = 0) -> list[dict]:
    return [{"question": f"What is {i} plus 0?", "answer": f"{i} + 0 = <<{i}+0={i}>>{i}\n#### {i}"}
            for i in range(start, start + n)]


def _mmlu(n: int, subject: str = "arithmetic") -> list[dict]:
    return [{"question": f"{i} + 1 = ?", "subject": subject, "choices": [str(i + 1), "0", "7", "9"], "answer": 0}
            for i in range(n)]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _outs(path: Path, n: int, text: str = "#### {i}") -> Path:
    return _jsonl(path, [{"id": str(i), "output": text.format(i=i)} for i in range(n)])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


def _replay(tmp: Path, outs: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sfteval.cli", "run", "--replay", str(outs), "--name", "r", "--out", str(tmp / "rep"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), cwd=tmp, timeout=300)


def _results(tmp: Path) -> dict:
    (run_dir,) = (tmp / "rep" / "runs").glob("r-*")
    return read_json(run_dir / "results.json")


def test_file_with_a_sibling_fewshot_split(tmp_path: Path) -> None:
    test = _jsonl(tmp_path / "gsm8k" / "test.jsonl", _gsm8k(3))
    train = _jsonl(tmp_path / "gsm8k" / "train.jsonl", _gsm8k(10, start=100))
    r = _replay(tmp_path, _outs(tmp_path / "o.jsonl", 3), "-b", "gsm8k", "--data", f"gsm8k={test}")
    assert r.returncode == 0, r.stderr
    res = _results(tmp_path)["benchmarks"]["gsm8k"]
    assert res["metrics"]["exact_match_strict"]["value"] == 1.0
    assert res["data"]["files"] == [{"path": str(test.resolve()), "sha256": sha256_file(test), "rows": 3}]
    pool = res["settings"]["fewshot_data"]
    assert pool["files"][0]["path"] == str(train.resolve()) and pool["found_as"] == "sibling"
    assert pool["sha256"] == sha256_file(train) and res["settings"]["num_fewshot"] == 8


def test_file_with_fewshot_data_flag(tmp_path: Path) -> None:
    test = _jsonl(tmp_path / "a" / "my-test.jsonl", _gsm8k(3))
    pool = _jsonl(tmp_path / "b" / "exemplars.jsonl", _gsm8k(8, start=50))
    r = _replay(tmp_path, _outs(tmp_path / "o.jsonl", 3), "-b", "gsm8k", "--data", f"gsm8k={test}",
                "--fewshot-data", f"gsm8k={pool}")
    assert r.returncode == 0, r.stderr
    used = _results(tmp_path)["benchmarks"]["gsm8k"]["settings"]
    assert used["fewshot_data"]["files"][0]["path"] == str(pool.resolve())
    assert set(used["fewshot_ids"]) <= {str(i) for i in range(8)}


def test_folder_of_split_files(tmp_path: Path) -> None:
    """The issue's own case: `--data mmlu=DIR` with test.jsonl and dev.jsonl in it."""
    d = tmp_path / "mmlu"
    _jsonl(d / "test.jsonl", _mmlu(4))
    _jsonl(d / "dev.jsonl", _mmlu(5))
    r = _replay(tmp_path, _outs(tmp_path / "o.jsonl", 4, "A"), "-b", "mmlu", "--data", f"mmlu={d}")
    assert r.returncode == 0, r.stderr
    res = _results(tmp_path)["benchmarks"]["mmlu"]
    assert res["data"]["files"][0]["path"] == str((d / "test.jsonl").resolve())
    assert res["settings"]["fewshot_data"]["files"][0]["path"] == str((d / "dev.jsonl").resolve())
    assert res["metrics"]["accuracy"]["value"] == 1.0


def test_folder_in_the_hubs_parquet_layout(tmp_path: Path) -> None:
    d = tmp_path / "mmlu-copy"
    test = _parquet(d / "all" / "test-00000-of-00001.parquet", _mmlu(4))
    _parquet(d / "all" / "dev-00000-of-00001.parquet", _mmlu(5))
    r = _replay(tmp_path, _outs(tmp_path / "o.jsonl", 4, "A"), "-b", "mmlu", "--data", f"mmlu={d}")
    assert r.returncode == 0, r.stderr
    res = _results(tmp_path)["benchmarks"]["mmlu"]
    assert res["data"]["files"] == [{"path": str(test.resolve()), "sha256": sha256_file(test), "rows": 4}]


def test_hub_dataset_from_the_cache_records_its_revision(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    src = tmp_path / "src"
    files = {"main/test-00000-of-00001.parquet": _parquet(src / "test.parquet", _gsm8k(3)),
             "main/train-00000-of-00001.parquet": _parquet(src / "train.parquet", _gsm8k(9, start=10))}
    add_snapshot(cache, "openai/gsm8k", files, commit=commit_sha("gsm8k"), repo_type="dataset")
    r = _replay(tmp_path, _outs(tmp_path / "o.jsonl", 3), "-b", "gsm8k", env=_env(HF_HUB_CACHE=str(cache)))
    assert r.returncode == 0, r.stderr
    res = _results(tmp_path)["benchmarks"]["gsm8k"]
    hub = {"repo_id": "openai/gsm8k", "repo_type": "dataset", "revision": "main", "commit": commit_sha("gsm8k")}
    assert res["data"]["hub"] == hub and res["data"]["source"] == "openai/gsm8k" and res["data"]["rows"] == 3
    assert res["settings"]["fewshot_data"]["hub"] == hub


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE=1", "hub unreachable"])
def test_offline_without_a_fewshot_pool_is_one_fast_error(tmp_path: Path, how: str) -> None:
    test = _jsonl(tmp_path / "lonely" / "test.jsonl", _gsm8k(3))
    env = _env(HF_HUB_CACHE=str(tmp_path / "empty-cache"))
    if how == "hub unreachable":  # not offline by setting: the probe must find out, fast
        env.pop("HF_HUB_OFFLINE")
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens
    t0 = time.monotonic()
    r = _replay(tmp_path, _outs(tmp_path / "o.jsonl", 3), "-b", "gsm8k", "--data", f"gsm8k={test}", env=env)
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    err = r.stderr
    assert "benchmark 'gsm8k'" in err and "split 'train'" in err and "--fewshot-data gsm8k=PATH" in err
    assert "Traceback" not in err and err.count("error:") == 1
    assert elapsed < 10, elapsed


def test_offline_failure_with_a_checkpoint_stops_before_the_model(tmp_path: Path, tiny_model: Path) -> None:
    """The same error on a model run: found by preflight, before any weights load. (Without
    the chat template gsm8k is 8-shot; with it, zero-shot, and then needs no pool at all.)"""
    test = _jsonl(tmp_path / "lonely" / "test.jsonl", _gsm8k(3))
    cmd = [sys.executable, "-m", "sfteval.cli", "run", str(tiny_model), "-b", "offline_gsm8k", "-b", "gsm8k",
           "--data", f"gsm8k={test}", "--backend", "hf", "--chat-template", "off", "--out", str(tmp_path / "o")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(HF_HUB_CACHE=str(tmp_path / "c")), timeout=300)
    assert r.returncode == 2 and "--fewshot-data gsm8k=PATH" in r.stderr
    assert not list((tmp_path / "o").glob("runs/*/samples/*.jsonl"))  # not even the first benchmark ran


def test_the_evaluated_file_is_never_its_own_fewshot_pool(tmp_path: Path) -> None:
    from sfteval.benchmarks import load_rows, load_spec, with_overrides

    train = _jsonl(tmp_path / "train.jsonl", _gsm8k(9))
    spec = with_overrides(load_spec("gsm8k"), str(train), None)
    spec = spec.__class__(**{**spec.__dict__, "data": spec.data.__class__(**{**spec.data.__dict__, "split": "train"})})
    assert load_rows(spec).info["files"][0]["path"] == str(train.resolve())
    with pytest.raises(SftevalError, match="split 'train' comes from hub dataset 'openai/gsm8k'"):
        load_rows(spec, fewshot=True)  # not train.jsonl itself: the hub, which is offline here


def test_empty_file_is_refused_by_its_own_name(tmp_path: Path) -> None:
    from sfteval.benchmarks import load_rows, load_spec, with_overrides

    empty = tmp_path / "test.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(SftevalError, match=r"test\.jsonl: empty data file"):
        load_rows(with_overrides(load_spec("gsm8k"), str(empty), None))


def test_duplicate_id_is_named_with_its_line(tmp_path: Path) -> None:
    from sfteval.benchmarks import load_rows, load_spec, with_overrides

    rows = [{"id": "a", **_gsm8k(1)[0]}, {"id": "b", **_gsm8k(1)[0]}, {"id": "a", **_gsm8k(1)[0]}]
    path = _jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(SftevalError) as e:
        load_rows(with_overrides(load_spec("gsm8k"), str(path), None))
    assert str(e.value).startswith(f"{path}:3 (field 'id'): duplicate id 'a' (first at line 1)")


def test_folder_layouts_and_ambiguity(tmp_path: Path) -> None:
    from sfteval.datasource import split_files

    d = tmp_path / "d"
    _jsonl(d / "data" / "test-00000-of-00002.jsonl", _gsm8k(1))
    _jsonl(d / "data" / "test-00001-of-00002.jsonl", _gsm8k(1, start=1))
    _jsonl(d / "data" / "test-hard.jsonl", _gsm8k(1))  # another split, not a shard of `test`
    assert [p.name for p in split_files(d, "test")] == ["test-00000-of-00002.jsonl", "test-00001-of-00002.jsonl"]
    assert split_files(d, "dev") == []
    _jsonl(d / "data" / "test.jsonl", _gsm8k(1))
    with pytest.raises(SftevalError, match="more than one file for split 'test'"):
        split_files(d, "test")


def test_json_lines_in_a_json_file(tmp_path: Path) -> None:
    from sfteval.formats import read_rows

    p = tmp_path / "test.json"
    p.write_text('{"a": 1}\n{"a": 2}\n')
    assert read_rows(p) == [(1, {"a": 1}), (2, {"a": 2})]
    p.write_text('[{"a": 1}, {"a": 2}]')
    assert read_rows(p) == [(1, {"a": 1}), (2, {"a": 2})]


def test_sft_loader_reads_a_hub_dataset_from_the_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's loader (formats.read_rows) on a hub id offline: the cache, or one error (no retry loop)."""
    import huggingface_hub.constants as hc

    from sfteval.formats import read_rows

    cache = tmp_path / "cache"
    rows = [{"instruction": f"i{i}", "output": f"o{i}"} for i in range(3)]
    add_snapshot(cache, "someone/sft-data", {"data/train-00000-of-00001.parquet": _parquet(tmp_path / "t.parquet", rows)},
                 commit=commit_sha("sft"), repo_type="dataset")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    assert [r for _, r in read_rows("someone/sft-data", split="train")] == rows
    with pytest.raises(SftevalError, match="dataset 'someone/other' is not in the hub cache"):
        read_rows("someone/other", split="train")
