"""The output folder belongs to one run: refuse reuse, move aside on request, rotate only our own.

- A fresh run needs an empty or new `--output`. A folder holding anything is refused
  (naming what is there) unless `--resume` (continue the run recorded there) or
  `--overwrite` (the folder is renamed to `OUTPUT.old-<UTC time>` beside it and a new
  one made: nothing is deleted).
- `OUT/run.json` (schema `sfteval.trainrun/1`) is written first, atomically: the run id,
  the base model (absolute path or hub id + revision), the chat template's sha256, and
  the checkpoints this run wrote, in order. Every `train_log.jsonl` line and every
  checkpoint's `sfteval.json` carry the run id, so a reader can never pair checkpoints of
  one run with the log of another.
- `--resume` refuses a folder with no run.json (not ours), a different base model or
  revision, or a different chat template.
- Rotation deletes only checkpoints whose `sfteval.json` has this run id, oldest first,
  and never the one just written.

Several processes: the main process decides and writes; the others read run.json after a
barrier (a shared filesystem is assumed, as for checkpoints). `setup_output` is that
sequence for the trainer; `write_merged` writes `OUT/merged/` (a LoRA run asked to merge).
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import atomic_write_json, read_json
from sfteval.train.config import TrainConfig

RUN_FILE = "run.json"
SCHEMA = "sfteval.trainrun/1"


@dataclass(frozen=True)
class RunIdentity:
    run_id: str
    base_model: str
    base_revision: str | None
    template_sha256: str


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def read_run(out: Path) -> dict[str, Any] | None:
    p = out / RUN_FILE
    return read_json(p) if p.is_file() else None


def _listing(out: Path, limit: int = 5) -> str:
    names = sorted(p.name for p in out.iterdir())
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def move_aside(out: Path) -> Path:
    """Rename OUT to a free `OUT.old-<time>` sibling; returns the new place."""
    stamp = _now()
    for k in range(1000):
        dest = out.with_name(f"{out.name}.old-{stamp}" + (f"-{k}" if k else ""))
        if not dest.exists():
            out.rename(dest)
            return dest
    raise SftevalError("no free name to move the old output aside", path=str(out))


def check_output(out: Path, *, resume: bool, overwrite: bool) -> str:
    """What to do with OUT: 'fresh', 'resume' or 'overwrite' (refuses with a clear error)."""
    busy = out.is_dir() and any(out.iterdir())
    if out.exists() and not out.is_dir():
        raise SftevalError("--output is a file, not a folder", path=str(out))
    if not busy:
        return "fresh"
    if overwrite:
        return "overwrite"
    if not resume:
        raise SftevalError(
            f"the output folder is not empty ({_listing(out)})",
            path=str(out),
            field="output",
            hint="--resume continues the run in it, --overwrite moves it aside (nothing is deleted), or choose a new --output",
        )
    if read_run(out) is None:
        raise SftevalError(
            f"no {RUN_FILE} here: this folder was not written by this trainer (or by an older version)",
            path=str(out),
            field="resume",
            hint="resume needs a folder this trainer wrote; --overwrite moves it aside instead",
        )
    return "resume"


def start_run(out: Path, identity: RunIdentity, action: str) -> dict[str, Any]:
    """Main process: set up OUT for `action` and return its run record."""
    if action == "overwrite":
        moved = move_aside(out)
        print(f"moved the earlier contents of {out} to {moved}", flush=True)
    if action == "resume":
        run = read_run(out) or {}
        check_same_run(run, identity, out)
        return run
    out.mkdir(parents=True, exist_ok=True)
    run = {
        "schema": SCHEMA,
        "run_id": identity.run_id,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "base_model": identity.base_model,
        "base_revision": identity.base_revision,
        "chat_template_sha256": identity.template_sha256,
        "checkpoints": [],
    }
    atomic_write_json(out / RUN_FILE, run)
    return run


def check_same_run(run: dict[str, Any], identity: RunIdentity, out: Path) -> None:
    changed = []
    if run.get("base_model") != identity.base_model:
        changed.append(f"base model ({run.get('base_model')} -> {identity.base_model})")
    if run.get("base_revision") != identity.base_revision:
        changed.append(f"base revision ({run.get('base_revision')} -> {identity.base_revision})")
    if run.get("chat_template_sha256") != identity.template_sha256:
        changed.append("chat template")
    if changed:
        raise SftevalError(
            f"cannot resume with a different {', '.join(changed)}",
            path=str(out / RUN_FILE),
            hint="resume with the run's model and template, or start a new --output",
        )


def new_run_id() -> str:
    return f"{_now()}-{uuid.uuid4().hex[:8]}"


def record_checkpoint(out: Path, name: str) -> None:
    """Append a checkpoint this run wrote to run.json (main process, after the rename)."""
    run = read_run(out) or {}
    written = [c for c in run.get("checkpoints", []) if c != name] + [name]
    atomic_write_json(out / RUN_FILE, {**run, "checkpoints": written})


def rotate(out: Path, keep_last: int, run_id: str, newest: str) -> list[Path]:
    """Delete this run's oldest checkpoints beyond `keep_last`; never `newest` or another run's.

    "This run's" means its `sfteval.json` carries this run id. A checkpoint is renamed to
    `.trash-*` before it is deleted, so a kill mid-delete never leaves a folder that
    looks like a whole checkpoint (the next start removes the trash)."""
    from sfteval.train.checkpoint import checkpoints

    ours = []
    for _, p in checkpoints(out):
        try:
            if read_json(p / "sfteval.json").get("run_id") == run_id:
                ours.append(p)
        except (OSError, ValueError):
            continue  # unreadable: not provably ours, so never deleted
    rest = [p for p in ours if p.name != newest]  # the newest always stays, and counts as one kept
    gone = rest[: max(0, len(rest) - (keep_last - 1))]
    for p in gone:
        trash = p.with_name(f".trash-{p.name}")
        p.rename(trash)
        shutil.rmtree(trash)
    if gone:
        run = read_run(out) or {}
        left = [c for c in run.get("checkpoints", []) if c not in {p.name for p in gone}]
        atomic_write_json(out / RUN_FILE, {**run, "checkpoints": left})
    return gone


def setup_output(cfg: TrainConfig, out: Path, state: Any, identity_of: Any) -> tuple[str, dict[str, Any]]:
    """(action, run record): refuse a reused folder, move aside, or resume; main writes run.json."""
    action = check_output(out, resume=cfg.resume, overwrite=cfg.overwrite)
    state.wait_for_everyone()  # every process has looked before the main one changes anything
    if state.is_main_process:
        start_run(out, identity_of(new_run_id()), action)
    state.wait_for_everyone()
    run = read_run(out) or {}
    if action == "resume":
        check_same_run(run, identity_of(run.get("run_id", "")), out)
    return action, run


def write_merged(accelerator: Any, p: Any, tokenizer: Any, out: Path, ckpt: Path) -> str:
    """OUT/merged/: the adapter folded into the base (in the base's dtype), a plain model folder (atomic)."""
    import json

    from sfteval.train.model import save_merged

    if accelerator.is_main_process:
        tmp, final = out / ".tmp-merged", out / "merged"
        shutil.rmtree(tmp, ignore_errors=True)
        save_merged(p.base, json.loads((ckpt / "sfteval.json").read_text(encoding="utf-8")).get("base_revision"), p.saved_dtype, ckpt, tmp)
        tokenizer.save_pretrained(tmp)
        shutil.copy(ckpt / "generation_config.json", tmp / "generation_config.json")
        meta = json.loads((ckpt / "sfteval.json").read_text(encoding="utf-8"))
        atomic_write_json(tmp / "sfteval.json", {**meta, "adapter": False, "merged_from": str(ckpt.resolve())})
        if final.exists():  # this run's earlier merge (a resumed run re-merging)
            trash = out / ".trash-merged"
            shutil.rmtree(trash, ignore_errors=True)
            final.rename(trash)
            shutil.rmtree(trash)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return str(out / "merged")
