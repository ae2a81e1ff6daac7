"""Tokenization in several processes, cached on disk and shared by resume and all ranks.

The cache key is the sha256 of (this module's SCHEMA, every data file's sha256, the
tokenizer's fingerprint (its serialized vocabulary and special tokens), the chat template,
the end-token ids and the encoding settings: format, on_bad, cutoff_len,
last_turn_only). Any change gives a new key; nothing is ever reused across settings.
An entry is one `.npz` (flat int32 ids, bool mask, sample offsets) plus a JSON header
(rows, drops, truncated count, sources), written under a temporary name and renamed, so
a reader sees a whole entry or none. With several processes, the main one encodes and
writes first (`accelerator.main_process_first()` in the trainer); the others then read.

Workers are forked processes, each encoding a contiguous chunk of conversations; the
result is the same as one process (a test checks it). Not covered: entries are never
evicted (delete the folder to reclaim space); a hub dataset id has no file to hash and is
not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sfteval.fileio import atomic_write_json, read_json, sha256_file

if TYPE_CHECKING:
    from sfteval.train.data import EncodedData

SCHEMA = "sfteval.tokens/2"
_PARALLEL_MIN = 2000  # conversations below which one process is faster than forking


def default_cache_dir() -> Path:
    root = os.environ.get("SFTEVAL_CACHE") or str(Path.home() / ".cache" / "sfteval")
    return Path(root) / "tokenized"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps({k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}).encode())
    return h.hexdigest()


def cache_key(files: Sequence[str], tokenizer: Any, settings: dict[str, Any]) -> str | None:
    """None when some source is not a local file (a hub id): such data is not cached."""
    shas = []
    for f in files:
        if not Path(f).is_file():
            return None
        shas.append(sha256_file(f))
    blob = {
        "schema": SCHEMA,
        "data": shas,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "template": hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest(),
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


# --- workers --------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer: Any, kwargs: dict[str, Any]) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER["tok"], _WORKER["kw"] = tokenizer, kwargs


def _encode_chunk(convs: list[Any]) -> tuple[list[Any], dict[str, int], int]:
    from sfteval.train.data import encode_all

    return encode_all(convs, _WORKER["tok"], **_WORKER["kw"])


def _encode_parallel(convs: list[Any], tokenizer: Any, workers: int, kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, int], int]:
    from sfteval.train.data import encode_all

    if workers <= 1 or len(convs) < 2 * workers:
        return encode_all(convs, tokenizer, **kwargs)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # fork: the tokenizer and the loaded conversations are inherited, not pickled per task
    ctx = mp.get_context("fork")
    size = -(-len(convs) // (workers * 4))
    chunks = [convs[k : k + size] for k in range(0, len(convs), size)]
    kept, dropped, truncated = [], {}, 0
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(tokenizer, kwargs)) as pool:
        for k, d, t in pool.map(_encode_chunk, chunks):  # map keeps the order
            kept.extend(k)
            truncated += t
            for reason, n in d.items():
                dropped[reason] = dropped.get(reason, 0) + n
    return kept, dropped, truncated


# --- cache entries --------------------------------------------------------------------


def _save(where: Path, key: str, data: Any) -> None:
    where.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(s) for s in data.samples], dtype=np.int64)
    ids = np.concatenate([s.input_ids for s in data.samples]) if data.samples else np.zeros(0, np.int32)
    mask = np.concatenate([s.mask for s in data.samples]) if data.samples else np.zeros(0, bool)
    tmp = where / f".tmp-{key}-{os.getpid()}.npz"
    with tmp.open("wb") as f:
        np.savez(f, ids=ids, mask=mask, lengths=lengths)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, where / f"{key}.npz")
    header = {"schema": SCHEMA, "rows": data.rows, "dropped": data.dropped, "truncated": data.truncated, "files": list(data.files), "sources": [s.source for s in data.samples]}
    atomic_write_json(where / f"{key}.json", header)  # written last: its presence marks a whole entry


def _load(where: Path, key: str) -> Any | None:
    from sfteval.train.data import Encoded, EncodedData

    head, arrays = where / f"{key}.json", where / f"{key}.npz"
    if not (head.is_file() and arrays.is_file()):
        return None
    try:
        meta = read_json(head)
        with np.load(arrays) as z:
            ids, mask, lengths = z["ids"], z["mask"], z["lengths"]
    except Exception:  # noqa: BLE001 - torn zip, bad JSON, missing array: re-encode and overwrite
        return None
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    samples = tuple(Encoded(ids[a:b], mask[a:b], src) for a, b, src in zip(bounds[:-1], bounds[1:], meta["sources"]))
    return EncodedData(samples, int(meta["rows"]), dict(meta["dropped"]), tuple(meta["files"]), int(meta["truncated"]))


def encode_files(
    files: Sequence[str],
    tokenizer: Any,
    *,
    fmt: str,
    on_bad: str,
    cutoff_len: int,
    end_ids: frozenset[int],
    last_turn_only: bool,
    workers: int = 0,
    cache_dir: str | None = None,
) -> Any:
    """EncodedData for `files`, from the cache when an entry with the same key exists."""
    from sfteval.errors import SftevalError
    from sfteval.formats import load_conversations
    from sfteval.train.data import EncodedData

    settings = {"fmt": fmt, "on_bad": on_bad, "cutoff_len": cutoff_len, "end_ids": sorted(end_ids), "last_turn_only": last_turn_only}
    where = None if cache_dir == "none" else Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(files, tokenizer, settings) if where is not None else None
    if where is not None and key is not None and (hit := _load(where, key)) is not None:
        return hit
    samples: list[Any] = []
    dropped: dict[str, int] = {}
    rows = truncated = 0
    kwargs = {"cutoff_len": cutoff_len, "end_ids": end_ids, "last_turn_only": last_turn_only, "on_bad": on_bad}
    for f in files:
        convs, report = load_conversations(f, fmt=fmt, on_bad=on_bad)  # type: ignore[arg-type]
        rows += report.kept + report.skipped
        for reason, n in report.skip_reasons.items():
            dropped[f"bad_row: {reason}"] = dropped.get(f"bad_row: {reason}", 0) + n
        n_workers = workers or (min(8, os.cpu_count() or 1) if len(convs) >= _PARALLEL_MIN else 1)
        kept, why, cut = _encode_parallel(convs, tokenizer, n_workers, kwargs)
        samples.extend(kept)
        truncated += cut
        for reason, n in why.items():
            dropped[reason] = dropped.get(reason, 0) + n
    if not samples:
        raise SftevalError(f"no trainable samples left (dropped: {dropped})", path=", ".join(files), hint="raise cutoff_len?")
    data = EncodedData(tuple(samples), rows, dropped, tuple(files), truncated)
    if where is not None and key is not None:
        _save(where, key, data)
    return data


def load_encoded(
    files: Sequence[str],
    tokenizer: Any,
    *,
    fmt: str = "auto",
    on_bad: str = "error",
    cutoff_len: int,
    end_ids: frozenset[int],
    last_turn_only: bool = False,
    workers: int = 1,
    cache_dir: str | None = "none",
) -> EncodedData:
    """Load every file with the shared sfteval loader, then encode (cached, in `workers` processes).
    (Here, beside the cache, so that data.py never imports this module.)"""
    return encode_files(
        files,
        tokenizer,
        fmt=fmt,
        on_bad=on_bad,
        cutoff_len=cutoff_len,
        end_ids=end_ids,
        last_turn_only=last_turn_only,
        workers=workers,
        cache_dir=cache_dir,
    )
