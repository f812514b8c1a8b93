"""Presets: named sweep configurations, stored as TOML files in `runners/presets/`."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

from estimators import registry


class PresetError(ValueError):
    """An unknown preset name."""


@dataclass(frozen=True)
class Preset:
    """What a sweep runs unless flags say otherwise.

    estimators: specs; "all" in the file means every estimator the package ships, at defaults.
    tune: pick each estimator's rate from its task's grid on a tuning seed before the seeds run.
    steps: a step budget for every task (absent: each task's own).
    """

    name: str
    description: str
    tasks: tuple[str, ...]
    estimators: tuple[str, ...]
    seeds: int
    measure: tuple[str, ...]
    draws: int
    tune: bool
    steps: int | None = None


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
    return Preset(
        name=name,
        description=data["description"],
        tasks=tuple(data["tasks"]),
        estimators=tuple(registry.shipped_names() if estimators == "all" else estimators),
        seeds=int(data["seeds"]),
        measure=tuple(data["measure"]),
        draws=int(data["draws"]),
        tune=bool(data["tune"]),
        steps=data.get("steps"),
    )
