"""Numbers on the dashboard's pages, formatted to their precision.

Estimates show 3 decimals (their CIs are rarely narrower than 0.001), intervals as one
"[lo, hi]" string instead of two 17-digit floats, and p-values as `<1e-6` below what a
bootstrap or exact test here can resolve (a printed 0.000000000000000001 claims a
precision nobody has). Pure functions, no Streamlit import (tested directly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

P_FLOOR = 1e-6


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_value(x: Any, digits: int = 3) -> str:
    v = _finite(x)
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_ci(ci: Sequence[Any] | None, signed: bool = False, digits: int = 3) -> str:
    if not ci or len(ci) != 2:
        return "-"
    lo, hi = _finite(ci[0]), _finite(ci[1])
    if lo is None or hi is None:
        return "-"
    spec = f"+.{digits}f" if signed else f".{digits}f"
    return f"[{lo:{spec}}, {hi:{spec}}]"


def fmt_p(p: Any) -> str:
    v = _finite(p)
    if v is None:
        return "-"
    if v < P_FLOOR:
        return f"<{P_FLOOR:.0e}".replace("e-0", "e-")
    if v < 0.001:
        return f"{v:.1e}".replace("e-0", "e-")
    return f"{v:.3f}"
