"""Sentence parts chosen by a check on the numbers, so a report never says what they do not.

A ratio below 1 is not called a speedup, a setting is not called the cheapest when it is not
cheaper than backprop or has nothing to be compared with, and "other than backprop" is said only
when backprop was run.
"""

from __future__ import annotations

import math

from reports.style import fmt


def versus_backprop(ratio: float, unit: str) -> str:
    """`ratio` = backprop's median / the setting's median, in `unit` ("time", "FLOPs"): above 1
    "speedup over backprop 2× in time", below 1 "slower than backprop in time: 1.75× its time
    (ratio 0.572)", "the same time as backprop" when it prints as 1."""
    if not (math.isfinite(ratio) and ratio > 0):
        return f"no {unit} comparison with backprop (a median is ∞ or absent)"
    if fmt(ratio) == fmt(1.0):
        return f"the same {unit} as backprop"
    if ratio > 1:
        return f"speedup over backprop {fmt(ratio)}× in {unit}"
    return f"slower than backprop in {unit}: {fmt(1 / ratio)}× its {unit} (ratio {fmt(ratio)})"


def cheapest(label: str, ratio: float, settings: int, among: str = "", unit: str = "FLOPs") -> str:
    """The lowest `unit` ratio to backprop's step among `settings` settings (`among` qualifies
    them, " among ..."), said as what it is: the only setting's own ratio, "no setting ... costs
    less" when it is not below 1, or the cheapest."""
    if settings == 1:
        return (
            f"The only setting{among}, {label}, has a step costing {fmt(ratio)}× backprop's {unit}"
        )
    if not ratio < 1 or fmt(ratio) == fmt(1.0):
        return (f"No setting{among} has a step costing less {unit} than backprop's (the lowest: "
                f"{label} at {fmt(ratio)}×)")  # fmt: skip
    return f"Cheapest step in {unit}{among}: {label} at {fmt(ratio)}× backprop's"


def other_word(backprop_ran: bool) -> str:
    """ "other " when backprop is among the settings compared against, else ""."""
    return "other " if backprop_ran else ""
