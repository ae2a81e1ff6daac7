"""Models and datasets by hub id, resolved through huggingface_hub's own snapshot machinery.

`ORG/NAME`, `ORG/NAME@REVISION` (a branch, tag or commit) or `--revision REV` become a
local snapshot folder via `huggingface_hub.snapshot_download`, so everything that library
honours applies unchanged: its cache (`HF_HOME`, `HF_HUB_CACHE`), `HF_HUB_OFFLINE`,
`HF_ENDPOINT`, and tokens from `HF_TOKEN` or `hf auth login`. A model already in the
cache works offline. The snapshot folder is named by the resolved commit sha, which is
what the fingerprint records (`sfteval.provenance`), so a moving branch gives a new run
id when it moves.

Before any look-up the hub is probed once per process with a short timeout: when it
cannot be reached (or `HF_HUB_OFFLINE` is set) only the local cache is consulted, and a
miss is one clear error within seconds rather than a retry loop.

A local path always wins over a hub id of the same spelling.
Not covered: non-hub model sources (S3, ModelScope), and downloading only some weight
shards (a model snapshot skips only formats sfteval never loads, listed in IGNORE).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.config import RunConfig
from sfteval.errors import SftevalError

# owner/name, each part as the hub allows it (letters, digits, '-', '_', '.'), then an
# optional @revision. A local folder of that spelling is taken first (see resolve_model).
_REPO = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<rev>[^\s@]+))?$")
_SNAPSHOT = re.compile(r"^(?P<type>models|datasets)--(?P<name>.+)$")
PROBE_TIMEOUT_S = 3.0
# Weight formats sfteval never loads: skipping them keeps a first download to what is used.
IGNORE = ["original/*", "*.pth", "*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.gguf", "*.ot", "*.tflite", "*.mlmodel"]

_probe: tuple[bool, str] | None = None


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str | None  # None: the default branch


@dataclass(frozen=True)
class Snapshot:
    path: Path
    repo_id: str
    repo_type: str  # "model" | "dataset"
    revision: str  # as requested ("main" when none was)
    commit: str  # the resolved commit sha (the snapshot folder's name)

    def record(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "repo_type": self.repo_type, "revision": self.revision, "commit": self.commit}


def parse_ref(text: str, revision: str | None = None) -> HubRef | None:
    """The hub reference spelled by `text`, or None when it is not one (or names a local path)."""
    if Path(text).exists():
        return None
    m = _REPO.match(text)
    if not m:
        return None
    rev = m.group("rev")
    if rev and revision and rev != revision:
        raise SftevalError(f"two revisions given: '@{rev}' and --revision {revision}", field="revision")
    return HubRef(m.group("repo"), rev or revision)


def offline_env() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable() -> tuple[bool, str]:
    """(can we talk to the hub, why not). Probed once per process, at most PROBE_TIMEOUT_S."""
    global _probe
    if offline_env():
        return False, "HF_HUB_OFFLINE is set"
    if _probe is None:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session

        try:  # huggingface_hub's own session: its proxies, certificates and endpoint
            get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S)
            _probe = (True, "")
        except Exception as e:  # noqa: BLE001 - any transport error means: not reachable
            _probe = (False, f"{constants.ENDPOINT} cannot be reached ({type(e).__name__})")
    return _probe


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def snapshot(
    ref: HubRef,
    *,
    repo_type: str = "model",
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
    what: str = "model",
    hint: str = "",
) -> Snapshot:
    """The local snapshot folder of `ref` (downloaded when reachable and missing)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    online, why = hub_reachable()
    rev = ref.revision or "main"
    shown = f"{ref.repo_id}@{rev}"
    try:
        path = snapshot_download(
            ref.repo_id, repo_type=repo_type, revision=rev, allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns, local_files_only=not online,
        )
    except GatedRepoError as e:
        raise SftevalError(f"{what} '{shown}' is gated: accept its terms on the hub, then log in", field=what,
                           hint="hf auth login, or set HF_TOKEN") from e
    except RevisionNotFoundError as e:
        raise SftevalError(f"{what} '{ref.repo_id}' has no revision '{rev}'", field="revision",
                           hint="give a branch, tag or commit sha that exists on the hub") from e
    except RepositoryNotFoundError as e:
        raise SftevalError(f"{what} '{ref.repo_id}' not found on the hub (or private: log in first)", field=what,
                           hint=hint or "check the id; for a private repo: hf auth login, or set HF_TOKEN") from e
    except LocalEntryNotFoundError as e:
        if ref.revision is None:
            missing = f"{what} '{ref.repo_id}' is not in the hub cache ({cache_dir()})"
        else:
            missing = f"revision '{rev}' of {what} '{ref.repo_id}' is not in the hub cache ({cache_dir()})"
        raise SftevalError(f"{missing}, and {why or 'the hub cannot be reached'}", field=what,
                           hint=hint or "download it once where the hub is reachable (same HF_HOME), or give a local folder") from e
    except (OSError, ValueError) as e:  # an unreachable hub mid-download, a bad repo id...
        raise SftevalError(f"cannot fetch {what} '{shown}': {type(e).__name__}: {e}", field=what, hint=hint or None) from e
    p = Path(path)
    return Snapshot(p, ref.repo_id, repo_type, rev, p.name)


def resolve_model(text: str, revision: str | None = None) -> Snapshot | None:
    """A hub id's snapshot folder, or None when `text` is a local path (or not a hub id)."""
    ref = parse_ref(text, revision)
    if ref is None:
        if revision:
            raise SftevalError("--revision applies to hub ids only; this is a local path", path=text, field="revision")
        return None
    hint = f"no local folder '{text}' either; download it once where the hub is reachable (same HF_HOME), or give a local folder"
    return snapshot(ref, ignore_patterns=IGNORE, what="model", hint=hint)


def snapshot_of(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """repo id and commit when `path` is a snapshot folder in a hub cache, else None.

    The layout is huggingface_hub's: `<cache>/models--ORG--NAME/snapshots/<commit>/`.
    """
    p = Path(path).absolute()
    if p.parent.name != "snapshots":
        return None
    m = _SNAPSHOT.match(p.parent.parent.name)
    if not m:
        return None
    repo_type = "model" if m.group("type") == "models" else "dataset"
    return {"repo_id": m.group("name").replace("--", "/"), "repo_type": repo_type, "commit": p.name}


def local_base(adapter_dir: str | os.PathLike[str], base: str, revision: str | None = None) -> str:
    """An adapter's `base_model_name_or_path` as a local folder: a path (absolute, or
    relative to the adapter folder or the working directory) or a hub id via the cache."""
    here = Path(adapter_dir)
    for cand in (Path(base),) if Path(base).is_absolute() else (here / base, Path(base)):
        if cand.is_dir():
            return str(cand)
    snap = resolve_model(base, revision) if parse_ref(base) else None
    if snap is None:
        raise SftevalError(
            f"the adapter's base model '{base}' is neither a local folder nor a hub id",
            path=str(here / "adapter_config.json"), field="base_model_name_or_path",
            hint="point it at the base checkpoint folder or at ORG/NAME",
        )
    return str(snap.path)


def localize(cfg: RunConfig) -> RunConfig:
    """The run's settings with a hub id replaced by its snapshot folder (the id as given is
    kept in `model_ref`, the requested revision in `revision`; the label defaults to NAME)."""
    if cfg.replay or not cfg.checkpoint:
        return cfg
    snap = resolve_model(cfg.checkpoint, cfg.revision)
    if snap is None:
        return cfg
    return dataclasses.replace(
        cfg, checkpoint=str(snap.path), model_ref=cfg.checkpoint, revision=snap.revision,
        label=cfg.label or snap.repo_id.split("/")[1],
    )
