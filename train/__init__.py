"""A compact SFT trainer on Accelerate whose checkpoints sfteval can evaluate and trust.

- `train.config`: TrainConfig (frozen; TOML knobs, CLI flags override them).
- `train.data`: chat rendering, loss masks from the one tokenized conversation,
  truncation, packing, length-grouped batch plans, collation.
- `train.loop`: the loss (sum over supervised tokens / supervised tokens in the whole
  optimizer step, all micro-batches and processes), optimizer, schedule, evaluation.
- `train.checkpoint`: atomic `checkpoint-<step>/` folders with `sfteval.json`, rotation,
  resume.
- `train.sft`: `train(cfg) -> TrainResult` and the `python train/sft.py` / `accelerate
  launch train/sft.py` entry point.

Importing `train` stays light: torch and transformers are imported inside functions.
"""
