"""Kept so that `python train/sft.py ...` and `accelerate launch train/sft.py ...` in a checkout
keep working: the trainer lives in the package as `sfteval.train` (`python -m sfteval.train`)."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sfteval.train.sft import main

    sys.exit(main())
