"""Forward-gradient estimators: cost, memory, quality after training, Newton-Schulz vs SVD, draws.

    python -m benchmarks.forward_gradients [cost|memory|quality|ns|draws ...] [--repeats 7]
        [--draws 256] [--threads N] [--device cpu|cuda|auto]

With no sub-command, all five tables are printed. Every timing is a ratio to a baseline measured
in the same run, interleaved (warm-up first, order alternated, median of `--repeats` samples; a
sample averages consecutive calls lasting about 50 ms).

cost: on mlp-mnist1d (batch 128), vit-digits (batch 64) and the issue's reference MLP
(mlp-mnist1d with 4 hidden layers of 1024, batch 128), each estimator's tangent pass alone
(`tangent_pass`: one forward carrying the tangents, per-example derivatives read) and its whole
estimate (pass + outer products or direction replay) against a plain forward (model and
per-example loss, no grad). FLOP ratios from `runners.flops.count_flops`. "noise share": the
part of the pass's CPU time drawing guesses and directions (`fg-noise` profiler range, i.e.
`estimators.forward_mode.noise`); "pass less noise" is the pass ratio times one minus that
share. "subspace share": the part of the estimate's CPU time inside the SVD or Newton-Schulz
(`fg-subspace` range). The row "torch.func.jvp, weights" is `torch.func.jvp` as-is along
N(0, I) directions over all parameters drawn in the call, the reference for `fg-weight`'s pass.
Goals (issue 4): fg-activity pass <= 2.3x, fg-weight pass <= 3.5x.

memory: `runners.memory.peak_bytes` of one estimate on MLPs of depth 2 and 16 (width 256, batch
2048, so that activations outweigh weights) and on the three tasks, beside backprop's;
"params+grads" is what the step must hold anyway.
A second column counts only storages the step creates (outputs aliasing an input's storage are
skipped): `StoragePeak` also counts the parameters that `aten.t` views inside each Linear.

quality: mlp-mnist1d trained by backprop for the task's budget (`runners.train.train`, seed 0),
then R draws of each estimator on a fixed batch (the first 128 training examples) against the
exact gradient (`runners.quality.quality_by_layer`), per layer and total, and the subspace
overlap of fg-wperp-ns with fg-wperp's SVD at that checkpoint per guided layer.

ns: at width 512 and batch 512 (mlp-mnist1d:width=512 after 300 backprop steps, seed 0), the
top-k bases of every example's M = W diag(phi'(s)) at the first hidden layer: a batched
`torch.linalg.svd`, fg-wperp's basis (the same vectors from the Gram eigendecomposition) and
fg-wperp-ns (defaults), timed alternately, with the overlaps with the SVD's subspace.

draws: R = 64 draws in one `estimate_draws` call against 64 `estimate` calls
(`benchmarks.quality_draws.compare`).

Left out for time: fg-wperp (exact SVD) on the width-1024 MLP in the cost table (minutes a
call), and on vit-digits in the draws table (64 single draws, each with its per-token SVD).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tabulate import tabulate
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from benchmarks.quality_draws import compare
from benchmarks.threads import add_threads_flag, apply_threads
from estimators import Batch, make_estimator
from estimators.consumers import DERIVATIVES, consumers
from estimators.forward_gradient import ForwardGradient
from estimators.newton_schulz import overlap
from runners.device import resolve_device
from runners.flops import count_flops
from runners.memory import StoragePeak, peak_bytes
from runners.quality import quality_by_layer
from runners.timing import timed
from runners.train import Learner, Run, train
from tasks import Task, get_task
from tasks.models import MLP
from tasks.task import cross_entropy

CPU = torch.device("cpu")
BLOCK_SECONDS = 0.05
MEMORY_BATCH = 2048  # activations (2 MB a layer) outweigh the weights (0.25 MB a layer)
SLOW_SECONDS = 20.0  # a function that has spent this long is sampled no more (after 3 samples)
COST_MODELS = [("mlp-mnist1d", None), ("vit-digits", None),
               ("mlp-mnist1d:width=1024,depth=4", 128)]  # fmt: skip
# 128 SVDs of 1024 x 1024 per guided layer take minutes a call on this CPU: not timed there
SKIP = {("mlp-mnist1d:width=1024,depth=4", "fg-wperp")}
COST_SPECS = ["fg-activity", "fg-activity:noise=rademacher", "fg-weight",
              "fg-weight:noise=rademacher", "fg-wt", "fg-wperp", "fg-wperp-ns"]  # fmt: skip
JVP = "torch.func.jvp, weights"
FIVE = ["fg-weight", "fg-activity", "fg-wt", "fg-wperp", "fg-wperp-ns"]


def _batch(task: Task, size: int | None = None, device: torch.device = CPU) -> Batch:
    data = task.load()
    size = size or task.batch_size
    return data.x_train[:size].to(device), data.y_train[:size].to(device)


def _sample(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds per call, averaged over consecutive calls lasting about BLOCK_SECONDS."""
    calls, spent = 0, 0.0
    while spent < BLOCK_SECONDS:
        spent += timed(fn, device)
        calls += 1
    return spent / calls


def _interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device = CPU
) -> dict[str, float]:
    """Median seconds per call of each function, sampled in alternating order; a function
    whose samples add up to `SLOW_SECONDS` stops after 3 (seconds-long calls vary little)."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for i in range(repeats):
        for k in order if i % 2 == 0 else order[::-1]:
            if len(samples[k]) < 3 or sum(samples[k]) < SLOW_SECONDS:
                samples[k].append(_sample(fns[k], device))
    return {k: statistics.median(v) for k, v in samples.items()}


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


def cost_table(repeats: int, device: torch.device = CPU) -> list[list[Any]]:
    rows = []
    for spec, size in COST_MODELS:
        task = get_task(spec)
        torch.manual_seed(0)
        model = task.model().to(device)
        batch = _batch(task, size, device)
        gen = torch.Generator(device=device).manual_seed(0)

        def forward(model: nn.Module = model, batch: Batch = batch) -> Tensor:
            with torch.no_grad():
                return cross_entropy(model(batch[0]), batch[1]).mean()

        fns: dict[str, Callable[[], object]] = {"forward": forward}
        specs = [s for s in ["backprop", *COST_SPECS] if (spec, s) not in SKIP]
        ests = {s: make_estimator(s).bind(model, cross_entropy) for s in specs}
        for s, est in ests.items():
            if isinstance(est, ForwardGradient):
                fns[f"{s} pass"] = partial(est.tangent_pass, batch, 1, gen)
            fns[s] = partial(est.estimate, batch, gen)
        fns[JVP] = partial(_jvp_pass, model, batch, gen)
        seconds = _interleaved(fns, repeats, device)
        base_flops = count_flops(forward)
        for s, est in ests.items():
            fg = isinstance(est, ForwardGradient)
            noise = _share(fns[f"{s} pass"], "fg-noise") if fg and device == CPU else None
            rows.append([
                spec, len(batch[0]), s,
                seconds[f"{s} pass"] / seconds["forward"] if fg else None,
                noise,
                seconds[f"{s} pass"] * (1 - noise) / seconds["forward"] if noise else None,
                seconds[s] / seconds["forward"],
                count_flops(fns[s]) / base_flops,
                _share(fns[s], "fg-subspace") if fg and "wp" in s and device == CPU else None,
                1e3 * seconds["forward"],
            ])  # fmt: skip
        jvp = seconds[JVP] / seconds["forward"]
        flops = count_flops(fns[JVP]) / base_flops
        rows.append([spec, len(batch[0]), JVP, jvp, None, None, None, flops, None,
                     1e3 * seconds["forward"]])  # fmt: skip
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


def memory_table() -> list[list[Any]]:
    setups: list[tuple[str, nn.Module, Batch, list[str]]] = []
    data = get_task("mlp-mnist1d").load()
    for depth in (2, 16):
        torch.manual_seed(0)
        model = MLP(40, 10, width=256, depth=depth)
        batch = data.x_train[:MEMORY_BATCH], data.y_train[:MEMORY_BATCH]
        # the per-example SVDs of the W-perp guesses (2048 sites x 15 layers) would take minutes
        specs = ["backprop", "fg-weight", "fg-activity", "fg-wt"]
        setups.append((f"MLP depth {depth}, batch {MEMORY_BATCH}", model, batch, specs))
    for name in ("mlp-mnist1d", "vit-digits", "bagnet-digits"):
        task = get_task(name)
        torch.manual_seed(0)
        setups.append((name, task.model(), _batch(task), ["backprop", *FIVE]))
    rows = []
    for label, model, batch, specs in setups:
        state = sum(p.numel() * p.element_size() for p in model.parameters())
        measured = {}
        for spec in specs:
            est = make_estimator(spec).bind(model, cross_entropy)
            step = partial(est.estimate, batch, torch.Generator().manual_seed(0))
            measured[spec] = (peak_bytes(step, CPU), _created_peak(step))
        for spec, (peak, created) in measured.items():
            bp, bp_created = measured["backprop"]
            rows.append([label, spec, 2 * state / 1e6, peak / 1e6, peak / bp,
                         created / 1e6, created / bp_created])  # fmt: skip
    return rows


def _trained_mnist1d() -> tuple[nn.Module, Task]:
    task = get_task("mlp-mnist1d")
    result = train(Run(task, make_estimator("backprop"), 0, task.lr, CPU), task.load(),
                   snapshot_steps=[task.steps])  # fmt: skip
    torch.manual_seed(0)
    model = task.model()
    model.load_state_dict(result.snapshots[task.steps])
    return model, task


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


def quality_tables(draws: int) -> tuple[list[list[Any]], list[list[Any]]]:
    model, task = _trained_mnist1d()
    batch = _batch(task)
    exact = make_estimator("backprop").bind(model, task.loss).estimate(batch, torch.Generator())
    rows = []
    for spec in ["fg-weight", "fg-activity", "fg-wt", "fg-wperp", "fg-wperp-ns"]:
        est = make_estimator(spec).bind(model, task.loss)
        sample = est.estimate_draws(batch, draws, torch.Generator().manual_seed(0))
        for layer, q in quality_by_layer(sample.grads, exact.grads).items():
            rows.append([spec, layer, q["cosine"], q["cosine_lo"], q["cosine_hi"], q["rel_bias"],
                         q["rel_variance"], q["rel_mse"]])  # fmt: skip
    svd, ns = make_estimator("fg-wperp"), make_estimator("fg-wperp-ns")
    overlaps = []
    for layer, (factor, slope) in _sites(model, batch[0]).items():
        gen = torch.Generator().manual_seed(0)
        share = overlap(ns.basis(factor, slope, gen), svd.basis(factor, slope, gen))
        overlaps.append([layer, factor.shape, share.mean().item(), share.min().item()])
    return rows, overlaps


def ns_table(repeats: int) -> list[list[Any]]:
    task = get_task("mlp-mnist1d:width=512")
    learner = Learner.create(task, make_estimator("backprop"), 0, task.lr, CPU)
    data = task.load()
    gen = torch.Generator().manual_seed(0)
    for step in range(300):
        idx = torch.arange(step * 128, (step + 1) * 128) % len(data.x_train)
        learner.step((data.x_train[idx], data.y_train[idx]), gen)
    factor, slope = _sites(learner.model, data.x_train[:512])["hidden.0"]
    svd, ns = make_estimator("fg-wperp"), make_estimator("fg-wperp-ns")
    m = factor * slope[:, None, :]
    results: dict[str, Tensor] = {}
    fns = {
        "svd": lambda: results.__setitem__(
            "svd", torch.linalg.svd(m, full_matrices=False).Vh[:, : ns.k].mT
        ),
        "gram": lambda: results.__setitem__("gram", svd.basis(factor, slope, gen)),
        "ns": lambda: results.__setitem__("ns", ns.basis(factor, slope, gen)),
    }
    t = _interleaved(fns, repeats)
    share = overlap(results["ns"], results["svd"])
    return [["hidden.0 (512 x 512)", slope.shape[0], ns.spec, t["svd"], t["gram"], t["ns"],
             t["svd"] / t["ns"], t["gram"] / t["ns"], share.mean().item(), share.min().item(),
             overlap(results["gram"], results["svd"]).min().item()]]  # fmt: skip


def draws_table(repeats: int, device: torch.device = CPU) -> list[list[Any]]:
    rows = []
    for name in ("mlp-mnist1d", "vit-digits"):
        task = get_task(name)
        batch = _batch(task, device=device)
        for spec in FIVE:
            if (name, spec) == ("vit-digits", "fg-wperp"):
                continue  # 64 single draws with a per-token SVD each: minutes; see the mlp row
            torch.manual_seed(0)
            est = make_estimator(spec).bind(task.model().to(device), task.loss)
            single, batched = compare(est, batch, 64, repeats, device)
            rows.append([name, spec, 64, single, batched, single / batched])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forward_gradients",
                                     description=__doc__)  # fmt: skip
    choices = ["cost", "memory", "quality", "ns", "draws"]
    parser.add_argument("tables", nargs="*", help=f"any of {', '.join(choices)} (default: all)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--draws", type=int, default=256)
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda or auto: the cost and draws tables (others: CPU)"
    )
    add_threads_flag(parser)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tables) - set(choices))
    if unknown:
        parser.error(f"unknown table {unknown[0]!r}; valid: {', '.join(choices)}")
    threads = apply_threads(args)
    device = resolve_device(args.device)
    print(f"CPU, {threads} threads; cost and draws on {device}; ratios from one run, interleaved,"
          f" median of {args.repeats}\n")  # fmt: skip
    tables = args.tables or choices
    if "cost" in tables:
        print("cost: time and FLOPs per call, as ratios to a plain forward (model + loss)")
        print(tabulate(cost_table(args.repeats, device), floatfmt=".3g", headers=[
            "model", "batch", "estimator", "pass / fwd", "noise share", "pass less noise / fwd",
            "estimate / fwd", "FLOPs / fwd", "subspace share", "fwd (ms)"]))  # fmt: skip
    if "memory" in tables:
        print("\nmemory: peak bytes of one estimate (runners.memory), and created storages only")
        print(tabulate(memory_table(), floatfmt=".3g", headers=[
            "model", "estimator", "params+grads MB", "peak MB", "/ backprop", "created MB",
            "created / backprop"]))  # fmt: skip
    if "quality" in tables:
        rows, overlaps = quality_tables(args.draws)
        print(f"\nquality on mlp-mnist1d after training, fixed batch of 128, R = {args.draws}")
        print(
            tabulate(
                rows,
                floatfmt=".3g",
                headers=[
                    "estimator",
                    "layer",
                    "cosine",
                    "lo",
                    "hi",
                    "rel bias",
                    "rel var",
                    "rel MSE",
                ],
            )
        )
        print("\nsubspace overlap ||V_k^T Q||_F^2 / k, fg-wperp-ns (defaults) vs fg-wperp's SVD")
        print(
            tabulate(
                overlaps,
                floatfmt=".3g",
                headers=["layer", "C (r, in)", "mean overlap", "min overlap"],
            )
        )
    if "ns" in tables:
        print("\nnewton-schulz vs batched SVD, top-10 bases of 512 examples' M (512 x 512)")
        print(tabulate(ns_table(max(1, args.repeats // 3)), floatfmt=".3g", headers=[
            "layer", "sites", "estimator", "batched SVD (s)", "fg-wperp Gram eigh (s)", "NS (s)",
            "SVD / NS", "eigh / NS", "NS mean overlap", "NS min overlap",
            "eigh min overlap"]))  # fmt: skip
    if "draws" in tables:
        print("\nR = 64 draws: one estimate_draws call against 64 estimate calls")
        print(
            tabulate(
                draws_table(max(1, args.repeats // 3), device),
                floatfmt=".3g",
                headers=["task", "estimator", "R", "R single (s)", "batched (s)", "speed-up"],
            )
        )


if __name__ == "__main__":
    main()
