"""Rules -> verdict -> exit code: a regression gate whose rules mean what they say.

Rules (TOML; a file, or `[tool.sfteval.gate]` in ./pyproject.toml):

    inconclusive = "inconclusive"     # exit 3; or "fail" (exit 1), "warn" (exit 0 + annotation), "pass"
    multiplicity = "holm"             # or "none"
    [min]                             # the score must be at least this
    "gsm8k/exact_match_strict" = 0.30
    "mmlu" = 0.25                     # a bare benchmark name means its primary metric
    [max_drop]                        # non-inferiority: tuned - base must not fall by more than d
    "*" = 0.05                        # every compared benchmark's primary metric
    "gsm8k" = 0.03                    # a named entry overrides "*"
    no_drop = ["humaneval"]           # fails on ANY demonstrated drop ("*" for every benchmark)

Semantics, with the one-sided tests of `sfteval.gate_checks` (for one check exactly the
95% interval [lo, hi] rule; docs/ci-gate.md says why):
- min m:       pass lo >= m;   fail hi < m;   else inconclusive.
- max_drop d:  pass lo >= -d;  fail hi < -d;  else inconclusive (non-inferiority, ICH E9/E10).
- no_drop:     fail hi < 0;    else pass (no drop is shown; the summary says how large a
               drop could go unseen).
- uninformative: a metric that measured nothing (zero variance in both runs, or every
  answer failed extraction) decides nothing: never a pass, exit 2, said plainly. A `min`
  rule sees it on a single run too (every item scoring the same, or >= 95% of answers not
  extracted: `sfteval.gate_measured`, from the run's samples and results.json).
Fail decisions are Holm-adjusted across the rule set (multiplicity = "holm").
Verdict: error (2) if a rule names a metric that is not there, else fail (1) if any
check fails, else uninformative (2) if any check is, else inconclusive (3, or as
`inconclusive` says) if any is, else pass (0).

Not covered: rules on diagnoses (drift, contamination); they are reported, not gated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.config import check_fields, load_toml
from sfteval.errors import SftevalError
from sfteval.gate_checks import Check, boundary, decide, multiplicity_note
from sfteval.gate_measured import from_estimate, run_unmeasured
from sfteval.gate_report import junit_xml, markdown_summary, warn_annotations, write_outputs
from sfteval.metric_range import threshold_problem
from sfteval.paired import one_sided_p
from sfteval.runfolder import Comparison, RunResults
from sfteval.runfolder.compared import JsonEstimate, MetricComparison
from sfteval.stats import interval_pvalue

__all__ = ["EXIT", "Check", "GateResult", "Rules", "evaluate", "judge_max_drop", "judge_min", "junit_xml",
           "load_rules", "load_target", "markdown_summary", "parse_rules", "warn_annotations", "write_outputs"]

EXIT = {"pass": 0, "warn": 0, "fail": 1, "error": 2, "uninformative": 2, "inconclusive": 3}
INCONCLUSIVE_MODES = ("inconclusive", "fail", "warn", "pass")
EXTRACTION_FAILURE_LIMIT = 0.95  # at or above this share, a run's extracted answers measured nothing


@dataclass(frozen=True)
class Rules:
    min: dict[str, float]
    max_drop: dict[str, float]
    inconclusive: str = "inconclusive"  # see INCONCLUSIVE_MODES
    source: str = ""
    no_drop: tuple[str, ...] = ()
    multiplicity: str = "holm"  # or "none"


@dataclass(frozen=True)
class GateResult:
    verdict: str
    exit_code: int
    checks: tuple[Check, ...]
    subject: str  # what was gated (a run id or "base -> tuned")
    notes: tuple[str, ...] = ()
    inconclusive_mode: str = "inconclusive"


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


def _parse_no_drop(raw: Any, path: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise SftevalError('no_drop must be a list of "bench[/metric]" names (or "*")', path=path, field="no_drop")
    return tuple(raw)


def parse_rules(table: dict[str, Any], source: str) -> Rules:
    check_fields(table, {"min", "max_drop", "no_drop", "inconclusive", "multiplicity"}, path=source)
    mode = table.get("inconclusive", "inconclusive")
    if mode not in INCONCLUSIVE_MODES:
        raise SftevalError(f"must be one of {', '.join(repr(m) for m in INCONCLUSIVE_MODES)}", path=source,
                           field="inconclusive")
    mult = table.get("multiplicity", "holm")
    if mult not in ("holm", "none"):
        raise SftevalError("must be \"holm\" or \"none\"", path=source, field="multiplicity")
    rules = Rules(_parse_table(table.get("min"), "min", source), _parse_table(table.get("max_drop"), "max_drop", source),
                  mode, source, _parse_no_drop(table.get("no_drop"), source), mult)
    for key, d in rules.max_drop.items():
        if d < 0:
            raise SftevalError("max_drop must be >= 0 (a drop, in metric units)", path=source, field=f"max_drop.{key}")
    if not rules.min and not rules.max_drop and not rules.no_drop:
        raise SftevalError("no rules: add a [min] or [max_drop] table or a no_drop list", path=source)
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
    """The interval rule for one `min` check (no multiplicity)."""
    if lo >= m:
        return "pass"
    return "fail" if hi < m else "inconclusive"


def judge_max_drop(lo: float, hi: float, d: float) -> str:
    """Non-inferiority with margin d for one check: pass when the data rule out a drop
    larger than d, fail when they show one, else inconclusive."""
    if lo >= -d:
        return "pass"
    return "fail" if hi < -d else "inconclusive"


def judge_no_drop(lo: float, hi: float) -> str:
    """Fails on any demonstrated drop."""
    del lo
    return "fail" if hi < 0 else "pass"


@dataclass(frozen=True)
class _Bench:
    """What a rule can name in one benchmark: its primary metric and each metric's record
    (a comparison's `MetricComparison`, or a run's estimate), read through the run-folder
    records (sfteval.runfolder)."""

    primary_metric: str | None
    metrics: Mapping[str, MetricComparison | JsonEstimate]


def _benches(data: Mapping[str, Any], comp: Comparison | None) -> dict[str, _Bench]:
    if comp is not None:
        return {b: _Bench(e.primary_metric, e.metrics) for b, e in comp.benchmarks.items()}
    run = RunResults.from_dict(data)
    return {b: _Bench(r.primary_metric, {m: JsonEstimate.from_dict(e.to_dict()) for m, e in r.metrics.items()})
            for b, r in run.benchmarks.items()}


def _targets(spec: dict[str, float], benches: Mapping[str, _Bench]) -> list[tuple[str, str, float, str]]:
    """(bench, metric, threshold, rule key) per rule entry; "*" expands to every primary metric."""
    out: dict[tuple[str, str], tuple[float, str]] = {}
    if "*" in spec:
        for b, info in benches.items():
            if info.primary_metric:
                out[(b, info.primary_metric)] = (spec["*"], "*")
    for key, value in spec.items():
        if key == "*":
            continue
        bench, _, metric = key.partition("/")
        info = benches.get(bench)
        metric = metric or str(info.primary_metric or "" if info is not None else "")
        out[(bench, metric)] = (value, key)
    return [(b, m, v, k) for (b, m), (v, k) in out.items()]


def _ci(est: JsonEstimate | None) -> tuple[float, float] | None:
    ci = est.interval() if est is not None else None
    return ci if ci is not None and math.isfinite(ci[0]) and math.isfinite(ci[1]) else None


def _error(rule: str, target: str, threshold: float, reason: str) -> Check:
    return Check(rule, target, threshold, None, (None, None), "error", reason)


def _inference(entry: MetricComparison) -> dict[str, Any] | None:
    """What the one-sided tests need: recorded by compare, or rebuilt from the flips of
    a 0/1 metric whose interval is Tango's; None means "only the interval is known"."""
    inf = entry.inference
    if isinstance(inf, Mapping) and inf.get("family"):
        return dict(inf)
    delta, flips = entry.delta, entry.flips
    if delta.method.startswith("tango") and flips is not None and delta.n:
        return {"family": "tango", "n": int(delta.n), "gained": int(flips.gained), "lost": int(flips.lost)}
    return None


def _pvalues(inf: dict[str, Any] | None, value: float, ci: tuple[float, float], x: float) -> tuple[float, float]:
    """(p_fail, p_pass) at boundary x, inverting the check's own interval."""
    pf = one_sided_p(inf, x, "below") if inf else float("nan")
    pp = one_sided_p(inf, x, "above") if inf else float("nan")
    if not math.isfinite(pf):
        pf = interval_pvalue(value, ci, x, "below")
    if not math.isfinite(pp):
        pp = interval_pvalue(value, ci, x, "above")
    return pf, pp


def _zero_variance(entry: MetricComparison) -> str | None:
    """Old comparisons (no recorded flag): both runs' scores without spread."""
    b, t, flips = entry.base.value, entry.tuned.value, entry.flips
    if entry.binary and b in (0.0, 1.0) and t == b and not (flips is not None and (flips.lost or flips.gained)):
        return f"zero variance in both runs: every item scores {b:g} in each; the metric measured nothing here"
    return None


def _delta_check(rule: str, target: str, threshold: float, entry: MetricComparison) -> Check:
    delta = entry.delta
    ci = _ci(delta)
    why = entry.uninformative or _zero_variance(entry)
    if delta.value is None or ci is None:
        if why:
            return Check(rule, target, threshold, None, (None, None), "uninformative", f"UNINFORMATIVE: {why}")
        return _error(rule, target, threshold, f"rule {rule}: no {target} delta with a CI")
    value, n = float(delta.value), int(delta.n or 0) or None
    if why:
        return Check(rule, target, threshold, value, ci, "uninformative",
                     f"UNINFORMATIVE: {why}; a [{ci[0]:+.4f}, {ci[1]:+.4f}] interval here is not evidence of no change",
                     n=n)
    flips = entry.flips
    if entry.binary and flips is not None and n:
        sigma2 = max((int(flips.gained) + int(flips.lost)) / n - value * value, 0.0)
    else:
        se = delta.stderr
        sigma2 = float(se) ** 2 * n if se is not None and n and math.isfinite(float(se)) else None
    x = boundary(rule, threshold)
    pf, pp = _pvalues(_inference(entry), value, ci, x)
    what = f"allowed drop {threshold:g}" if rule == "max_drop" else "no drop allowed"
    return Check(rule, target, threshold, value, ci, "pending", f"delta 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}] vs {what}",
                 p_fail=pf, p_pass=None if rule == "no_drop" else pp, n=n, sigma2=sigma2)


def _min_check(target: str, m: float, est: JsonEstimate, why: str | None) -> Check:
    ci = _ci(est)
    assert ci is not None
    value, n = float(est.value if est.value is not None else math.nan), int(est.n or 0) or None
    if why:
        return Check("min", target, m, value, ci, "uninformative", f"UNINFORMATIVE: {why}", n=n)
    se = est.stderr
    sigma2 = float(se) ** 2 * n if se is not None and n and math.isfinite(float(se)) else None
    pf, pp = _pvalues(None, value, ci, m)
    return Check("min", target, m, value, ci, "pending", f"95% CI [{ci[0]:.4f}, {ci[1]:.4f}] vs minimum {m:g}",
                 p_fail=pf, p_pass=pp, n=n, sigma2=sigma2)


def _available(benches: Mapping[str, _Bench]) -> str:
    """Every bench/metric a rule could name here (the primary one marked), for error reasons."""
    names = [f"{b}/{m}" + (" (primary)" if m == info.primary_metric else "")
             for b, info in benches.items() for m in info.metrics]
    return ", ".join(names) or "none"


def _no_drop_spec(names: tuple[str, ...]) -> dict[str, float]:
    return {name: 0.0 for name in names}


def evaluate(rules: Rules, data: dict[str, Any]) -> GateResult:
    """Judge a results.json (`sfteval.run/1`) or a comparison.json (`sfteval.compare/1`)."""
    is_comparison = str(data.get("schema", "")).startswith("sfteval.compare/")
    comp = Comparison.from_dict(data) if is_comparison else None
    benches = _benches(data, comp)
    where = "comparison" if is_comparison else "run"
    checks: list[Check] = []
    notes: list[str] = []
    for bench, metric, m, key in _targets(rules.min, benches):
        target = f"{bench}/{metric}"
        info = benches.get(bench)
        entry = info.metrics.get(metric) if info is not None else None
        est: JsonEstimate | None
        why = ((data.get("unmeasured") or {}).get(bench) or {}).get(metric)  # load_target read the samples
        if isinstance(entry, MetricComparison):
            est = entry.tuned_reported or entry.tuned
            why = entry.uninformative
        else:
            est = entry
        why = why or (from_estimate(est.to_dict()) if est is not None else None)  # zero spread shows in results alone
        if info is None or est is None or _ci(est) is None:
            checks.append(_error("min", target, m, f"rule min.{key}: no {target} with a CI in this {where}; "
                                 f"available: {_available(benches)}"))
            continue
        bad = threshold_problem("min", metric, m)
        if bad:
            checks.append(_error("min", target, m, f"rule min.{key}: {bad}"))
            continue
        checks.append(_min_check(target, m, est, why))
    if (rules.max_drop or rules.no_drop) and not is_comparison:
        raise SftevalError("max_drop / no_drop rules need a comparison (sfteval compare BASE TUNED), not a single run",
                           path=rules.source, field="max_drop" if rules.max_drop else "no_drop")
    for rule, spec in (("max_drop", rules.max_drop), ("no_drop", _no_drop_spec(rules.no_drop))):
        for bench, metric, d, key in _targets(spec, benches):
            target = f"{bench}/{metric}"
            info = benches.get(bench)
            entry = info.metrics.get(metric) if info is not None else None
            if not isinstance(entry, MetricComparison):
                checks.append(_error(rule, target, d, f"rule {rule}.{key}: no {target} in this comparison; "
                                     f"available: {_available(benches)}"))
                continue
            bad = threshold_problem(rule, metric, d)
            if bad:
                checks.append(_error(rule, target, d, f"rule {rule}.{key}: {bad}"))
                continue
            checks.append(_delta_check(rule, target, d, entry))
    if comp is not None:
        subject = f"{comp.base.run_id} -> {comp.tuned.run_id}"
        blocking = [m for m in comp.mismatches if m.blocking]
        if blocking:
            notes.append(f"the comparison was made with --allow-mismatch: {len(blocking)} blocking difference(s)")
    else:
        subject = str(data.get("run_id") or "")
    if not checks:  # a gate that checked nothing must not pass
        checks.append(_error("rules", "*", 0.0, f"the rules matched no benchmark in this {where}"))
    checks = decide(checks, rules.multiplicity)
    notes.append(multiplicity_note(checks, rules.multiplicity))
    overall = _overall({c.verdict for c in checks}, rules.inconclusive)
    return GateResult(overall, EXIT[overall], tuple(checks), subject, tuple(notes),
                      rules.inconclusive)


def _overall(verdicts: set[str], mode: str) -> str:
    if "error" in verdicts:
        return "error"
    if "fail" in verdicts:
        return "fail"
    if "uninformative" in verdicts:  # never a pass: the data cannot support one
        return "uninformative"
    if "inconclusive" in verdicts:
        return {"inconclusive": "inconclusive", "fail": "fail", "warn": "warn", "pass": "pass"}[mode]
    return "pass"


def load_target(path: str | Path) -> dict[str, Any]:
    """A run folder / results.json (its samples are not read), or a comparison folder /
    comparison.json, validated by the run-folder reader."""
    from sfteval.runfolder import read_target

    data = read_target(path)
    if not str(data.get("schema", "")).startswith("sfteval.compare/"):
        run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
        # a single run's `min` rules must see a metric that measured nothing (zero variance,
        # answers not extracted): only its samples tell
        data["unmeasured"] = run_unmeasured(run_dir, data)
    return data
