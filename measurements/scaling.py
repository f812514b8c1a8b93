"""Scaling: the cost protocol (`measurements.cost`) on a family of models of growing size.

A family is a task with some model options fixed and one, the size axis, taking several values:
`{"mlp-mnist1d": {"depth": [4], "width": [128, 512, 2048]}}` is the 4-layer MLP at three widths,
`{"vit-digits": {"dim": [64, 128, 256]}}` the ViT at three embedding widths. Every size is one
task spec (`mlp-mnist1d:depth=4,width=512`) and every estimator at every size is one cost cell:
its FLOP, time and memory ratios against backprop measured interleaved in one process, on the
same batches (the task's own batch size at every size), on the device the sweep runs on. A row
of `scaling.csv` is that cell's `cost.csv` row with the family, the axis and the size beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from measurements.context import Context
from measurements.cost import measure_cost
from tasks import TaskError, get_task
from tasks.spec import format_options, parse_options, split_spec

Grid = Mapping[str, Mapping[str, Sequence[object]]]


class ScalingError(TaskError):
    """A scaling table that does not name one size axis per family."""


def size_axis(options: Mapping[str, Sequence[object]]) -> str:
    """The option that takes two or more values (the only one), or the only option given."""
    varying = [k for k, v in options.items() if len(v) > 1]
    if len(varying) > 1:
        raise ScalingError(f"a scaling family varies one model option, got {', '.join(varying)}")
    if varying:
        return varying[0]
    if len(options) == 1:
        return next(iter(options))
    raise ScalingError("a scaling family needs one model option with two or more values")


def sized_tasks(grid: Grid) -> list[tuple[str, str]]:
    """(task spec, size axis) for every size of every family, smallest size first."""
    out = []
    for base, options in grid.items():
        axis = size_axis(options)
        keys = list(options)
        for values in itertools.product(*(sorted(options[k], key=_number) for k in keys)):
            spec = f"{base}:" + format_options(dict(zip(keys, values, strict=True)))
            out.append((get_task(spec).name, axis))
    return out


def _number(value: object) -> float:
    return float(str(value))


def family_of(task: str, axis: str) -> tuple[str, int | float]:
    """A sized task's family (the task with every option but the axis) and its size (an integer
    size as an int, so `scaling.csv` writes 512, not 512.0)."""
    base, rest = split_spec(task)
    options = parse_options(rest)
    if axis not in options:
        raise ScalingError(f"task {task!r} has no option {axis!r}")
    size = float(options.pop(axis))
    size = int(size) if size.is_integer() else size
    return (f"{base}:{format_options(options)}" if options else base), size


def measure_scaling(task: str, axis: str, spec: str, ctx: Context) -> list[dict[str, Any]]:
    """The `scaling.csv` row of estimator `spec` at the size `task` (axis `axis`)."""
    family, size = family_of(task, axis)
    rows = measure_cost(get_task(task), spec, ctx)
    return [{"family": family, "axis": axis, "size": size, **row} for row in rows]
