"""Presets: named sweep configurations, stored as TOML files in `runners/presets/`."""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from estimators import registry


class PresetError(ValueError):
    """An unknown preset name."""


@dataclass(frozen=True)
class Preset:
    """What a sweep runs unless flags say otherwise.

    estimators: specs; "all" in the file means every estimator the package ships, at defaults.
        A `[grids]` table adds one spec per point of each estimator's parameter grid
        (`fg-wperp = { k = [1, 10] }` adds `fg-wperp:k=1` and `fg-wperp:k=10`).
    tune: pick each estimator's rate from its task's grid on a tuning seed before the seeds run.
    steps: a step budget for every task, or a `[steps]` table of budgets by task name (absent, or
        a task the table does not name: the task's own).
    seconds: a wall-clock cap on each training run (training steps only; absent: none).
    """

    name: str
    description: str
    tasks: tuple[str, ...]
    estimators: tuple[str, ...]
    seeds: int
    measure: tuple[str, ...]
    draws: int
    tune: bool
    steps: int | dict[str, int] | None = None
    seconds: float | None = None


def _folder() -> resources.abc.Traversable:
    return resources.files("runners") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(
        p.name.removesuffix(".toml") for p in _folder().iterdir() if p.name.endswith(".toml")
    )


def load_preset(name: str) -> Preset:
    """Read preset `name`."""
    if name not in preset_names():
        raise PresetError(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
    data = tomllib.loads((_folder() / f"{name}.toml").read_text())
    estimators = data["estimators"]
    listed = list(registry.shipped_names() if estimators == "all" else estimators)
    return Preset(
        name=name,
        description=data["description"],
        tasks=tuple(data["tasks"]),
        estimators=tuple(dict.fromkeys(listed + grid_specs(data.get("grids", {})))),
        seeds=int(data["seeds"]),
        measure=tuple(data["measure"]),
        draws=int(data["draws"]),
        tune=bool(data["tune"]),
        steps=data.get("steps"),
        seconds=data.get("seconds"),
    )


def grid_specs(grids: Mapping[str, Mapping[str, Sequence[object]]]) -> list[str]:
    """One spec per point of each estimator's grid (the cartesian product of its values)."""
    specs = []
    for name, grid in grids.items():
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            specs.append(
                f"{name}:" + ",".join(f"{k}={_text(v)}" for k, v in zip(keys, values, strict=True))
            )
    return specs


def _text(value: object) -> str:
    """A TOML value as a spec writes it (booleans lower-case, like the command line)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
