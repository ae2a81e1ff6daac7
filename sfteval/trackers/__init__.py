"""Results in the experiment trackers people use: `--log-to mlflow|wandb|tensorboard`.

`sfteval run`, `compare` and `gate` (and the trainer, through Accelerate's trackers) send
what they wrote to the named trackers after the files are on disk; the run folder stays
the record, the tracker a view with a link back to it. Each tracker is an optional extra
and imported only when named. What each receives:

- a run: every metric as `<bench>/<metric>` with `/stderr`, `/ci_lo`, `/ci_hi`; the
  settings as params; `sfteval.run_dir` and `sfteval.run_id` tags (the link back);
- a sweep: every checkpoint's metrics at `step`, plus the training log's losses at their
  steps, so curves draw by step;
- a comparison: per benchmark and metric the base and tuned values, the paired delta with
  its CI and the Holm p-value, the forgetting verdict as a tag, and the comparison table
  as a text artifact;
- a gate: the verdict, the exit code and every check (rule, target, bounds, outcome).

Configuration is each tool's own: MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME;
WANDB_PROJECT / WANDB_MODE (offline works without a network); TensorBoard writes under
SFTEVAL_TENSORBOARD_DIR (default reports/tensorboard).
Not covered: uploading samples files as artifacts (they can be large; the tag points at them).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfteval.errors import SftevalError

TRACKERS: dict[str, str] = {
    "mlflow": "sfteval.trackers.mlflow_tracker:MlflowTracker",
    "wandb": "sfteval.trackers.wandb_tracker:WandbTracker",
    "tensorboard": "sfteval.trackers.tensorboard_tracker:TensorboardTracker",
}
EXTRA = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboard"}


@dataclass(frozen=True)
class Record:
    """What one command sends: a name, tags, params, metrics by step, text artifacts."""

    name: str
    kind: str  # run | sweep | comparison | gate
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Sequence[tuple[int | None, Mapping[str, float]]] = ()  # (step, {key: value})
    texts: Mapping[str, str] = field(default_factory=dict)  # artifact file name -> content


class Tracker(Protocol):
    name: str

    def send(self, record: Record) -> str | None:
        """Log one record; returns where it went (a URL or path) when the tool says."""
        ...


def parse_log_to(values: Iterable[str]) -> list[str]:
    """`--log-to mlflow --log-to wandb` or `--log-to mlflow,wandb` -> known names, in order."""
    names: list[str] = []
    for v in values:
        for n in (s.strip().lower() for s in v.split(",")):
            if not n:
                continue
            if n not in TRACKERS:
                raise SftevalError(f"unknown tracker {n!r}", field="--log-to", hint=" | ".join(TRACKERS))
            if n not in names:
                names.append(n)
    return names


def get_tracker(name: str) -> Tracker:
    module, _, cls = TRACKERS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as e:
        raise SftevalError(f"--log-to {name} needs the {EXTRA[name]} package ({e.name} is missing)",
                           field="--log-to", hint=f"pip install 'sfteval[{name}]'") from e


def send_all(names: Sequence[str], record: Record, echo: Any = None) -> dict[str, str | None]:
    """Send `record` to every named tracker; a tracker that fails is reported, not fatal
    (the files are already written, which is what matters)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = get_tracker(name).send(record)
        except SftevalError:
            raise
        except Exception as e:  # a tracker's own failure (server down...) must not lose the run
            out[name] = None
            if echo is not None:
                echo(f"warning: --log-to {name} failed: {type(e).__name__}: {e}")
            continue
        if echo is not None:
            echo(f"logged {record.kind} to {name}" + (f": {out[name]}" if out[name] else ""))
    return out


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """Trackers take finite floats only: NaN / None / non-numbers are dropped."""
    out = {}
    for k, v in values.items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            out[k] = float(v)
    return out
