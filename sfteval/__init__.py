"""sfteval: evaluate and diagnose supervised fine-tuning.

`import sfteval` is cheap on purpose: no torch, transformers or vllm at import time.
"""

__version__ = "0.1.0"
