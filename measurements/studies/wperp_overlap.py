"""How much of the true dl/ds lies in W-perp's top-k subspace: Wang, Markou & Campbell's Fig. 1.

    python -m runners.study wperp-overlap[:widths=128+512,steps=300,batch=256,max_k=32]
        --out DIR

Per width, the task's MLP (`task`, default mlp-mnist1d: 3 hidden ReLU layers) is trained by
backprop for `steps` steps (`measurements.train.train`, seed 0, the task's rate and batch size),
then on a fixed batch (the first `batch` training examples) each hidden layer l gets, per
example b, the true delta = dl_b/ds_l (autograd through the per-example losses) and the basis
V_K of the top-K right singular subspace of M = W_{l+1} diag(phi'(s_l)) that `fg-wperp`
guesses in: its own `WPerpGuess.basis` (`top_right_singular`) on the consumer factor, in
float64 so that the subspace is exact to float precision (columns past the rank are zero).
The columns come sorted by singular value, so V_k is V_K's first k columns and

    overlap_b(k) = ||V_k^T delta_b||^2 / ||delta_b||^2,   k = 1..K,

is 1 at k = rank(M) (delta lies in Im(M^T)) and nondecreasing in k. Each row (`wperp_overlap.csv`)
is the plain mean over examples of overlap_b(k) (each example weighted equally, not by its
gradient norm) with its 95% Student-t interval over the examples, clipped to [0, 1]; examples
with delta_b = 0 (every unit of the layer inactive, or a saturated loss) are left out and
`examples` counts those kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from estimators import make_estimator
from estimators.consumers import DERIVATIVES, consumers
from estimators.fg_wperp import WPerpGuess
from measurements.gradient_stats import t_interval
from measurements.studies.quality_draws import task_batch
from measurements.study import Rows, Study
from measurements.train import Run, train
from tasks import Task, get_task

FILE = "wperp_overlap.csv"
CPU = torch.device("cpu")
CHUNK = 64  # examples per batched eigendecomposition (bounds the (S, r, in) float64 tensor)


@dataclass(frozen=True)
class Settings:
    """Defaults: the paper's widths (tuples joined by `+`)."""

    task: str = "mlp-mnist1d"
    widths: tuple[int, ...] = (128, 512)
    steps: int = 300
    batch: int = 256
    max_k: int = 32


def trained(task: Task, steps: int) -> nn.Module:
    """The task's model after `steps` backprop steps (seed 0, the task's rate), on the CPU."""
    torch.manual_seed(0)
    model = task.model()
    if steps:
        run = Run(task, make_estimator("backprop"), 0, task.lr, CPU, steps=steps)
        model.load_state_dict(train(run, task.load(), snapshot_steps=[steps]).snapshots[steps])
    return model


def true_deltas(model: nn.Module, loss: Any, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Per guided layer (producer name): its pre-activations s and the per-example dl_b/ds."""
    links = consumers(model)
    outs: dict[str, Tensor] = {}

    def keep(name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Tensor) -> None:
            out.retain_grad()
            outs[name] = out

        return hook

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(keep(name)) for name in links]
    try:
        loss(model(x), y).sum().backward()  # l_b depends on example b's s only
    finally:
        for handle in handles:
            handle.remove()
    model.zero_grad(set_to_none=True)
    grads = {name: out.grad for name, out in outs.items() if out.grad is not None}
    return {name: torch.stack([outs[name].detach(), grads[name]]) for name in links}


def overlaps(model: nn.Module, loss: Any, x: Tensor, y: Tensor, k: int) -> dict[str, Tensor]:
    """Per guided layer, overlap_b(k) for k = 1..K as a (kept examples, K) float64 tensor."""
    guess = make_estimator(f"fg-wperp:k={k}")
    assert isinstance(guess, WPerpGuess)
    weights = dict(model.named_parameters())
    deltas = true_deltas(model, loss, x, y)
    out = {}
    for name, link in consumers(model).items():
        s, delta = deltas[name].double()
        factor = link.factor(weights[link.weight].detach().double())
        slope, g = DERIVATIVES[link.activation](link.sites(s)), link.sites(delta)
        cum = torch.cat([
            (guess.basis(factor, slope[i : i + CHUNK], torch.Generator()).mT
             @ g[i : i + CHUNK, :, None]).squeeze(-1).square().cumsum(-1)
            for i in range(0, len(g), CHUNK)
        ])  # (S, min(K, r, in)): the basis stops at the rank cap  # fmt: skip
        cum = torch.cat([cum, cum[:, -1:].expand(-1, k - cum.shape[1])], 1)  # flat past it
        norm = g.square().sum(-1)
        out[name] = cum[norm > 0] / norm[norm > 0, None]
    return out


def width_rows(s: Settings, width: int) -> list[dict[str, Any]]:
    task = get_task(f"{s.task}:width={width}")
    model = trained(task, s.steps)
    x, y = task_batch(task, s.batch, CPU)
    rows = []
    for layer, share in overlaps(model, task.loss, x, y, s.max_k).items():
        for k in range(1, s.max_k + 1):
            mean, lo, hi = t_interval(share[:, k - 1])
            rows.append({
                "task": s.task, "width": width, "steps": s.steps, "layer": layer, "k": k,
                "overlap": mean, "lo": max(lo, 0.0), "hi": min(hi, 1.0),
                "examples": len(share),
            })  # fmt: skip
    return rows


def measure(s: Settings, device: torch.device) -> Rows:
    return {FILE: [row for width in s.widths for row in width_rows(s, width)]}


STUDY = Study(
    name="wperp-overlap",
    summary="overlap of the true dl/ds with W-perp's top-k subspace vs k, per layer and width",
    files=(FILE,),
    settings=Settings,
    smoke=Settings(widths=(8, 16), steps=2, batch=16, max_k=12),
    measure=measure,
)
