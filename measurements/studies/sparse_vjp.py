"""sparse-vjp: is the saving real? Backward and step time against FLOPs, and per-layer variance.

    python -m runners.study sparse-vjp[:repeats=20,draws=64,keep=0.25] --out DIR [--threads N]

Cost rows (`sparse_vjp_cost.csv`): for each model (`tasks`, each with its batch size in
`batches`, 0 for the task's own: by default the task's own model, then a wider one with a larger
batch to show the trend) dense backprop and sparse-vjp at `keep` 0.25 in each of `variants`
(`axis-sketch`: row and unit sparsity with the uniform sketch, row with minvar; `shared-outer`,
one example subset per step for all layers, the estimator's default) run the same
forward + backward on the same batch from the same seeded model. Each configuration is timed as
two ways, its step (forward + backward to every parameter) and its backward alone (on a graph
built once and kept, `retain_graph`, so every call replays the same sketch), all of them
interleaved in one `measurements.timing.interleaved` run (warm-up first, then the median of
`repeats` rounds); one call of a way runs enough consecutive calls to last about `block_ms`
(counted from a short interleaved run first), so sub-millisecond steps are not lost in timer
and scheduler noise. FLOPs come from `FlopCounterMode` (`measurements.flops.count_flops`): the
backward's are the estimate's minus a plain forward's. A row gives dense backprop's backward
time (ms) and the sparse-vjp over backprop ratios of backward time, backward FLOPs, step time
and step FLOPs, and the step time ratio over the step FLOP ratio. Goals (issue 6): backward
time <= 0.45x dense (ideal 0.25x) and step time ratio <= 1.25x the step FLOP ratio.

Variance rows (`sparse_vjp_variance.csv`): per-layer relative variance
sum_r ||g_r - mean||^2 / ((R - 1) ||g||^2) (`measurements.gradient_stats`, layer `total` for the
whole gradient) of R = `draws` draws at initialisation (seed 0, the task's batch size) for each
of `variance_tasks` and `variance_variants` (uniform vs minvar, row and unit, and the shared
outer subset) at `keep` 0.25.

Task specs take at most one model option here (`mlp-mnist1d:width=1024`): a comma would end the
setting. The `--device` flag chooses the device; `--threads` the CPU threads.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from estimators import Batch, make_estimator, trainable_parameters
from estimators.sparse_vjp import SparseVJP
from measurements.flops import count_flops
from measurements.gradient_stats import quality_by_layer
from measurements.study import Rows, Study, StudyError
from measurements.timing import interleaved
from tasks import Task, get_task

COST = "sparse_vjp_cost.csv"
VARIANCE = "sparse_vjp_variance.csv"
DENSE = "backprop"
SHARED = "shared"  # the `axis` of a variant whose one example subset is shared by all layers


# Shared with `measurements.studies.sparse_vjp_tradeoff`.
def sparse_spec(keep: float, axis: str, sketch: str) -> str:
    """The sparse-vjp estimator at a keep fraction, axis and sketch; axis `shared` is one example
    subset per step for every layer (share=true), the others independent per-layer sketches."""
    if axis == SHARED:
        return f"sparse-vjp:sketch={sketch},share=true,keep={keep:g}"
    return f"sparse-vjp:sketch={sketch},axis={axis},share=false,keep={keep:g}"


def variant(text: str) -> tuple[str, str]:
    """`"row-minvar"` -> ("row", "minvar"): a sparse-vjp axis (or `shared`) and sketch."""
    axis, dash, sketch = text.partition("-")
    if not dash or not axis or not sketch:
        raise StudyError(f"sparse-vjp: a variant is axis-sketch (e.g. row-minvar), got {text!r}")
    return axis, sketch


def where(device: torch.device) -> dict[str, Any]:
    """The columns saying where a row was measured."""
    return {"device": str(device), "threads": torch.get_num_threads()}


@dataclass(frozen=True)
class Settings:
    """`batches` pairs with `tasks` (0: the task's own); variants are `axis-sketch`."""

    tasks: tuple[str, ...] = (
        "mlp-mnist1d", "mlp-mnist1d:width=1024", "vit-digits", "vit-digits:dim=256",
    )  # fmt: skip
    batches: tuple[int, ...] = (0, 512, 0, 256)
    keep: float = 0.25
    variants: tuple[str, ...] = ("row-uniform", "unit-uniform", "row-minvar", "shared-outer")
    repeats: int = 20
    warmup: int = 3
    block_ms: float = 50.0
    variance_tasks: tuple[str, ...] = ("mlp-mnist1d", "vit-digits")
    variance_variants: tuple[str, ...] = (
        "row-uniform", "row-minvar", "unit-uniform", "unit-minvar", "shared-outer",
    )  # fmt: skip
    draws: int = 64


def _setup(task: Task, batch_size: int, device: torch.device) -> tuple[nn.Module, Batch]:
    """The task's model seeded with 0 and the first `batch_size` training examples (0: the
    task's batch size), on `device`."""
    data = task.load()
    size = batch_size or task.batch_size
    torch.manual_seed(0)
    return task.model().to(device), (
        data.x_train[:size].to(device),
        data.y_train[:size].to(device),
    )


@dataclass(frozen=True)
class Contender:
    """One configuration on one model and batch: its step and its backward, and their FLOPs."""

    step: Callable[[], object]  # a forward + backward to every parameter
    backward: Callable[[], object]  # the backward alone, on a graph built once and kept
    forward_flops: int
    step_flops: int

    @classmethod
    def create(cls, spec: str, model: nn.Module, task: Task, batch: Batch) -> Contender:
        est = make_estimator(spec).bind(model, task.loss)
        params = list(trainable_parameters(model).values())
        x, y = batch
        gen = torch.Generator(device=x.device).manual_seed(0)

        def routing() -> AbstractContextManager[None]:
            return est.sketching(gen) if isinstance(est, SparseVJP) else nullcontext()

        def forward() -> torch.Tensor:
            with routing():
                return task.loss(model(x), y).mean()

        def step() -> object:
            return torch.autograd.grad(forward(), params)

        def plain_forward() -> None:
            with torch.no_grad():
                forward()

        loss = forward()

        def backward() -> object:
            return torch.autograd.grad(loss, params, retain_graph=True)

        step_flops = count_flops(lambda: est.estimate(batch, gen))
        return cls(step, backward, count_flops(plain_forward), step_flops)


def _block(fn: Callable[[], object], calls: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(calls):
            fn()

    return run


def _cost_rows(
    name: str, batch_size: int, s: Settings, device: torch.device
) -> list[dict[str, Any]]:
    task = get_task(name)
    model, batch = _setup(task, batch_size, device)
    configs = {sparse_spec(s.keep, *variant(text)): variant(text) for text in s.variants}
    contenders = {spec: Contender.create(spec, model, task, batch) for spec in [DENSE, *configs]}
    probe = interleaved(
        {spec: c.step for spec, c in contenders.items()}, device, warmup=s.warmup, repeats=3
    )
    calls = max(1, round(s.block_ms / 1e3 / min(probe.median(spec) for spec in contenders)))
    ways = {f"{spec} {part}": _block(getattr(c, part), calls)
            for spec, c in contenders.items() for part in ("step", "backward")}  # fmt: skip
    times = interleaved(ways, device, warmup=s.warmup, repeats=s.repeats, min_repeats=s.repeats)
    dense = contenders[DENSE]
    rows = []
    for spec, (axis, sketch) in configs.items():
        c = contenders[spec]
        step_time = times.ratio(f"{spec} step", f"{DENSE} step")
        step_flops = c.step_flops / dense.step_flops
        bwd_flops = (c.step_flops - c.forward_flops) / (dense.step_flops - dense.forward_flops)
        rows.append({
            "task": task.name, "batch": len(batch[0]), "keep": s.keep, "axis": axis,
            "sketch": sketch, **where(device),
            "dense_bwd_ms": 1e3 * times.median(f"{DENSE} backward") / calls,
            "bwd_time_ratio": times.ratio(f"{spec} backward", f"{DENSE} backward"),
            "bwd_flop_ratio": bwd_flops, "step_time_ratio": step_time,
            "step_flop_ratio": step_flops, "time_flop_ratio": step_time / step_flops,
            "repeats": times.rounds, "calls": calls,
        })  # fmt: skip
    return rows


def _variance_rows(name: str, s: Settings, device: torch.device) -> list[dict[str, Any]]:
    task = get_task(name)
    model, batch = _setup(task, 0, device)
    exact = make_estimator(DENSE).bind(model, task.loss).estimate(batch, _noise(device)).grads
    rows = []
    for text in s.variance_variants:
        axis, sketch = variant(text)
        est = make_estimator(sparse_spec(s.keep, axis, sketch)).bind(model, task.loss)
        got = est.estimate_draws(batch, s.draws, _noise(device)).grads
        rows += [{"task": task.name, "layer": layer, "keep": s.keep, "axis": axis,
                  "sketch": sketch, "draws": s.draws, "device": str(device),
                  "rel_variance": q["rel_variance"]}
                 for layer, q in quality_by_layer(got, exact).items()]  # fmt: skip
    return rows


def _noise(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(0)


def measure(s: Settings, device: torch.device) -> Rows:
    if len(s.batches) != len(s.tasks):
        raise StudyError(f"sparse-vjp: {len(s.tasks)} tasks but {len(s.batches)} batches")
    for text in (*s.variants, *s.variance_variants):  # checked before minutes of work
        variant(text)
    cost = [r for t, b in zip(s.tasks, s.batches, strict=True) for r in _cost_rows(t, b, s, device)]
    variance = [r for t in s.variance_tasks for r in _variance_rows(t, s, device)]
    return {COST: cost, VARIANCE: variance}


STUDY = Study(
    name="sparse-vjp",
    summary="sparse-vjp backward and step time against FLOPs, and per-layer variance, keep 0.25",
    files=(COST, VARIANCE),
    settings=Settings,
    smoke=Settings(
        tasks=("mlp-mnist1d:width=16",),
        batches=(8,),
        variants=("row-uniform", "row-minvar"),
        repeats=2,
        warmup=1,
        block_ms=1.0,
        variance_tasks=("vit-digits:depth=1",),
        variance_variants=("row-uniform", "unit-minvar", "shared-outer"),
        draws=4,
    ),
    measure=measure,
)
