"""TensorBoard: event files under SFTEVAL_TENSORBOARD_DIR (default reports/tensorboard)/<record name>.

Scalars at their step (sweeps: by checkpoint step; the rest at step 0), tags and texts as
TensorBoard text summaries. Uses torch's SummaryWriter (the `tensorboard` package).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sfteval.trackers import Record


class TensorboardTracker:
    name = "tensorboard"

    def send(self, record: Record) -> str | None:
        from torch.utils.tensorboard import SummaryWriter

        root = Path(os.environ.get("SFTEVAL_TENSORBOARD_DIR") or "reports/tensorboard")
        logdir = root / re.sub(r"[^0-9A-Za-z._-]+", "_", record.name)
        writer = SummaryWriter(log_dir=str(logdir))
        try:
            for step, metrics in record.metrics:
                for k, v in metrics.items():
                    writer.add_scalar(k, v, global_step=step or 0)
            for k, v in {**record.tags, **{f"param/{p}": str(x) for p, x in record.params.items()}}.items():
                writer.add_text(k, str(v))
            for name, text in record.texts.items():
                writer.add_text(name, f"```\n{text}\n```")
        finally:
            writer.close()
        return str(logdir)
