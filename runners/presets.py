"""Presets: named sweep configurations, stored as TOML files in `runners/presets/`."""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from estimators import registry
from runners.executors import EXECUTORS


class PresetError(ValueError):
    """An unknown preset name, or a preset file that is not TOML of the preset's form."""


@dataclass(frozen=True)
class Group:
    """Tasks x estimator specs x measurements, crossed: the runs of one `[[also]]` table."""

    tasks: tuple[str, ...]
    estimators: tuple[str, ...]
    measure: tuple[str, ...]
    draws: int | None = None  # its quality cells' draws (None: the sweep's)
    optional: bool = False  # tasks whose data is absent are left out, not an error
    seeds: int | None = None  # its seeds 0..seeds-1 (None: the sweep's)


@dataclass(frozen=True)
class Preset:
    """What a sweep runs unless flags say otherwise.

    estimators: specs; "all" in the file means every estimator the package ships, at defaults.
        A `[grids]` table adds one spec per point of each estimator's parameter grid
        (`fg-wperp = { k = [1, 10] }` adds `fg-wperp:k=1` and `fg-wperp:k=10`).
    tune: pick each estimator's rate from its task's grid on a tuning seed before the seeds run.
    steps: a step budget for every task, or a `[steps]` table of budgets by task name (absent, or
        a task the table does not name: the task's own).
    seconds: a wall-clock cap on each training run (training steps only), or a `[seconds]` table
        of caps by task name (absent, or a task the table does not name: none).
    also: runs beyond the cross of tasks x estimators x measurements, an `[[also]]` table per
        group: its own `tasks`, `estimators` (and `grids`) and `measure` (train, quality or
        cost), crossed in turn (claims needing a task for two estimators only), and optionally
        its own `draws` for its quality cells (a heavy-tailed estimator's bias test needs more)
        and `seeds` (a claim whose interval needs more seeds than the rest);
        `optional = true`: its tasks whose data sets are absent (no `--data-root`, or files not
        there) are left out, saying so, instead of stopping the sweep (MNIST / CIFAR-10 runs a
        preset adds when the data is at hand). Dropped when `--tasks`, `--estimators` or
        `--measure` is given.
    studies: studies (`python -m runners.study` specs) the sweep runs into its folder after its
        cells; dropped like `also`.
    scaling: model families for the `scaling` measurement, a `[scaling]` table of model options
        by task, one of them a list of sizes (`mlp-mnist1d = { depth = [4], width = [128, 512] }`;
        `measurements.scaling`).
    executor, jobs: `--executor` and `--jobs` (`runners.executors`) unless those flags are given.
    slurm: a `[slurm]` table of the `--slurm-*` flags' values by their names (`SLURM_KEYS`: a
        preset for a cluster, `partition = "gpu"`, `option = ["account=proj"]`); flags win.
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
    seconds: float | dict[str, float] | None = None
    also: tuple[Group, ...] = ()
    studies: tuple[str, ...] = ()
    scaling: dict[str, dict[str, list[object]]] | None = None
    executor: str | None = None
    jobs: int | None = None
    slurm: dict[str, object] | None = None


def _folder() -> resources.abc.Traversable:
    return resources.files("runners") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(
        p.name.removesuffix(".toml") for p in _folder().iterdir() if p.name.endswith(".toml")
    )


# Each key of a preset file: the types it may have, and what the error says it wants.
_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "description": ((str,), "a string"),
    "tasks": ((list,), "a list of task names"),
    "estimators": ((list, str), 'a list of estimator specs or "all"'),
    "seeds": ((int,), "an integer"),
    "measure": ((list,), "a list of measurements"),
    "draws": ((int,), "an integer"),
    "tune": ((bool,), "true or false"),
    "steps": ((int, dict), "an integer or a table of integers by task"),
    "seconds": ((int, float, dict), "a number or a table of numbers by task"),
    "grids": ((dict,), "a table of parameter grids by estimator"),
    "scaling": ((dict,), "a table of model families by task (measurements.scaling)"),
    "executor": ((str,), f"one of {', '.join(EXECUTORS)}"),
    "jobs": ((int,), "an integer"),
    "slurm": ((dict,), "a table of Slurm options"),
    "also": ((list,), "a list of [[also]] tables (tasks, estimators, measure, grids)"),
    "studies": ((list,), "a list of study specs (python -m runners.study --list)"),
}
_OPTIONAL = ("steps", "seconds", "grids", "scaling", "executor", "jobs", "slurm", "also", "studies")
# The keys of an `[[also]]` table, and the measurements it may name.
ALSO_KEYS = ("tasks", "estimators", "measure", "grids", "draws", "optional", "seeds")
ALSO_MEASURES = ("train", "quality", "cost")
# The `[slurm]` table's keys: the `--slurm-KEY` flags' names and types.
SLURM_KEYS: dict[str, tuple[type, str]] = {
    "partition": (str, "a string"),
    "gpus": (int, "an integer"),
    "cpus": (int, "an integer"),
    "time": (int, "an integer (minutes)"),
    "parallelism": (int, "an integer"),
    "option": (list, 'a list of "KEY=VALUE" or "KEY" strings (extra #SBATCH options)'),
}


def _read(name: str) -> tuple[str, dict[str, Any]]:
    """A preset's name and TOML data: a shipped preset, or a `.toml` file given by path."""
    if name.endswith(".toml"):
        try:
            text = Path(name).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise PresetError(f"cannot read preset file {name}: {exc}") from None
        name = Path(name).stem
    elif name in preset_names():
        text = (_folder() / f"{name}.toml").read_text()
    else:
        raise PresetError(
            f"unknown preset {name!r}; valid: {', '.join(preset_names())} (or a FILE.toml)"
        )
    try:
        return name, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"preset {name} is not valid TOML: {exc}") from None


def _check(name: str, data: Mapping[str, object]) -> None:
    """Raise `PresetError` for a missing key or a value of the wrong type (other keys are
    for the measurements that read them)."""
    for key, (types, wants) in _KEYS.items():
        if key not in data:
            if key not in _OPTIONAL:
                raise PresetError(f"preset {name} lacks {key!r} ({wants})")
            continue
        value = data[key]
        bad = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if isinstance(value, list):
            kind = dict if key == "also" else str
            bad |= not all(isinstance(v, kind) for v in value)
        if isinstance(value, dict) and key != "slurm":
            inner = {"steps": (int,), "seconds": (int, float)}.get(key, (dict,))
            bad |= not all(isinstance(v, inner) and not isinstance(v, bool) for v in value.values())
        if isinstance(value, str) and key == "estimators":
            bad |= value != "all"
        if isinstance(value, str) and key == "executor":
            bad |= value not in EXECUTORS
        if bad:
            raise PresetError(f"preset {name}: {key!r} must be {wants}, got {value!r}"[:200])
    slurm = data.get("slurm", {})
    assert isinstance(slurm, Mapping)  # checked above
    _check_slurm(name, slurm)
    also = data.get("also", [])
    assert isinstance(also, list)  # checked above
    for i, table in enumerate(also, 1):
        _check_also(f"preset {name}: [[also]] table {i}", table)


def _check_also(where: str, table: Mapping[str, object]) -> None:
    """Raise `PresetError` for an `[[also]]` table that lacks a key, has one it should not, or a
    value of the wrong type."""
    for key in table:
        if key not in ALSO_KEYS:
            raise PresetError(f"{where}: unknown key {key!r}; valid: {', '.join(ALSO_KEYS)}")
    for key in ALSO_KEYS[:3]:
        value = table.get(key, [] if key == "estimators" and table.get("grids") else None)
        empty = not value and key != "estimators"  # a group may name its settings by grids only
        if not isinstance(value, list) or empty or not all(isinstance(v, str) for v in value):
            raise PresetError(f"{where}: {key!r} must be a non-empty list of names, got {value!r}"
                              [:200])  # fmt: skip
    if not table.get("estimators") and not table.get("grids"):
        raise PresetError(f"{where}: name its settings in 'estimators' or 'grids'")
    measures = table["measure"]
    assert isinstance(measures, list)  # checked above
    for m in measures:
        if m not in ALSO_MEASURES:
            raise PresetError(f"{where}: measurement {m!r}; valid: {', '.join(ALSO_MEASURES)}")
    for key, least in (("draws", 2), ("seeds", 1)):
        value = table.get(key, least)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise PresetError(f"{where}: {key!r} must be an integer >= {least}, got {value!r}"
                              [:200])  # fmt: skip
    if not isinstance(table.get("optional", False), bool):
        raise PresetError(f"{where}: 'optional' must be true or false")
    grids = table.get("grids", {})
    if not isinstance(grids, dict) or not all(isinstance(g, dict) for g in grids.values()):
        raise PresetError(f"{where}: 'grids' must be a table of parameter grids by estimator")


def _check_slurm(name: str, table: Mapping[str, object]) -> None:
    """Raise `PresetError` for a `[slurm]` key that is not a `--slurm-*` flag's, or a value of
    the wrong type."""
    for key, value in table.items():
        if key not in SLURM_KEYS:
            raise PresetError(
                f"preset {name}: unknown key {key!r} in [slurm]; valid: {', '.join(SLURM_KEYS)}"
            )
        kind, wants = SLURM_KEYS[key]
        bad = not isinstance(value, kind) or isinstance(value, bool)
        if isinstance(value, list):
            bad |= not all(isinstance(v, str) for v in value)
        if bad:
            message = f"preset {name}: [slurm] {key!r} must be {wants}, got {value!r}"
            raise PresetError(message[:200])


def load_preset(name: str) -> Preset:
    """Read preset `name` (or the preset file `name`, ending in `.toml`)."""
    name, data = _read(name)
    _check(name, data)
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
        also=tuple(_also(t) for t in data.get("also", [])),
        studies=tuple(data.get("studies", [])),
        scaling=data.get("scaling"),
        executor=data.get("executor"),
        jobs=data.get("jobs"),
        slurm=data.get("slurm"),
    )


def _also(table: Mapping[str, Any]) -> Group:
    """An `[[also]]` table (checked) as a group: its estimators, then its grids' specs."""
    specs = [*table.get("estimators", []), *grid_specs(table.get("grids", {}))]
    return Group(tuple(table["tasks"]), tuple(dict.fromkeys(specs)), tuple(table["measure"]),
                 table.get("draws"), bool(table.get("optional", False)),
                 table.get("seeds"))  # fmt: skip


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
