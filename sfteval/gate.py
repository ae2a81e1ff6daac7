"""Rules -> verdict -> exit code: a regression gate judged on confidence intervals.

Rules (TOML; a file, or `[tool.sfteval.gate]` in ./pyproject.toml):

    inconclusive = "inconclusive"     # or "fail": treat inconclusive checks as failures
    [min]                             # the score must be at least this
    "gsm8k/exact_match_strict" = 0.30
    "mmlu" = 0.25                     # a bare benchmark name means its primary metric
    [max_drop]                        # tuned - base must not fall by more than this
    "*" = 0.05                        # every compared benchmark's primary metric
    "gsm8k" = 0.03                    # a named entry overrides "*"

Semantics with the 95% CI [lo, hi] (docs/ci-gate.md says why):
- min m:       pass lo >= m;   fail hi < m;                      else inconclusive.
- max_drop d:  pass lo >= -d;  fail hi < 0 (a drop is shown, and d is not ruled out);
               else inconclusive (no drop shown, but a drop of d is not ruled out either).
Verdict: error (2) if a rule names a metric that is not there, else fail (1) if any check
fails, else inconclusive (3) if any is, else pass (0).

Not covered: rules on diagnoses (drift, contamination); they are reported, not gated.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from sfteval.config import check_fields, load_toml
from sfteval.errors import SftevalError
from sfteval.fileio import atomic_write_text

EXIT = {"pass": 0, "fail": 1, "error": 2, "inconclusive": 3}
Z80 = 0.8416212335729143  # one-sided 80% power
Z975 = 1.959963984540054


@dataclass(frozen=True)
class Rules:
    min: dict[str, float]
    max_drop: dict[str, float]
    inconclusive: str = "inconclusive"  # or "fail"
    source: str = ""


@dataclass(frozen=True)
class Check:
    rule: str  # "min" | "max_drop"
    target: str  # "bench/metric"
    threshold: float
    value: float | None
    ci95: tuple[float | None, float | None]
    verdict: str  # pass | fail | inconclusive | error
    reason: str
    detectable_drop: float | None = None  # drop caught with 80% power at this CI width


@dataclass(frozen=True)
class GateResult:
    verdict: str
    exit_code: int
    checks: tuple[Check, ...]
    subject: str  # what was gated (a run id or "base -> tuned")
    notes: tuple[str, ...] = ()


def _parse_table(raw: Any, name: str, path: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SftevalError(f"[{name}] must be a table of \"bench[/metric]\" = number", path=path, field=name)
    out = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SftevalError("expected a number", path=path, field=f"{name}.{key}")
        out[str(key)] = float(value)
    return out


def parse_rules(table: dict[str, Any], source: str) -> Rules:
    check_fields(table, {"min", "max_drop", "inconclusive"}, path=source)
    mode = table.get("inconclusive", "inconclusive")
    if mode not in ("inconclusive", "fail"):
        raise SftevalError("must be \"inconclusive\" or \"fail\"", path=source, field="inconclusive")
    rules = Rules(_parse_table(table.get("min"), "min", source), _parse_table(table.get("max_drop"), "max_drop", source),
                  mode, source)
    for key, d in rules.max_drop.items():
        if d < 0:
            raise SftevalError("max_drop must be >= 0 (a drop, in metric units)", path=source, field=f"max_drop.{key}")
    if not rules.min and not rules.max_drop:
        raise SftevalError("no rules: add a [min] or [max_drop] table", path=source)
    return rules


def load_rules(path: str | Path | None) -> Rules:
    """Rules from a TOML file, else from `[tool.sfteval.gate]` in ./pyproject.toml."""
    if path is not None:
        data = load_toml(path)
        if "tool" in data:  # a pyproject-style file passed explicitly
            data = ((data.get("tool") or {}).get("sfteval") or {}).get("gate") or {}
        return parse_rules(data, str(path))
    pyproject = Path("pyproject.toml")
    table = ((load_toml(pyproject).get("tool") or {}).get("sfteval") or {}).get("gate") if pyproject.is_file() else None
    if not table:
        raise SftevalError("no gate rules found", path=str(pyproject.resolve()),
                           hint="pass --rules FILE, or add a [tool.sfteval.gate] table to pyproject.toml")
    return parse_rules(table, f"{pyproject}:[tool.sfteval.gate]")


def judge_min(lo: float, hi: float, m: float) -> str:
    if lo >= m:
        return "pass"
    return "fail" if hi < m else "inconclusive"


def judge_max_drop(lo: float, hi: float, d: float) -> str:
    if lo >= -d:
        return "pass"
    return "fail" if hi < 0 else "inconclusive"


def _targets(spec: dict[str, float], benches: dict[str, dict[str, Any]]) -> list[tuple[str, str, float, str]]:
    """(bench, metric, threshold, rule key) per rule entry; "*" expands to every primary metric."""
    out: dict[tuple[str, str], tuple[float, str]] = {}
    if "*" in spec:
        for b, info in benches.items():
            if info.get("primary_metric"):
                out[(b, info["primary_metric"])] = (spec["*"], "*")
    for key, value in spec.items():
        if key == "*":
            continue
        bench, _, metric = key.partition("/")
        metric = metric or str((benches.get(bench) or {}).get("primary_metric") or "")
        out[(bench, metric)] = (value, key)
    return [(b, m, v, k) for (b, m), (v, k) in out.items()]


def _ci(est: dict[str, Any] | None) -> tuple[float, float] | None:
    if not est or not est.get("ci95") or None in est["ci95"]:
        return None
    lo, hi = float(est["ci95"][0]), float(est["ci95"][1])
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _error(rule: str, target: str, threshold: float, reason: str) -> Check:
    return Check(rule, target, threshold, None, (None, None), "error", reason)


def evaluate(rules: Rules, data: dict[str, Any]) -> GateResult:
    """Judge a results.json (`sfteval.run/1`) or a comparison.json (`sfteval.compare/1`)."""
    is_comparison = str(data.get("schema", "")).startswith("sfteval.compare/")
    benches = data.get("benchmarks") or {}
    checks: list[Check] = []
    notes: list[str] = []
    for bench, metric, m, key in _targets(rules.min, benches):
        target = f"{bench}/{metric}"
        info = benches.get(bench)
        metrics = (info or {}).get("metrics") or {}
        est = metrics.get(metric)
        if is_comparison and est is not None:
            est = est.get("tuned_reported") or est.get("tuned")
        ci = _ci(est)
        if info is None or est is None or ci is None:
            checks.append(_error("min", target, m, f"rule min.{key}: no {target} with a CI in this "
                                 f"{'comparison' if is_comparison else 'run'}"))
            continue
        verdict = judge_min(ci[0], ci[1], m)
        checks.append(Check("min", target, m, float(est["value"]), ci, verdict,
                            f"95% CI [{ci[0]:.4f}, {ci[1]:.4f}] vs minimum {m:g}"))
    if rules.max_drop and not is_comparison:
        raise SftevalError("max_drop rules need a comparison (sfteval compare BASE TUNED), not a single run",
                           path=rules.source, field="max_drop")
    for bench, metric, d, key in _targets(rules.max_drop, benches):
        target = f"{bench}/{metric}"
        delta = (((benches.get(bench) or {}).get("metrics") or {}).get(metric) or {}).get("delta")
        ci = _ci(delta)
        if delta is None or ci is None:
            checks.append(_error("max_drop", target, d, f"rule max_drop.{key}: no {target} delta with a CI"))
            continue
        se = delta.get("stderr")
        mde = (Z975 + Z80) * float(se) if se is not None and math.isfinite(float(se)) else None
        verdict = judge_max_drop(ci[0], ci[1], d)
        checks.append(Check("max_drop", target, d, float(delta["value"]), ci, verdict,
                            f"delta 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}] vs allowed drop {d:g}", mde))
    if is_comparison:
        subject = f"{data['base']['run_id']} -> {data['tuned']['run_id']}"
        blocking = [m for m in data.get("mismatches") or [] if m.get("blocking")]
        if blocking:
            notes.append(f"the comparison was made with --allow-mismatch: {len(blocking)} blocking difference(s)")
    else:
        subject = str(data.get("run_id") or "")
    if not checks:  # a gate that checked nothing must not pass
        checks.append(_error("rules", "*", 0.0, "the rules matched no benchmark in this "
                             f"{'comparison' if is_comparison else 'run'}"))
    verdicts = {c.verdict for c in checks}
    if "error" in verdicts:
        overall = "error"
    elif "fail" in verdicts or ("inconclusive" in verdicts and rules.inconclusive == "fail"):
        overall = "fail"
    elif "inconclusive" in verdicts:
        overall = "inconclusive"
    else:
        overall = "pass"
    return GateResult(overall, EXIT[overall], tuple(checks), subject, tuple(notes))


def load_target(path: str | Path) -> dict[str, Any]:
    """A run folder / results.json (its samples are not read), or a comparison folder /
    comparison.json, validated by the run-folder reader."""
    from sfteval.runfolder import read_target

    return read_target(path)


# ----------------------------------------------------------------------------- outputs


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def markdown_summary(result: GateResult) -> str:
    icon = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "error": "ERROR"}
    lines = [f"## sfteval gate: {icon[result.verdict]}", "", f"Gated: `{result.subject}`", ""]
    lines += [f"> {n}" for n in result.notes]
    lines += ["| check | target | threshold | value | 95% CI | verdict | drop caught 80% |",
              "|---|---|---|---|---|---|---|"]
    for c in result.checks:
        ci = "-" if c.ci95[0] is None else f"[{_fmt(c.ci95[0])}, {_fmt(c.ci95[1])}]"
        lines.append(f"| {c.rule} | `{c.target}` | {c.threshold:g} | {_fmt(c.value)} | {ci} | {c.verdict} | "
                     f"{_fmt(c.detectable_drop)} |")
    lines += ["", "Judged on the 95% CI, not the point estimate (see docs/ci-gate.md). "
              "`drop caught 80%`: the true drop this comparison would flag 4 times in 5."]
    return "\n".join(lines) + "\n"


def junit_xml(result: GateResult) -> str:
    counts = {v: sum(c.verdict == v for c in result.checks) for v in ("fail", "error", "inconclusive")}
    suite = ET.Element("testsuite", name="sfteval.gate", tests=str(len(result.checks)),
                       failures=str(counts["fail"]), errors=str(counts["error"]), skipped=str(counts["inconclusive"]))
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"sfteval.gate.{c.rule}", name=c.target)
        if c.verdict == "fail":
            ET.SubElement(case, "failure", message=c.reason).text = c.reason
        elif c.verdict == "error":
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
