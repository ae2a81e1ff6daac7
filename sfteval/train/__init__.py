"""A compact SFT trainer on Accelerate whose checkpoints sfteval can evaluate and trust.

- `sfteval.train.config`: TrainConfig (frozen; TOML knobs, CLI flags override them).
- `sfteval.train.data`: chat rendering, loss masks from the one tokenized conversation,
  truncation, packing, length-grouped batch plans, collation.
- `sfteval.train.loop`: the loss (sum over supervised tokens / supervised tokens in the whole
  optimizer step, all micro-batches and processes), optimizer, schedule, evaluation.
- `sfteval.train.plans`: which micro-batches each optimizer step trains on, across epochs;
  eval batches padded so every process does as many forwards.
- `sfteval.train.checkpoint`: atomic `checkpoint-<step>/` folders with `sfteval.json`, rotation,
  resume.
- `sfteval.train.sft`: `train(cfg) -> TrainResult` and the `python -m sfteval.train` / `accelerate
  launch -m sfteval.train` entry points (`train/sft.py` in a checkout still works).

Importing `sfteval.train` stays light: torch and transformers are imported inside functions.
"""
