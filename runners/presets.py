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
    """What a sweep runs unless flags say otherwise."""

    name: str
    description: str
    tasks: tuple[str, ...]
    estimators: tuple[str, ...]  # estimator specs; "all" in the file means every registered one
    seeds: int
    measure: tuple[str, ...]


def _folder() -> resources.abc.Traversable:
    return resources.files("runners") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(
        p.name.removesuffix(".toml") for p in _folder().iterdir() if p.name.endswith(".toml")
    )


def load_preset(name: str) -> Preset:
    """Read preset `name`; "all" estimators resolves to every registered estimator."""
    if name not in preset_names():
        raise PresetError(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
    data = tomllib.loads((_folder() / f"{name}.toml").read_text())
    estimators = data["estimators"]
    return Preset(
        name=name,
        description=data["description"],
        tasks=tuple(data["tasks"]),
        estimators=tuple(registry.names() if estimators == "all" else estimators),
        seeds=int(data["seeds"]),
        measure=tuple(data["measure"]),
    )
