"""Every task the suite knows, by name.

Targets of the embedded tasks were calibrated with `python -m runners.calibrate` (backprop at
the task's default rate, 5 seeds, on this project's 2-core development CPU): each target is a
round number a little under backprop's median final validation accuracy within the budget.
The file-backed tasks could not be calibrated there (their data is not on that machine); their
targets are set a little under what backprop reaches with such models, and say so.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from torch import nn

from tasks.errors import TaskError
from tasks.models import MLP, BagNet, ViT
from tasks.spec import SpecError, format_options, parse_options, split_spec
from tasks.task import Task

_ADAM_GRID = (3e-4, 1e-3, 3e-3)


def _calibrated(median: float, low: float, high: float) -> str:
    return (
        f"calibrated: backprop's final val acc over 5 seeds had median {median:.3f} "
        f"(range {low:.3f}-{high:.3f}); target = largest multiple of 0.02 at least 0.01 below"
    )


_NOT_CALIBRATED = "not calibrated here (no copy of the data on the development machine): {why}"


def _tabular(name: str, dataset: str, features: int, target: float, note: str) -> Task:
    """The blog post's 2-layer MLP with 10 hidden units on a small tabular set."""
    return Task(
        name=name,
        description=f"2-layer MLP (10 hidden units) on {dataset}, the SVD blog post's model",
        model=partial(MLP, features, 2, width=10, depth=1),
        dataset=dataset,
        target_acc=target,
        target_note=note,
        steps=300,
        batch_size=64,
        eval_every=25,
        lr=1e-2,
        lr_grid=(3e-3, 1e-2, 3e-2),
    )


def _files(
    name: str,
    description: str,
    model: Callable[[], nn.Module],
    dataset: str,
    target: float,
    why: str,
) -> Task:
    return Task(
        name=name,
        description=description,
        model=model,
        dataset=dataset,
        target_acc=target,
        target_note=_NOT_CALIBRATED.format(why=why),
        steps=10_000,
        batch_size=128,
        eval_every=500,
        lr=1e-3,
        lr_grid=_ADAM_GRID,
    )


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            name="mlp-mnist1d",
            description="MLP 40-128-128-128-10 (ReLU) on MNIST-1D, the W-perp paper's setting",
            model=partial(MLP, 40, 10, width=128, depth=3),
            dataset="mnist1d",
            target_acc=0.62,
            target_note=_calibrated(0.63, 0.602, 0.653),
            steps=3000,
            batch_size=128,
            eval_every=100,
            lr=1e-3,
            lr_grid=_ADAM_GRID,
        ),
        Task(
            name="bagnet-digits",
            description="BagNet (5x5 receptive field, width 64) on scikit-learn digits (8x8)",
            model=partial(BagNet, 1, 10, width=64, receptive_field=5),
            dataset="digits",
            target_acc=0.94,
            target_note=_calibrated(0.967, 0.961, 0.975),
            steps=1000,
            batch_size=64,
            eval_every=50,
            lr=1e-3,
            lr_grid=_ADAM_GRID,
        ),
        Task(
            name="vit-digits",
            description="ViT (dim 64, depth 4, 4 heads, 2x2 patches) on scikit-learn digits (8x8)",
            model=partial(ViT, 8, 2, 1, 10),
            dataset="digits",
            target_acc=0.94,
            target_note=_calibrated(0.958, 0.944, 0.981),
            steps=800,
            batch_size=64,
            eval_every=50,
            lr=1e-3,
            lr_grid=_ADAM_GRID,
        ),
        _tabular("mlp-breast-cancer", "breast-cancer", 30, 0.96, _calibrated(0.974, 0.965, 0.974)),
        _tabular("mlp-diabetes", "diabetes", 10, 0.7, _calibrated(0.719, 0.719, 0.742)),
        _tabular("mlp-synthetic20", "synthetic20", 20, 0.86, _calibrated(0.87, 0.825, 0.895)),
        _tabular("mlp-digits-1vr", "digits-1-vs-rest", 64, 0.98, _calibrated(0.992, 0.989, 0.994)),
        _files(
            "mlp-mnist",
            "MLP 784-128-128-128-10 (ReLU) on MNIST",
            partial(MLP, 784, 10, width=128, depth=3),
            "mnist",
            0.97,
            "MLPs of this size reach about 0.98 with Adam",
        ),
        _files(
            "mlp-fashion-mnist",
            "MLP 784-128-128-128-10 (ReLU) on Fashion-MNIST",
            partial(MLP, 784, 10, width=128, depth=3),
            "fashion-mnist",
            0.87,
            "MLPs of this size reach about 0.88-0.89 with Adam",
        ),
        _files(
            "mlp-cifar10",
            "MLP 3072-128-128-128-10 (ReLU) on CIFAR-10, the W-perp paper's second data set",
            partial(MLP, 3072, 10, width=128, depth=3),
            "cifar10",
            0.45,
            "MLPs of this size reach about 0.50 with Adam",
        ),
        _files(
            "bagnet-cifar10",
            "BagNet (9x9 receptive field, width 128) on CIFAR-10",
            partial(BagNet, 3, 10, width=128, receptive_field=9),
            "cifar10",
            0.55,
            "patch-bag models with 9x9 patches reach about 0.60",
        ),
        _files(
            "vit-cifar10",
            "ViT (dim 64, depth 4, 4 heads, 4x4 patches) on CIFAR-10, the control-variate paper",
            partial(ViT, 32, 4, 3, 10),
            "cifar10",
            0.60,
            "small ViTs trained from scratch reach about 0.65",
        ),
    )
}


def get_task(spec: str) -> Task:
    """The task named by `spec`: a name, optionally with model options (`mlp-mnist1d:width=512`).

    Options are keyword arguments of the task's model (`MLP`, `BagNet` or `ViT`), so one task
    runs at several widths or depths; the resulting task is named by its canonical spec.
    """
    name, rest = split_spec(spec)
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    task = TASKS[name]
    if not rest:
        return task
    factory = task.model
    options = [p.name for p in inspect.signature(factory).parameters.values()
               if p.kind is p.KEYWORD_ONLY]  # fmt: skip
    try:
        given = parse_options(rest)
    except SpecError as exc:
        raise TaskError(f"{name}: model options {exc}; valid: {', '.join(options)}") from None
    overrides: dict[str, int | float | str] = {}
    for key, text in given.items():
        if key not in options:
            raise TaskError(
                f"{name}: unknown model option {f'{key}={text}'!r}; valid: {', '.join(options)}"
            )
        overrides[key] = _number(text)
    canonical = f"{name}:" + format_options(dict(sorted(overrides.items())))
    variant = replace(task, name=canonical, model=partial(factory, **overrides))
    try:
        if variant.n_params < 1:  # builds the model once, on the meta device, to check options
            raise ValueError("the model has no trainable parameters")
    except (ValueError, TypeError) as exc:
        raise TaskError(f"{canonical}: {exc}") from None
    return variant


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
