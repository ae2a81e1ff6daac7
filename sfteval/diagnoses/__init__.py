"""Diagnoses behind a comparison, one module each, registered in `DIAGNOSES`.

Each entry maps a key of comparison.json (docs/compare-format.md) to a function
`diagnose(DiagnosisInput) -> JSON-ready dict`. `sfteval.compare` runs every entry in
this order after the paired per-benchmark deltas; `sfteval.report_sections.SECTIONS`
renders each under the same key; the dashboard's Compare page reads the same keys.
Readers get each one typed: its record under the same key in
`sfteval.runfolder.diagnosed.DIAGNOSIS_RECORDS` (a test checks the keys agree).

- `forgetting`: general benchmarks whose primary metric dropped beyond the margin.
- `overfitting`: train-vs-heldout gap, memorisation (`memorisation.py`) and the
  checkpoint-sweep analysis (`sweep.py`).
- `drift`: extraction failures, length, truncation, repetition, template leaks.
- `contamination`: benchmark items whose own text appears in the SFT data.

Not covered: causes. These numbers say what changed; a person reads the flagged
outputs to say why. Adding one: docs/extending.md ("A diagnosis").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sfteval.diagnoses import contamination, drift, forgetting, overfitting
from sfteval.diagnoses.context import CompareSettings, DiagnosisInput

Diagnosis = Callable[[DiagnosisInput], dict[str, Any]]

DIAGNOSES: dict[str, Diagnosis] = {
    "forgetting": forgetting.diagnose,
    "overfitting": overfitting.diagnose,
    "drift": drift.diagnose,
    "contamination": contamination.diagnose,
}

__all__ = ["DIAGNOSES", "CompareSettings", "Diagnosis", "DiagnosisInput"]
