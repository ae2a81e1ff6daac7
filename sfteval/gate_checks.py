"""The statistics of a gate: one-sided tests per check, multiplicity, and planning.

Each check is a pair of one-sided tests at the rule's threshold x (x = -d for
`max_drop = d`, 0 for `no_drop`, m for `min = m`):
- fail test, H0 "value >= x" (p_fail small: the value is shown below x);
- pass test, H0 "value <= x" (p_pass small: the value is shown above x; not for no_drop).
With one check and no adjustment this is exactly the 95% interval rule: fail when the
upper bound < x, pass when the lower bound >= x (non-inferiority, ICH E9/E10).

Multiplicity: the build fails when ANY check fails, so the fail tests form one family:
Holm's step-down adjustment keeps the chance that a rule set with nothing wrong fails
at <= 2.5% however many checks it has (`multiplicity = "none"` turns it off). The build
passes only when EVERY check passes: an intersection-union test (Berger 1982), whose
error is at most each test's 2.5% without adjustment, so pass tests are not adjusted.

Planning, per check, from the observed spread (for 0/1 metrics: the discordance):
- `n_to_decide`: items at which a true value equal to the observed one would be decided
  (pass or fail) with 80% power: (z_a + z_0.8)^2 sigma^2 / (value - x)^2, z_a at the
  fail family's Bonferroni level (a bound on Holm's) when failing, 1.96 when passing.
- `detectable`: for max_drop / no_drop, the true drop that fails 4 times in 5 at this n:
  d + (z_a + 0.84) se (the old "2.8 se" forgot d: it was caught 67% at n = 200 and 0% at
  n = 14,042); for min, the true score that fails 4 times in 5: m - (z_a + 0.84) se.

Not covered: sequential (group-sequential) designs; the gate judges one look at the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scipy.special import ndtri

from sfteval.paired import holm

ALPHA_ONE_SIDED = 0.025  # each side of a two-sided 95% interval
Z80 = 0.8416212335729143  # 80% power


@dataclass(frozen=True)
class Check:
    rule: str  # "min" | "max_drop" | "no_drop" | "rules"
    target: str  # "bench/metric"
    threshold: float  # the rule's number (d for max_drop, 0 for no_drop, m for min)
    value: float | None
    ci95: tuple[float | None, float | None]
    verdict: str  # pass | fail | inconclusive | uninformative | error
    reason: str
    detectable: float | None = None  # see the module docstring
    n_to_decide: int | None = None
    p_fail: float | None = None  # adjusted as the summary states
    p_pass: float | None = None
    n: int | None = None
    sigma2: float | None = None  # per-item variance used for planning


def boundary(rule: str, threshold: float) -> float:
    """Where the tests sit on the value's scale."""
    return -threshold if rule == "max_drop" else (0.0 if rule == "no_drop" else threshold)


def z_one_sided(alpha: float) -> float:
    return float(-ndtri(alpha))


def plan(check: Check, family_size: int) -> Check:
    """Fill in n_to_decide and detectable (module docstring)."""
    if check.value is None or check.sigma2 is None or check.n is None or not check.sigma2 > 0:
        return check
    x = boundary(check.rule, check.threshold)
    z_fail = z_one_sided(ALPHA_ONE_SIDED / max(family_size, 1))
    z_pass = z_one_sided(ALPHA_ONE_SIDED)
    se = math.sqrt(check.sigma2 / check.n)
    gap = check.value - x
    n_to: int | None = None
    if gap < 0:  # heading for fail
        n_to = math.ceil((z_fail + Z80) ** 2 * check.sigma2 / gap**2)
    elif gap > 0 and check.rule != "no_drop":
        n_to = math.ceil((z_pass + Z80) ** 2 * check.sigma2 / gap**2)
    if check.rule == "max_drop":
        detectable = check.threshold + (z_fail + Z80) * se
    elif check.rule == "no_drop":
        detectable = (z_fail + Z80) * se
    else:
        detectable = check.threshold - (z_fail + Z80) * se
    return replace(check, n_to_decide=n_to, detectable=detectable)


def decide(checks: list[Check], multiplicity: str = "holm") -> list[Check]:
    """Verdicts from the checks' one-sided p-values (unadjusted on input).

    Checks already decided (error / uninformative) pass through untouched and do not
    count in the family.
    """
    live = [i for i, c in enumerate(checks) if c.verdict == "pending"]
    raw_fail = [checks[i].p_fail if checks[i].p_fail is not None else 1.0 for i in live]
    adj = holm(raw_fail) if multiplicity == "holm" and len(live) > 1 else raw_fail
    out = list(checks)
    for i, pf in zip(live, adj):
        c = checks[i]
        pp = c.p_pass
        if pf < ALPHA_ONE_SIDED:
            verdict = "fail"
        elif c.rule == "no_drop" or (pp is not None and pp <= ALPHA_ONE_SIDED):
            verdict = "pass"
        else:
            verdict = "inconclusive"
        out[i] = plan(replace(c, verdict=verdict, p_fail=pf), len(live))
    return out


def multiplicity_note(checks: list[Check], multiplicity: str) -> str:
    m = sum(1 for c in checks if c.p_fail is not None)
    if m <= 1:
        return "One statistical check: no multiplicity adjustment needed."
    if multiplicity == "holm":
        return (f"Multiplicity: fail decisions are Holm-adjusted over the {m} checks (the chance that a rule set with "
                "nothing wrong fails stays <= 2.5%); pass needs every check to pass (intersection-union test, "
                "each at 2.5%, no adjustment needed).")
    return f"Multiplicity: NOT adjusted (multiplicity = \"none\"): {m} checks each fail at 2.5% on their own."
