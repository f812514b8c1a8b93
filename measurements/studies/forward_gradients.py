"""Forward-gradient estimators: cost, memory, quality after training, Newton-Schulz vs SVD, draws.

    python -m runners.study forward-gradients[:tables=cost+ns,repeats=7,quality_draws=256]
        [--device cpu|cuda|auto] [--threads N] --out DIR

`tables` picks any of cost, memory, quality, ns, draws (default: all five); quality writes two
files. Each table is one file of tidy rows (below). Every timing is a ratio to a baseline
measured in the same run by `measurements.timing.interleaved`: one warm-up round (`warmup`),
then rounds of one call of each way, the order rotating from round to round, the median of
`repeats` rounds (cost) or `slow_repeats` (ns, draws: seconds-long calls); the cost table's
rounds stop once `budget_s` is spent after 3. `--device` applies to the cost and draws tables;
the others run on the CPU. Task specs with several model options separate them by `;`
(`mlp-mnist1d:width=1024;depth=4`), since `,` separates the study's settings; `batch` (0: each
task's own batch size) sets the cost, memory-task, quality and draws batches.

cost (`fg_cost.csv`): on mlp-mnist1d (batch 128), vit-digits (batch 64) and the issue's
reference MLP (mlp-mnist1d with 4 hidden layers of 1024, batch 128), each estimator's tangent
pass alone (`tangent_pass`: one forward carrying the tangents, per-example derivatives read;
`pass_ratio`) and its whole estimate (pass + outer products or direction replay;
`estimate_ratio`) against a plain forward (model and per-example loss, no grad; `forward_ms`).
`flop_ratio`: the estimate's FLOPs over the forward's (`measurements.flops.count_flops`).
`noise_share`: the part of the pass's CPU time drawing guesses and directions (`fg-noise`
profiler range, i.e. `estimators.forward_mode.noise`); `pass_less_noise_ratio` is the pass ratio
times one minus that share. `subspace_share`: the part of the estimate's CPU time inside the SVD
or Newton-Schulz (`fg-subspace` range). Shares are profiled on the CPU only (NaN elsewhere). The
row "torch.func.jvp, weights" is `torch.func.jvp` as-is along N(0, I) directions over all
parameters drawn in the call, the reference for `fg-weight`'s pass (its ratio in `pass_ratio`).
Goals (issue 4): fg-activity pass <= 2.3x, fg-weight pass <= 3.5x.

memory (`fg_memory.csv`): `measurements.memory.peak_bytes` of one estimate on MLPs of depth 2
and 16 (width 256, batch 2048, so that activations outweigh weights) and on the three tasks,
beside backprop's; `params_grads_mb` is what the step must hold anyway. `created_mb` counts only
storages the step creates (outputs aliasing an input's storage are skipped): `StoragePeak` also
counts the parameters that `aten.t` views inside each Linear.

quality (`fg_quality.csv`, `fg_overlap.csv`): mlp-mnist1d trained by backprop for the task's
budget (`measurements.train.train`, seed 0), then R = `quality_draws` draws of each estimator on
a fixed batch (the first 128 training examples) against the exact gradient
(`measurements.gradient_stats.quality_by_layer`), per layer and total; and the subspace overlap
||V_k^T Q||_F^2 / k of fg-wperp-ns (defaults) with fg-wperp's SVD at that checkpoint, per guided
layer.

ns (`fg_ns.csv`): at width 512 and batch 512 (mlp-mnist1d:width=512 after 300 backprop steps,
seed 0), the top-k bases of every example's M = W diag(phi'(s)) at the first hidden layer: a
batched `torch.linalg.svd`, fg-wperp's basis (the same vectors from the Gram eigendecomposition)
and fg-wperp-ns (defaults), timed interleaved, with the overlaps with the SVD's subspace.

draws (`fg_draws.csv`): R = 64 draws in one `estimate_draws` call against 64 `estimate` calls
(`measurements.studies.quality_draws.draws_rows`, the columns of `quality_draws.csv`).

Left out for time (`cost_skip`, `draws_skip`, as `estimator@task`): fg-wperp (exact SVD) on the
width-1024 MLP in the cost table (minutes a call), and on vit-digits in the draws table (64
single draws, each with its per-token SVD); the W-perp estimators on the deep MLPs of the memory
table (2048 sites x 15 layers of per-example SVDs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from estimators import Batch, make_estimator
from estimators.consumers import DERIVATIVES, consumers
from estimators.forward_gradient import ForwardGradient
from estimators.newton_schulz import overlap
from measurements.flops import count_flops
from measurements.gradient_stats import quality_by_layer
from measurements.memory import StoragePeak, peak_bytes
from measurements.studies.quality_draws import SMOKE_TASK, draws_rows, skipped, task_batch, task_of
from measurements.study import Rows, Study, StudyError
from measurements.timing import interleaved
from measurements.train import Learner, Run, train
from tasks import Task
from tasks.task import cross_entropy

CPU = torch.device("cpu")
NAN = math.nan
FILES = {"cost": ("fg_cost.csv",), "memory": ("fg_memory.csv",),
         "quality": ("fg_quality.csv", "fg_overlap.csv"), "ns": ("fg_ns.csv",),
         "draws": ("fg_draws.csv",)}  # fmt: skip
COST_SPECS = ("fg-activity", "fg-activity:noise=rademacher", "fg-weight",
              "fg-weight:noise=rademacher", "fg-wt", "fg-wperp", "fg-wperp-ns")  # fmt: skip
JVP = "torch.func.jvp, weights"
FIVE = ("fg-weight", "fg-activity", "fg-wt", "fg-wperp", "fg-wperp-ns")
MLP_SPECS = ("backprop", "fg-weight", "fg-activity", "fg-wt")  # the memory table's deep MLPs
REFERENCE = "mlp-mnist1d:width=1024;depth=4"


@dataclass(frozen=True)
class Settings:
    """Defaults: the full run. Tuples are joined by `+`; task specs separate options by `;`."""

    tables: tuple[str, ...] = tuple(FILES)
    repeats: int = 7
    slow_repeats: int = 2
    warmup: int = 1
    budget_s: float = 60.0
    batch: int = 0
    cost_tasks: tuple[str, ...] = ("mlp-mnist1d", "vit-digits", REFERENCE)
    cost_estimators: tuple[str, ...] = COST_SPECS
    # 128 SVDs of 1024 x 1024 per guided layer take minutes a call on this CPU: not timed there
    cost_skip: tuple[str, ...] = (f"fg-wperp@{REFERENCE}",)
    memory_mlps: tuple[str, ...] = ("mlp-mnist1d:width=256;depth=2",
                                    "mlp-mnist1d:width=256;depth=16")  # fmt: skip
    memory_batch: int = 2048  # activations (2 MB a layer) outweigh the weights (0.25 MB a layer)
    memory_tasks: tuple[str, ...] = ("mlp-mnist1d", "vit-digits", "bagnet-digits")
    quality_task: str = "mlp-mnist1d"
    quality_steps: int = 0  # 0: the task's budget
    quality_draws: int = 256
    ns_task: str = "mlp-mnist1d:width=512"
    ns_steps: int = 300
    ns_sites: int = 512
    draws_tasks: tuple[str, ...] = ("mlp-mnist1d", "vit-digits")
    batched_draws: int = 64
    # 64 single draws with a per-token SVD each: minutes; see the mlp row
    draws_skip: tuple[str, ...] = ("fg-wperp@vit-digits",)


def _forward(model: nn.Module, batch: Batch) -> Tensor:
    with torch.no_grad():
        return cross_entropy(model(batch[0]), batch[1]).mean()


def _share(fn: Callable[[], object], inner: str) -> float:
    """Fraction of one call's CPU time spent inside the profiler range `inner`."""
    with torch.profiler.profile() as prof, torch.profiler.record_function("fg-call"):
        fn()
    totals = {e.key: e.cpu_time_total for e in prof.key_averages()}
    return totals.get(inner, 0.0) / totals["fg-call"]


def _jvp_pass(model: nn.Module, batch: Batch, gen: torch.Generator) -> Tensor:
    """`torch.func.jvp` as-is along N(0, I) directions over all parameters, drawn in the call
    (as `fg-weight` must, every step): the issue's reference for weight tangents."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    directions = {
        k: torch.randn(p.shape, generator=gen, device=p.device) for k, p in params.items()
    }

    def loss(p: dict[str, Tensor]) -> Tensor:
        return cross_entropy(torch.func.functional_call(model, p, (batch[0],)), batch[1]).mean()

    return torch.func.jvp(loss, (params,), (directions,))[1]


def _cost_rows(spec: str, s: Settings, device: torch.device) -> list[dict[str, Any]]:
    task = task_of(spec)
    torch.manual_seed(0)
    model = task.model().to(device)
    batch = task_batch(task, s.batch, device)
    gen = torch.Generator(device=device).manual_seed(0)
    forward = partial(_forward, model, batch)
    fns: dict[str, Callable[[], object]] = {"forward": forward}
    names = [n for n in ("backprop", *s.cost_estimators) if not skipped(n, spec, s.cost_skip)]
    ests = {n: make_estimator(n).bind(model, cross_entropy) for n in names}
    for n, est in ests.items():
        if isinstance(est, ForwardGradient):
            fns[f"{n} pass"] = partial(est.tangent_pass, batch, 1, gen)
        fns[n] = partial(est.estimate, batch, gen)
    fns[JVP] = partial(_jvp_pass, model, batch, gen)
    times = interleaved(fns, device, warmup=s.warmup, repeats=s.repeats,
                        min_repeats=min(3, s.repeats), budget_s=s.budget_s)  # fmt: skip
    fwd = times.median("forward")
    base_flops = count_flops(forward)
    profiled = device.type == "cpu"
    common = {"task": task.name, "batch": len(batch[0]), "device": str(device),
              "threads": torch.get_num_threads()}  # fmt: skip
    rows = []
    for n, est in ests.items():
        fg = isinstance(est, ForwardGradient)
        pass_ratio = times.median(f"{n} pass") / fwd if fg else NAN
        noise = _share(fns[f"{n} pass"], "fg-noise") if fg and profiled else NAN
        subspace = _share(fns[n], "fg-subspace") if fg and profiled and "wperp" in n else NAN
        rows.append({
            **common, "estimator": n, "pass_ratio": pass_ratio, "noise_share": noise,
            "pass_less_noise_ratio": pass_ratio * (1 - noise),
            "estimate_ratio": times.median(n) / fwd, "flop_ratio": count_flops(fns[n]) / base_flops,
            "subspace_share": subspace, "forward_ms": 1e3 * fwd, "repeats": times.rounds,
        })  # fmt: skip
    rows.append({
        **common, "estimator": JVP, "pass_ratio": times.median(JVP) / fwd, "noise_share": NAN,
        "pass_less_noise_ratio": NAN, "estimate_ratio": NAN,
        "flop_ratio": count_flops(fns[JVP]) / base_flops, "subspace_share": NAN,
        "forward_ms": 1e3 * fwd, "repeats": times.rounds,
    })  # fmt: skip
    return rows


class CreatedPeak(StoragePeak):
    """`StoragePeak` that skips outputs whose storage is an input's (views, in-place results)."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        inputs = {t.untyped_storage().data_ptr()
                  for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)}  # fmt: skip
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, Tensor) and item.untyped_storage().data_ptr() not in inputs:
                self._track(item.untyped_storage())
        return out


def _created_peak(fn: Callable[[], object]) -> int:
    with CreatedPeak() as tracker:
        fn()
    return tracker.peak


def _memory_rows(s: Settings) -> list[dict[str, Any]]:
    setups = [(spec, s.memory_batch, MLP_SPECS) for spec in s.memory_mlps]
    setups += [(spec, s.batch, ("backprop", *FIVE)) for spec in s.memory_tasks]
    rows = []
    for spec, size, names in setups:
        task = task_of(spec)
        torch.manual_seed(0)
        model = task.model()
        batch = task_batch(task, size, CPU)
        state = sum(p.numel() * p.element_size() for p in model.parameters())
        measured = {}
        for name in names:
            est = make_estimator(name).bind(model, cross_entropy)
            step = partial(est.estimate, batch, torch.Generator().manual_seed(0))
            measured[name] = (peak_bytes(step, CPU), _created_peak(step))
        bp, bp_created = measured["backprop"]
        for name, (peak, created) in measured.items():
            rows.append({
                "task": task.name, "batch": len(batch[0]), "device": str(CPU), "estimator": name,
                "params_grads_mb": 2 * state / 1e6, "peak_mb": peak / 1e6, "peak_ratio": peak / bp,
                "created_mb": created / 1e6, "created_ratio": created / bp_created,
            })  # fmt: skip
    return rows


def _trained(task: Task, steps: int) -> nn.Module:
    """The task's model after `steps` backprop steps (0: its budget), seed 0, on the CPU."""
    steps = steps or task.steps
    run = Run(task, make_estimator("backprop"), 0, task.lr, CPU, steps=steps)
    result = train(run, task.load(), snapshot_steps=[steps])
    torch.manual_seed(0)
    model = task.model()
    model.load_state_dict(result.snapshots[steps])
    return model


def _sites(model: nn.Module, x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Per guided layer: the consumer factor C and the per-site slopes phi'(s)."""
    outs: dict[str, Tensor] = {}
    links = consumers(model)
    handles = [m.register_forward_hook(lambda m, a, o, n=n: outs.__setitem__(n, o))
               for n, m in model.named_modules() if n in links]  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    weights = dict(model.named_parameters())
    return {
        n: (c.factor(weights[c.weight].detach()), DERIVATIVES[c.activation](c.sites(outs[n])))
        for n, c in links.items()
    }


def _quality_rows(s: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    task = task_of(s.quality_task)
    steps = s.quality_steps or task.steps
    model = _trained(task, steps)
    batch = task_batch(task, s.batch, CPU)
    exact = make_estimator("backprop").bind(model, task.loss).estimate(batch, torch.Generator())
    common = {"task": task.name, "steps": steps, "batch": len(batch[0])}
    rows = []
    for name in FIVE:
        est = make_estimator(name).bind(model, task.loss)
        sample = est.estimate_draws(batch, s.quality_draws, torch.Generator().manual_seed(0))
        for layer, q in quality_by_layer(sample.grads, exact.grads).items():
            rows.append({
                **common, "draws": s.quality_draws, "estimator": name, "layer": layer,
                "cosine": q["cosine"], "cosine_lo": q["cosine_lo"], "cosine_hi": q["cosine_hi"],
                "rel_bias": q["rel_bias"], "rel_variance": q["rel_variance"],
                "rel_mse": q["rel_mse"],
            })  # fmt: skip
    svd, ns = make_estimator("fg-wperp"), make_estimator("fg-wperp-ns")
    overlaps = []
    for layer, (factor, slope) in _sites(model, batch[0]).items():
        gen = torch.Generator().manual_seed(0)
        share = overlap(ns.basis(factor, slope, gen), svd.basis(factor, slope, gen))
        overlaps.append({
            **common, "estimator": ns.spec, "layer": layer, "factor_rows": factor.shape[0],
            "factor_cols": factor.shape[1], "mean_overlap": share.mean().item(),
            "min_overlap": share.min().item(),
        })  # fmt: skip
    return rows, overlaps


def _ns_rows(s: Settings) -> list[dict[str, Any]]:
    task = task_of(s.ns_task)
    learner = Learner.create(task, make_estimator("backprop"), 0, task.lr, CPU)
    data = task.load()
    gen = torch.Generator().manual_seed(0)
    for step in range(s.ns_steps):
        idx = torch.arange(step * 128, (step + 1) * 128) % len(data.x_train)
        learner.step((data.x_train[idx], data.y_train[idx]), gen)
    layer, (factor, slope) = next(iter(_sites(learner.model, data.x_train[: s.ns_sites]).items()))
    svd, ns = make_estimator("fg-wperp"), make_estimator("fg-wperp-ns")
    m = factor * slope[:, None, :]  # (S, r, in): every site's M = C diag(phi'(s))
    results: dict[str, Tensor] = {}
    ways: dict[str, Callable[[], object]] = {
        "svd": lambda: results.__setitem__(
            "svd", torch.linalg.svd(m, full_matrices=False).Vh[:, : ns.k].mT
        ),
        "gram": lambda: results.__setitem__("gram", svd.basis(factor, slope, gen)),
        "ns": lambda: results.__setitem__("ns", ns.basis(factor, slope, gen)),
    }
    t = interleaved(ways, CPU, warmup=s.warmup, repeats=s.slow_repeats,
                    min_repeats=s.slow_repeats)  # fmt: skip
    share = overlap(results["ns"], results["svd"])
    return [{
        "task": task.name, "steps": s.ns_steps, "layer": layer, "factor_rows": factor.shape[0],
        "factor_cols": factor.shape[1], "sites": slope.shape[0], "estimator": ns.spec,
        "k": ns.k, "device": str(CPU), "threads": torch.get_num_threads(),
        "svd_s": t.median("svd"), "gram_s": t.median("gram"), "ns_s": t.median("ns"),
        "svd_over_ns": t.ratio("svd", "ns"), "gram_over_ns": t.ratio("gram", "ns"),
        "ns_mean_overlap": share.mean().item(), "ns_min_overlap": share.min().item(),
        "gram_min_overlap": overlap(results["gram"], results["svd"]).min().item(),
        "repeats": t.rounds,
    }]  # fmt: skip


def measure(s: Settings, device: torch.device) -> Rows:
    unknown = sorted(set(s.tables) - set(FILES))
    if unknown:
        raise StudyError(f"forward-gradients: unknown table {unknown[0]!r}; valid: "
                         f"{', '.join(FILES)}")  # fmt: skip
    rows: Rows = {}
    if "cost" in s.tables:
        rows["fg_cost.csv"] = [r for spec in s.cost_tasks for r in _cost_rows(spec, s, device)]
    if "memory" in s.tables:
        rows["fg_memory.csv"] = _memory_rows(s)
    if "quality" in s.tables:
        rows["fg_quality.csv"], rows["fg_overlap.csv"] = _quality_rows(s)
    if "ns" in s.tables:
        rows["fg_ns.csv"] = _ns_rows(s)
    if "draws" in s.tables:
        rows["fg_draws.csv"] = draws_rows(s.draws_tasks, FIVE, s.batched_draws, s.slow_repeats,
                                          s.batch, device, s.draws_skip)  # fmt: skip
    return rows


STUDY = Study(
    name="forward-gradients",
    summary="fg-* estimators: pass cost vs a forward, memory, quality, Newton-Schulz vs SVD, draws",
    files=tuple(f for files in FILES.values() for f in files),
    settings=Settings,
    smoke=Settings(
        repeats=2,
        batch=16,
        cost_tasks=(SMOKE_TASK,),
        cost_skip=(),
        cost_estimators=("fg-activity", "fg-weight:noise=rademacher", "fg-wperp-ns"),
        memory_mlps=("mlp-mnist1d:width=16;depth=2",),
        memory_batch=16,
        memory_tasks=(SMOKE_TASK,),
        quality_task=SMOKE_TASK,
        quality_steps=2,
        quality_draws=4,
        ns_task="mlp-mnist1d:width=16",
        ns_steps=2,
        ns_sites=16,
        draws_tasks=(SMOKE_TASK,),
        batched_draws=2,
        draws_skip=(),
    ),
    measure=measure,
)
