"""Interoperation with other harnesses: lm-evaluation-harness in (`import lm-eval`) and
out (`export lm-eval`), lighteval in (`import lighteval`). Nothing here imports either
harness: its files are read and written in its documented schema, so sfteval works on
outputs made elsewhere."""
