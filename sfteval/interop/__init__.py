"""Interoperation with other harnesses: lm-evaluation-harness in (`import lm-eval`) and
out (`export lm-eval`). Nothing here imports lm-eval itself: its files are read and
written in its documented schema, so sfteval works on outputs made elsewhere."""
