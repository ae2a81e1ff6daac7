"""Lineage check for `compare`: is the given base the tuned model's recorded base?

The tuned run records where its checkpoint came from in two places: a LoRA adapter's
fingerprint holds its base's fingerprint (`model.fingerprint.base.digest`), and a checkpoint
written by `sfteval.train` carries the trainer's metadata (`model.trainer.base_model`, the
path or hub id the trainer was given). A comparison against some other model is still
computed (it can be what the user wants), but it is not "what fine-tuning changed", so
compare warns.

Covered: adapter base digests; trainer `base_model` as a hub id (against the base run's hub
repo id or model_ref) or a local folder (by resolved path, else by fingerprint digest).
Not covered: checkpoints with no recorded base (nothing to check: silent), and a base that
was moved and re-saved with different files (digests differ: a warning, which is right).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sfteval.runfolder import RunResults


def _names_of(model: Any, config: dict[str, Any]) -> set[str]:
    """Every way the base run's model could have been named to the trainer."""
    names: set[str] = set()
    for v in (model.path, config.get("checkpoint"), config.get("model_ref")):
        if v:
            names.add(str(v))
            p = Path(str(v))
            if p.exists():
                names.add(str(p.resolve()))
    hub = model.fingerprint.get("hub") or {}
    if hub.get("repo_id"):
        names.add(str(hub["repo_id"]))
    return names


def lineage_warning(base_run: str | Path, tuned_run: str | Path) -> str | None:
    """A one-line warning when the tuned run's recorded base is not the base given; None when
    they match or nothing was recorded."""
    from sfteval.runfolder import read_results

    return lineage_of(read_results(base_run), read_results(tuned_run))


def lineage_of(base: RunResults, tuned: RunResults) -> str | None:
    """`lineage_warning` on results already read (what `sfteval compare` records)."""
    if base.model.kind != "checkpoint" or tuned.model.kind != "checkpoint":
        return None  # replayed outputs record no weights to check
    adapter_base = tuned.model.fingerprint.get("base") or {}
    if adapter_base.get("digest"):
        if base.model.digest and adapter_base["digest"] != base.model.digest:
            return (f"lineage: the tuned adapter's base is {adapter_base.get('name_or_path')} (digest "
                    f"{adapter_base['digest'][:12]}), not the base given ({base.model.path}, digest "
                    f"{str(base.model.digest)[:12]}); the deltas are not what fine-tuning changed")
        return None
    recorded = (tuned.model.trainer or {}).get("base_model")
    if not recorded:
        return None
    recorded = str(recorded)
    names = _names_of(base.model, dict(base.config))
    if recorded in names or (Path(recorded).exists() and str(Path(recorded).resolve()) in names):
        return None
    if Path(recorded).is_dir() and base.model.digest:
        from sfteval.provenance import fingerprint

        try:
            if fingerprint(recorded).get("digest") == base.model.digest:
                return None  # the same weights under another path
        except Exception:  # noqa: BLE001 - an unreadable recorded base: fall through to the warning
            pass
    return (f"lineage: the tuned checkpoint was trained from {recorded} (its sfteval.json), not from the base "
            f"given ({base.model.path or base.label}); the deltas are not what fine-tuning changed")
