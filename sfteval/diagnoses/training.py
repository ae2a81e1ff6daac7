"""The SFT data a tuned model saw, indexed for overlap checks (memorisation, contamination).

Covered: finding the training files (`--train-data`, else the checkpoint's trainer
metadata, refusing files whose sha256 changed) and indexing assistant turns and whole
conversations by long n-grams (`sfteval.overlap`). Not covered: paraphrase matching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sfteval.fileio import sha256_file
from sfteval.overlap import OverlapIndex
from sfteval.runfolder import RunResults


@dataclass(frozen=True)
class Training:
    sources: tuple[str, ...]
    ids: tuple[str, ...]
    responses: OverlapIndex  # assistant turns only
    texts: OverlapIndex  # every turn


def training_sources(explicit: Sequence[str], tuned_results: RunResults) -> list[Path]:
    """--train-data paths, else the training files the tuned checkpoint's sfteval.json names.

    The trainer records `data_files: [{"path", "sha256"}]` (eval files are kept apart and
    not used); a file whose content no longer matches its recorded sha256 is not the data
    the model saw, so it is left out. A plain `data` path or list is accepted too.
    """
    if explicit:
        return [Path(p) for p in explicit]
    trainer = tuned_results.model.trainer
    entries = trainer.get("data_files") or trainer.get("data") or []
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    out: list[Path] = []
    for e in entries:
        path, sha = (e, None) if isinstance(e, str) else (e.get("path"), e.get("sha256"))
        if isinstance(path, str) and Path(path).is_file() and (sha is None or sha256_file(path) == sha):
            out.append(Path(path))
    return out


def load_training(paths: Sequence[Path]) -> Training | None:
    if not paths:
        return None
    from sfteval.formats import load_conversations

    ids: list[str] = []
    responses: list[str] = []
    texts: list[str] = []
    for p in paths:
        convs, _ = load_conversations(p)
        for c in convs:
            ids.append(c.id)
            responses.append("\n".join(m.content for m in c.messages if m.role == "assistant"))
            texts.append("\n".join(m.content for m in c.messages))
    return Training(tuple(str(p) for p in paths), tuple(ids), OverlapIndex(responses), OverlapIndex(texts))
