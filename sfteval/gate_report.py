"""What a gate verdict looks like to people and to CI: summary.md (also appended to
$GITHUB_STEP_SUMMARY), junit.xml, and GitHub warning annotations for `inconclusive = "warn"`.

The summary states per check the 95% interval, the (adjusted) one-sided p-value of the
fail test, the number of items that would decide the check at 80% power, and the true
change that fails 4 times in 5 at this size (see `sfteval.gate_checks`), then how
multiplicity was handled, and says plainly which checks measured nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from sfteval.fileio import atomic_write_text

if TYPE_CHECKING:
    from sfteval.gate import GateResult

HEADLINE = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "error": "ERROR",
            "uninformative": "UNINFORMATIVE", "warn": "PASS WITH WARNINGS (inconclusive checks)"}


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def _p(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def _n(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def markdown_summary(result: GateResult) -> str:
    lines = [f"## sfteval gate: {HEADLINE[result.verdict]}", "", f"Gated: `{result.subject}`", ""]
    lines += [f"> {n}" for n in result.notes]
    lines += ["", "| check | target | threshold | value | 95% CI | p (fail test) | verdict | n to decide (80%) "
              "| fails 80% at |", "|---|---|---|---|---|---|---|---|---|"]
    for c in result.checks:
        signed = c.rule in ("max_drop", "no_drop")
        ci = "-" if c.ci95[0] is None else f"[{_fmt(c.ci95[0], signed)}, {_fmt(c.ci95[1], signed)}]"
        fails_at = "-"
        if c.detectable is not None:
            fails_at = f"drop {c.detectable:.4f}" if signed else f"score {c.detectable:.4f}"
        n_to = _n(c.n_to_decide)
        if c.verdict in ("pass", "fail"):
            n_to = "decided"
        lines.append(f"| {c.rule} | `{c.target}` | {c.threshold:g} | {_fmt(c.value, signed)} | {ci} | {_p(c.p_fail)} "
                     f"| {c.verdict} | {n_to} | {fails_at} |")
    odd = [c for c in result.checks if c.verdict in ("uninformative", "error")]
    if odd:
        lines += [""] + [f"- **{c.verdict.upper()}** `{c.target}`: {c.reason}" for c in odd]
    lines += ["", "Judged on one-sided tests that invert each check's 95% interval, not on the point estimate "
              "(docs/ci-gate.md). `max_drop = d` passes when the interval's lower end is >= -d and fails when its "
              "upper end is < -d (non-inferiority); `no_drop` fails on any demonstrated drop. `n to decide`: items "
              "at which a true change equal to the observed one would pass or fail 4 times in 5. `fails 80% at`: "
              "the true drop (or score, for `min`) that this comparison fails 4 times in 5."]
    if result.verdict == "warn":
        lines += ["", "`inconclusive = \"warn\"`: the inconclusive checks above did not fail the build; evaluate more "
                  "items (`n to decide`) to settle them."]
    return "\n".join(lines) + "\n"


def warn_annotations(result: GateResult) -> list[str]:
    """GitHub Actions workflow commands (`::warning ...::`) for each inconclusive check
    when the rules say `inconclusive = "warn"`."""
    if result.inconclusive_mode != "warn":
        return []
    return [f"::warning title=sfteval gate: inconclusive::{c.target}: {c.reason}; about {_n(c.n_to_decide)} items "
            "would decide it" for c in result.checks if c.verdict == "inconclusive"]


def junit_xml(result: GateResult) -> str:
    counts = {v: sum(c.verdict == v for c in result.checks) for v in ("fail", "error", "inconclusive", "uninformative")}
    suite = ET.Element("testsuite", name="sfteval.gate", tests=str(len(result.checks)),
                       failures=str(counts["fail"]), errors=str(counts["error"] + counts["uninformative"]),
                       skipped=str(counts["inconclusive"]))
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"sfteval.gate.{c.rule}", name=c.target)
        if c.verdict == "fail":
            ET.SubElement(case, "failure", message=c.reason).text = c.reason
        elif c.verdict in ("error", "uninformative"):
            ET.SubElement(case, "error", message=c.reason).text = c.reason
        elif c.verdict == "inconclusive":
            ET.SubElement(case, "skipped", message=f"inconclusive: {c.reason}")
    suites = ET.Element("testsuites", name="sfteval gate")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_outputs(result: GateResult, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    junit, summary = out_dir / "junit.xml", out_dir / "summary.md"
    atomic_write_text(junit, junit_xml(result))
    text = markdown_summary(result)
    atomic_write_text(summary, text)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:  # the verdict still stands; say why the summary is missing
            print(f"warning: could not append to $GITHUB_STEP_SUMMARY: {e}", file=sys.stderr)
    return junit, summary
