"""Weights & Biases: one W&B run per sfteval record (project WANDB_PROJECT, default "sfteval").

WANDB_MODE=offline writes the run under WANDB_DIR (./wandb) for a later `wandb sync`, with
no network. Stepped metrics (sweeps) go to wandb.log at their step; the rest to the
summary; texts are attached as files of the run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sfteval.trackers import Record


class WandbTracker:
    name = "wandb"

    def send(self, record: Record) -> str | None:
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "sfteval", name=record.name,
                         job_type=record.kind, config=dict(record.params), tags=[record.kind], reinit="create_new")
        try:
            for k, v in record.tags.items():
                run.summary[f"tag/{k}"] = v
            for step, metrics in record.metrics:
                if step is None:
                    run.summary.update(dict(metrics))
                elif metrics:
                    run.log(dict(metrics), step=step)
            if record.texts:
                folder = Path(tempfile.mkdtemp(prefix="sfteval-wandb-"))
                for name, text in record.texts.items():
                    (folder / name).write_text(text)
                    run.save(str(folder / name), base_path=str(folder), policy="now")
            return str(run.dir) if os.environ.get("WANDB_MODE") == "offline" else run.url
        finally:
            run.finish()
