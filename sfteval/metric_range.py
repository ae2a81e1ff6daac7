"""The range each known metric lives in, so a gate threshold outside it is caught.

A threshold of `5` for an accuracy (points written where a fraction is meant) can never
fail a `max_drop` rule and can never pass a `min` rule; both are mistakes worth one clear
error instead of a silent verdict. Covered: the metrics sfteval's kinds write (fractions
in [0, 1]; BLEU and chrF in [0, 100]). Not covered: metrics added through `extra_metrics`
(evaluate scripts) or by a user's kind; their range is unknown and nothing is checked.
"""

from __future__ import annotations

import re

_FRACTION = re.compile(
    r"^(accuracy(_\w+)?|exact_match(_\w+)?|pass@\d+|rouge(1|2|L|Lsum)|bertscore_(f1|precision|recall)"
    r"|instruction_\w+|prompt_\w+|win_rate|tie_rate|loss_rate|extract(ed|ion_rate))$"
)
_PERCENT = re.compile(r"^(bleu|sentence_bleu|chrf|chrf\+\+)$")


def known_range(metric: str) -> tuple[float, float] | None:
    """(low, high) of a metric sfteval writes, or None when it is not known."""
    if _FRACTION.match(metric):
        return (0.0, 1.0)
    if _PERCENT.match(metric):
        return (0.0, 100.0)
    return None


def threshold_problem(rule: str, metric: str, threshold: float) -> str | None:
    """Why a rule's threshold cannot be meant as written, or None when it is in range."""
    rng = known_range(metric)
    if rng is None:
        return None
    lo, hi = rng
    span = hi - lo
    if rule == "min" and not lo <= threshold <= hi:
        bad = f"minimum {threshold:g}"
    elif rule == "max_drop" and threshold > span:
        bad = f"allowed drop {threshold:g}"
    else:
        return None
    hint = f" (for {threshold:g} points write {threshold / 100:g})" if hi == 1.0 and threshold > 1 else ""
    return f"{bad} is outside {metric}'s range [{lo:g}, {hi:g}]: thresholds are in the metric's units{hint}"
