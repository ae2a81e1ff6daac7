"""`python -m sfteval.train ...` (and `accelerate launch -m sfteval.train ...`): the trainer's CLI."""

from __future__ import annotations

import sys

from sfteval.train.sft import main

if __name__ == "__main__":
    sys.exit(main())
