"""A huggingface_hub cache built on disk in its real layout, for offline tests.

    <cache>/models--ORG--NAME/blobs/<sha256 of the file>
    <cache>/models--ORG--NAME/snapshots/<commit>/<file> -> ../../blobs/<sha256>
    <cache>/models--ORG--NAME/refs/<branch>               (holds <commit>)

(`datasets--ORG--NAME` for datasets.) This is what `snapshot_download` writes and what it
reads back with HF_HUB_OFFLINE=1; nothing here imitates huggingface_hub's code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def commit_sha(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def add_snapshot(cache: Path, repo_id: str, files: dict[str, Path], *, commit: str,
                 branch: str | None = "main", repo_type: str = "model") -> Path:
    """Put `files` (name in the repo -> local file) into the cache as `commit`; point `branch` at it."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(src, blob)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if branch:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return snap


def add_model(cache: Path, repo_id: str, model_dir: Path, *, commit: str, branch: str | None = "main") -> Path:
    files = {p.name: p for p in model_dir.iterdir() if p.is_file()}
    return add_snapshot(cache, repo_id, files, commit=commit, branch=branch)
