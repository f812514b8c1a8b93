"""The rows the claims (`reports.claims`) read: estimator settings picked by their options, and
quality.csv at the last checkpoint over seeds; plus the preset that writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.load import KEYS, Results, number
from reports.quality import at_end, over_seeds
from reports.verdict import Estimate, mean_interval, seeds
from tasks.spec import parse_options

PRESET = "python -m runners.sweep --preset claims"  # writes the rows of every claim


def matches(
    params: str, estimator: str, want: str, options: Mapping[str, str],
    defaults: Mapping[str, str] | None = None,
) -> bool:  # fmt: skip
    """Whether a row of `want` (an estimator name) has every option of `options` (numbers
    compared as numbers); an option its params lack reads as its value in `defaults`, if any
    (params written before the option existed)."""
    if estimator != want:
        return False
    have = {**(defaults or {}), **(parse_options(params) if params != "-" else {})}
    return all(
        k in have and (have[k] == v or number(have[k]) == number(v)) for k, v in options.items()
    )


def rows(
    df: pd.DataFrame, want: str, options: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The rows of `df` that `matches` selects."""
    keep = [matches(p, e, want, options or {}, defaults)
            for p, e in zip(df["params"], df["estimator"], strict=True)]  # fmt: skip
    return df[pd.Series(keep, index=df.index, dtype=bool)]


def quality_at_end(res: Results) -> pd.DataFrame | None:
    """quality.csv's `layer == "total"` rows at each task's last checkpoint, over seeds
    (`reports.quality.over_seeds`); None without quality.csv."""
    quality = res.frame("quality.csv")
    if quality is None:
        return None
    return over_seeds(at_end(quality[quality["layer"] == "total"]), [*KEYS, "checkpoint"])


def seed_cosines(res: Results) -> pd.DataFrame | None:
    """quality.csv's `layer == "total"` rows at each task's last checkpoint, one per setting and
    seed (its mean cosine over the draws); None without quality.csv."""
    quality = res.frame("quality.csv")
    if quality is None:
        return None
    return at_end(quality[quality["layer"] == "total"])


def per_seed(q: pd.DataFrame, task: str, estimator: str) -> dict[int, float]:
    """seed -> cosine of `estimator`'s first setting on `task` (`seed_cosines` rows)."""
    found = q[(q["task"] == task) & (q["estimator"] == estimator)]
    if found.empty:
        return {}
    first = found[found["params"] == found["params"].iloc[0]]
    return {int(s): float(c) for s, c in zip(first["seed"], first["cosine"], strict=True)}


def paired(a: dict[int, float], b: dict[int, float], scale: float = 1.0) -> Estimate | None:
    """a minus scale × b, paired by seed (the same checkpoint and batches), with its 95%
    Student-t interval over the seeds both have; None without a common seed."""
    common = sorted(set(a) & set(b))
    return mean_interval([a[s] - scale * b[s] for s in common]) if common else None


def validation_size(res: Results, task: str) -> int | None:
    """The task's validation examples, from the manifest (None in folders written before it
    said)."""
    value = res.task_info(task, "n_val")
    return None if value is None else int(value)


def cosine(row: Mapping[str, Any]) -> Estimate:
    """A `quality_at_end` row's cosine: median over seeds, the envelope of the seeds' intervals."""
    return Estimate(float(row["cosine"]), float(row["cosine_lo"]), float(row["cosine_hi"]),
                    seeds(int(row["seeds"])))  # fmt: skip


def place(task: str, params: str, several: bool) -> str:
    """Where a check is: the task, with the setting's params when the task has several."""
    return f"{task} ({params})" if several else task
