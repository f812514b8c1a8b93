"""Time and FLOPs to a target accuracy, and the rate a tuning run picks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def to_target(rows: Iterable[Mapping[str, Any]], target: float) -> dict[str, float]:
    """Seconds, FLOPs and step of the first eval with val_acc >= target (inf if never)."""
    for row in rows:
        if float(row["val_acc"]) >= target:
            return {"seconds": float(row["seconds"]), "flops": float(row["flops"]),
                    "step": float(row["step"])}  # fmt: skip
    return {"seconds": math.inf, "flops": math.inf, "step": math.inf}


def final_accuracy(rows: list[Mapping[str, Any]]) -> float:
    """The last eval's val_acc; -inf for a run that diverged or logged nothing."""
    if not rows or rows[-1]["status"] == "diverged":
        return -math.inf
    acc = float(rows[-1]["val_acc"])
    return acc if math.isfinite(acc) else -math.inf


def best_rate(runs: Mapping[float, list[Mapping[str, Any]]], target: float) -> float:
    """The rate whose run reached `target` soonest; among runs that never did, the best final."""
    return min(
        runs, key=lambda lr: (to_target(runs[lr], target)["seconds"], -final_accuracy(runs[lr]))
    )
