"""The funnel as stages with conversions, and reasons ranked. Pure.

captured -> MQL -> routed -> touched -> accepted -> qualified -> won. Each stage's count is of the cohort's
leads that ever reached it; the conversion is to the stage from the one before, and from the top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STAGES = ("captured", "mql", "routed", "touched", "accepted", "qualified", "won")
LABELS = {"captured": "Captured", "mql": "MQL", "routed": "Routed", "touched": "Touched", "accepted": "Accepted",
          "qualified": "Qualified", "won": "Won"}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def funnel_stages(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    top = int(counts.get("captured", 0))
    out, previous = [], None
    for stage in STAGES:
        n = int(counts.get(stage, 0))
        out.append({"stage": stage, "label": LABELS[stage], "count": n,
                    "from_previous": _rate(n, previous) if previous is not None else None,
                    "from_top": _rate(n, top)})
        previous = n
    return out


def ranked(reasons: Mapping[str, int]) -> list[dict[str, Any]]:
    """Reasons by count (then name), each with its share of all of them."""
    total = sum(reasons.values())
    return [{"reason": r, "count": n, "share": _rate(n, total)}
            for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
