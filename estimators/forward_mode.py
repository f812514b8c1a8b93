"""The forward-gradient pass, written once for every forward-gradient estimator.

One forward pass under `TangentPass(n)` carries n tangents, from two kinds of source:
- activity guesses: a hook on a chosen Linear/Conv2d layer adds a guess u (n, *s.shape) to the
  tangent of its output s, drawn by the estimator from s (so a guess may depend on phi'(s)), and
  keeps the layer's input a;
- weight directions: chosen parameters carry v (n, *p.shape), drawn by a pre-hook of the module
  that owns them from a seeded generator and dropped once that module has run, so one module's
  directions are alive at a time; `SeededDirections.replay` regenerates them afterwards.
The per-example losses l_b then carry the directional derivatives
d_{i,b} = sum_l <dl_b/ds_l, u_{i,l,b}> + <dl_b/dtheta, v_i>, i = 1..n; no backward pass is run.
`gradients` turns them into estimates of the batch-mean gradient:
- perturbed Linear on (B, in) or (B, T, in): g_W = (1/B) sum_b d_b sum_t u_{b,t} a_{b,t}^T,
  g_bias = (1/B) sum_b d_b sum_t u_{b,t};
- perturbed Conv2d: the same outer product summed over output positions (a's patches);
- weight-perturbed parameter: g = ((1/B) sum_b d_b) v.
Each is unbiased when the guesses have E[u u^T] = I and the directions E[v v^T] = I, drawn
independently per layer: cross terms have zero mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estimators.base import Batch, PerExampleLoss
from estimators.errors import EstimatorError
from estimators.tangents import TangentPass, add_tangent, set_tangent, tangent

NOISE = ("gaussian", "rademacher")
LAYERS = (nn.Linear, nn.Conv2d)

Guess = Callable[[Tensor, int], Tensor]  # (layer output s, n) -> (n, *s.shape)


def noise(
    shape: tuple[int, ...],
    kind: str,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Independent entries with mean 0 and variance 1: N(0, 1) or uniform signs (Rademacher).

    Signs come from random 64-bit words (the generator's full range: every bit uniform), one
    row of an 8-sign table per byte; on this project's CPU that costs an eighth of a Gaussian
    draw (0.50 ms against 4.1 ms for 2^20 entries, one thread).
    """
    if kind not in NOISE:
        raise ValueError(f"unknown noise {kind!r}; valid: {', '.join(NOISE)}")
    with torch.profiler.record_function("fg-noise"):  # the cost benchmark's "noise share"
        if kind == "gaussian":
            return torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return _signs(shape, generator, dtype, device)


def _signs(
    shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype, device: torch.device
) -> Tensor:
    count = math.prod(shape)
    words = torch.empty(-(-count // 64), dtype=torch.int64, device=device)
    words.random_(-(2**63), None, generator=generator)  # None: up to 2^63 - 1 inclusive
    table = _sign_table(dtype, device)  # (256, 8)
    signs = table.index_select(0, words.view(torch.uint8).int())  # (8 x words, 8)
    return signs.view(-1)[:count].view(shape)


_SIGN_TABLES: dict[tuple[torch.dtype, torch.device], Tensor] = {}


def _sign_table(dtype: torch.dtype, device: torch.device) -> Tensor:
    """Row b: (-1)^(bit j of b), j = 0..7."""
    key = (dtype, device)
    if key not in _SIGN_TABLES:
        bits = (torch.arange(256)[:, None] >> torch.arange(8)) & 1
        _SIGN_TABLES[key] = (1 - 2 * bits).to(dtype=dtype, device=device)
    return _SIGN_TABLES[key]


Owners = dict[nn.Module, list[tuple[str, nn.Parameter]]]


def owners(model: nn.Module, names: set[str]) -> Owners:
    """The modules that directly own the parameters `names`, with those parameters."""
    found: Owners = {}
    for prefix, module in model.named_modules():
        own = [
            (f"{prefix}.{local}" if prefix else local, p)
            for local, p in module.named_parameters(recurse=False)
        ]
        own = [(name, p) for name, p in own if name in names]
        if own:
            found[module] = own
    return found


class SeededDirections:
    """Directions v (n, *p.shape) for some parameters, drawn from one seed where they are used.

    While `attached()`, a forward pre-hook of each module that owns such parameters draws their
    directions from a generator seeded with `seed` and attaches them as tangents; its forward
    hook drops them. `replay()` regenerates the same tensors in the order they were drawn, so
    they are never all stored. Limit: a module that runs twice in one forward is refused (its
    second call would draw a different direction).
    """

    def __init__(self, owners: Owners, count: int, seed: int, kind: str) -> None:
        self.owners, self.count, self.seed, self.kind = owners, count, seed, kind
        self.order: list[str] = []
        self._drawn: dict[str, nn.Parameter] = {}

    def _draw(self, p: Tensor, generator: torch.Generator) -> Tensor:
        return noise((self.count, *p.shape), self.kind, generator, p.dtype, p.device)

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Draw each module's directions as it runs; drop them when it is done."""
        device = next(p.device for own in self.owners.values() for _, p in own)
        generator = torch.Generator(device=device).manual_seed(self.seed)
        self.order, self._drawn = [], {}

        def attach(module: nn.Module, args: object) -> None:
            for name, p in self.owners[module]:
                if name in self._drawn:
                    raise EstimatorError(f"parameter {name} is used by two module calls")
                self._drawn[name] = p
                self.order.append(name)
                set_tangent(p, self._draw(p, generator))

        def drop(module: nn.Module, args: object, out: object) -> None:
            for _, p in self.owners[module]:
                set_tangent(p, None)

        handles = [m.register_forward_pre_hook(attach) for m in self.owners]
        handles += [m.register_forward_hook(drop) for m in self.owners]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for own in self.owners.values():
                for _, p in own:
                    set_tangent(p, None)

    def replay(self) -> Iterator[tuple[str, Tensor]]:
        """The directions drawn in the last `attached()` pass, regenerated in the same order."""
        if not self.order:
            return
        generator = torch.Generator(device=self._drawn[self.order[0]].device)
        generator.manual_seed(self.seed)
        for name in self.order:
            yield name, self._draw(self._drawn[name], generator)


@dataclass(frozen=True)
class Perturbed:
    """A layer whose output got a guess: its input a (primal) and the guess u (n, *s.shape)."""

    name: str
    module: nn.Module
    inputs: Tensor
    guess: Tensor


@dataclass(frozen=True)
class PassResult:
    """What one tangent pass measured."""

    loss: Tensor  # () the batch loss, mean of the per-example losses
    slopes: Tensor  # (n, B): d_{i,b}, example b's directional derivative along tangent i
    layers: list[Perturbed]
    directions: SeededDirections | None


def forward_pass(
    model: nn.Module,
    loss: PerExampleLoss,
    batch: Batch,
    count: int,
    guesses: Mapping[str, tuple[nn.Module, Guess]],
    directions: SeededDirections | None = None,
) -> PassResult:
    """Run the model once with `count` tangents: guesses at the named layers' outputs, weight
    directions at the parameters `directions` covers; read each example's derivatives."""
    x, y = batch
    mode = TangentPass(count)
    layers: list[Perturbed] = []

    def hook_for(name: str, guess: Guess) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            with mode.paused():
                u = guess(out, count)  # (n, *out.shape)
                add_tangent(out, u)
                layers.append(Perturbed(name, module, args[0].detach(), u))

        return hook

    handles = [m.register_forward_hook(hook_for(n, g)) for n, (m, g) in guesses.items()]
    try:
        with torch.no_grad(), mode, directions.attached() if directions else nullcontext():
            losses = loss(model(x), y)  # (B,)
    finally:
        for h in handles:
            h.remove()
    slopes = tangent(losses)
    set_tangent(losses, None)
    if slopes is None:
        slopes = losses.new_zeros(count, losses.shape[0])
    return PassResult(losses.mean(), slopes, layers, directions)


def layer_gradients(layer: Perturbed, weights: Tensor) -> dict[str, Tensor]:
    """Outer-product estimates (n, *p.shape) for a perturbed layer's weight and bias.

    `weights` (n, B) multiplies example b's guess: d_b / B for the batch-mean loss.
    """
    module, u, a = layer.module, layer.guess, layer.inputs
    n = u.shape[0]
    scaled = u * weights.reshape(n, weights.shape[1], *([1] * (u.dim() - 2)))  # (n, B, ...)
    out: dict[str, Tensor] = {}
    if isinstance(module, nn.Linear):
        rows = scaled.reshape(n, -1, scaled.shape[-1])  # (n, B*T, out)
        out["weight"] = rows.mT @ a.reshape(-1, a.shape[-1])  # (n, out, in)
        bias = rows.sum(1)  # (n, out)
    else:
        patches = F.unfold(a, module.kernel_size, module.dilation, module.padding, module.stride)
        rows = scaled.flatten(3)  # (n, B, out, P)
        weight = torch.einsum("nbop,bkp->nok", rows, patches)  # (n, out, in * kh * kw)
        out["weight"] = weight.reshape(n, *module.weight.shape)
        bias = rows.sum((1, 3))  # (n, out)
    if module.bias is not None:
        out["bias"] = bias
    return {f"{layer.name}.{k}": v for k, v in out.items()}


def gradients(result: PassResult, params: Mapping[str, nn.Parameter]) -> dict[str, Tensor]:
    """Estimates (n, *p.shape) for every parameter in `params`; zeros where nothing reached it."""
    n, batch = result.slopes.shape
    weights = result.slopes / batch  # (n, B)
    found: dict[str, Tensor] = {}
    for layer in result.layers:
        found.update(layer_gradients(layer, weights))
    if result.directions is not None:
        total = weights.sum(1)  # (n,): directional derivative of the batch-mean loss
        for name, v in result.directions.replay():
            found[name] = v.mul_(total.reshape(n, *([1] * (v.dim() - 1))))
    return {
        name: found[name] if name in found else p.new_zeros(n, *p.shape)
        for name, p in params.items()
    }
