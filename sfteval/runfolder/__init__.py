"""The run folder (docs/run-format.md): what is in it and the one way to read it.

Not covered: running models (`sfteval.runner` writes run folders).
"""

from __future__ import annotations

from sfteval.runfolder.loaded import Run, is_run_dir, load_run

__all__ = ["Run", "is_run_dir", "load_run"]
