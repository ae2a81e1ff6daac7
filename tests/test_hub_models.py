"""Models by hub id, offline, from a hub cache laid out on disk as huggingface_hub writes it.

`sfteval run ORG/NAME` and `ORG/NAME@<sha>` resolve through huggingface_hub itself
(HF_HUB_OFFLINE=1, HF_HUB_CACHE pointing at the cache), record repo id + commit, and a
branch that moves gives a new run id; a revision not in the cache is one clear error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubcache import add_model, add_snapshot, commit_sha
from sfteval.errors import SftevalError
from sfteval.fileio import read_json

REPO = "tiny-org/tiny-llama"


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf-home")}


def _sfteval(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sfteval.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def cache(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub") / "cache"
    add_model(root, REPO, tiny_model, commit=commit_sha("v1"))
    return root


@pytest.fixture()
def hub_cache_env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's huggingface_hub pointed at the test cache (it reads the constant per call)."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    return cache


def test_localize_and_fingerprint_follow_the_branch(hub_cache_env: Path, tmp_path: Path) -> None:
    """In process (no model run): the id becomes its snapshot, the commit is in the digest."""
    from sfteval.config import RunConfig
    from sfteval.hub import localize
    from sfteval.provenance import fingerprint

    repo = "tiny-org/moving"
    snap = next((hub_cache_env / f"models--{REPO.replace('/', '--')}" / "snapshots").iterdir())
    files = {p.name: p.resolve() for p in snap.iterdir()}
    add_snapshot(hub_cache_env, repo, files, commit=commit_sha("m1"))
    cfg = localize(RunConfig(checkpoint=repo))
    assert Path(cfg.checkpoint).name == commit_sha("m1") and cfg.model_ref == repo and cfg.label == "moving"
    first = fingerprint(cfg.checkpoint)
    assert first["hub"]["commit"] == commit_sha("m1")
    add_snapshot(hub_cache_env, repo, files, commit=commit_sha("m2"))  # main moves; the files are the same
    second = fingerprint(localize(RunConfig(checkpoint=repo)).checkpoint)
    assert second["files"] == first["files"] and second["digest"] != first["digest"]
    pinned = localize(RunConfig(checkpoint=repo, revision=commit_sha("m1")))
    assert fingerprint(pinned.checkpoint)["digest"] == first["digest"]
    assert localize(RunConfig(checkpoint=str(tmp_path))).checkpoint == str(tmp_path)  # a local folder as is


@pytest.mark.slow  # three hf runs in fresh processes: about a minute of CPU
def test_hub_id_runs_offline_and_records_repo_and_commit(cache: Path, tmp_path: Path) -> None:
    env = _env(cache)
    r = _sfteval("run", REPO, "--suite", "offline", "--limit", "2", "--backend", "hf", "--out", str(tmp_path), env=env,
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (run_dir,) = (tmp_path / "runs").glob("tiny-llama-*")
    doc = read_json(run_dir / "results.json")
    fp = doc["model"]["fingerprint"]
    assert fp["hub"] == {"repo_id": REPO, "repo_type": "model", "commit": commit_sha("v1")}
    assert doc["config"]["model_ref"] == REPO and doc["config"]["revision"] == "main"
    assert set(doc["benchmarks"]) == {"offline_gsm8k", "offline_mmlu", "offline_heldout"}

    # The same commit named by its sha: the same model, so the same run (resumed, not redone).
    r = _sfteval("run", f"{REPO}@{commit_sha('v1')}", "--suite", "offline", "--limit", "2", "--backend", "hf",
                 "--out", str(tmp_path), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "runs").glob("tiny-llama-*")] == [run_dir.name]

    # main moves to a new commit (same files): a new run id, the new commit recorded.
    snap = next((cache / f"models--{REPO.replace('/', '--')}" / "snapshots").iterdir())
    add_snapshot(cache, REPO, {p.name: p.resolve() for p in snap.iterdir()}, commit=commit_sha("v2"))
    r = _sfteval("run", REPO, "-b", "offline_gsm8k", "--limit", "1", "--backend", "hf",
                 "--out", str(tmp_path), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    runs = sorted((tmp_path / "runs").glob("tiny-llama-*"))
    assert len(runs) == 2
    new = next(p for p in runs if p != run_dir)
    assert read_json(new / "results.json")["model"]["fingerprint"]["hub"]["commit"] == commit_sha("v2")


def test_missing_revision_is_one_clear_error(cache: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = _sfteval("run", f"{REPO}@{commit_sha('nope')}", "--suite", "offline", "--out", str(tmp_path),
                 env=_env(cache), cwd=tmp_path)
    assert r.returncode == 2
    assert f"revision '{commit_sha('nope')}' of model '{REPO}' is not in the hub cache" in r.stderr
    assert "HF_HUB_OFFLINE is set" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 30  # one look at the cache, no retries (a loaded machine still starts Python)
    r = _sfteval("run", "nobody/nothing", "--suite", "offline", "--out", str(tmp_path), env=_env(cache), cwd=tmp_path)
    assert r.returncode == 2 and "model 'nobody/nothing' is not in the hub cache" in r.stderr
    assert "no local folder 'nobody/nothing' either" in r.stderr


def test_parse_ref_prefers_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfteval.hub import HubRef, parse_ref

    assert parse_ref("Qwen/Qwen2.5-0.5B-Instruct") == HubRef("Qwen/Qwen2.5-0.5B-Instruct", None)
    assert parse_ref("Qwen/Qwen2.5-0.5B-Instruct@v1.0") == HubRef("Qwen/Qwen2.5-0.5B-Instruct", "v1.0")
    assert parse_ref("org/name", revision="dev") == HubRef("org/name", "dev")
    with pytest.raises(SftevalError, match="two revisions"):
        parse_ref("org/name@a", revision="b")
    assert parse_ref("./ckpt") is None and parse_ref("/abs/path") is None and parse_ref("a/b/c") is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert parse_ref("org/name") is None  # a local folder of that spelling wins


def test_adapter_on_a_hub_base_resolves_through_the_cache(cache: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter policy (every backend) and the fingerprint both find a hub-id base."""
    import huggingface_hub.constants as hc

    from sfteval.backends.adapters import resolve_model
    from sfteval.provenance import fingerprint

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    ad = tmp_path / "adapter"
    ad.mkdir()
    (ad / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": REPO, "r": 8,
                                                        "revision": commit_sha("v1")}))
    (ad / "adapter_model.safetensors").write_bytes(b"not read here")
    base, adapter_dir, _ = resolve_model(str(ad))
    assert Path(base).name == commit_sha("v1") and adapter_dir == str(ad)
    fp = fingerprint(str(ad))
    assert fp["base"]["hub"]["repo_id"] == REPO and fp["base"]["hub"]["commit"] == commit_sha("v1")
    (ad / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": REPO, "r": 8,
                                                        "revision": commit_sha("v2-missing")}))
    with pytest.raises(SftevalError, match="is not in the hub cache"):
        resolve_model(str(ad))
