"""Linear and Conv2d whose backward pass sketches the output gradient and skips what it drops.

`SketchedLinear` and `SketchedConv2d` compute the ordinary forward. Their backward replaces
the incoming output gradient g by S g (a sketch from `estimators.sketches`, E[S] = I) and
computes grad_input, grad_weight and grad_bias from the kept part only:
- axis `row` (an example, or a token of a (B, T, in) input): the kept rows of g and of the
  input are gathered and run through a K-row dense product; grad_input rows are scattered back.
- axis `unit` (an output unit / output channel): the kept columns of g and rows of the weight
  are gathered; grad_weight rows are scattered back.
- axis `element`: S g is formed as a masked dense tensor. Dense kernels cannot skip scattered
  elements, so this axis saves no compute; it is there to compare variances.
- sketch `rank` (row or unit axis): the axis is projected to r = keep * n dimensions by R and
  the products run at that size; R is applied back afterwards.
- sketch `outer` (row axis): rows are scored with the layer's input too (`sketches.Sketch`).
- a `shared` plan (row axis): the layer draws nothing; the estimator has already zeroed the
  output gradient of all but K examples (one subset for the whole step, scaled once, see
  `sparse_vjp.SparseVJP`), so the layer gathers the K x (rows per example) rows of largest norm,
  which hold every non-zero row, and applies them unscaled: S g = g exactly, at keep's cost.
The backward draws nothing: its randomness is a `noise` tensor given to `apply`, so a draw is
reproducible and `torch.func.vmap` can run many draws at once (one noise tensor per draw).

`sketched(layers, plan, draw)` routes the given nn.Linear / nn.Conv2d modules through these
Functions while it is active (an instance `forward` that shadows the class's), and restores
them on exit, also after an exception; the models themselves never change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estimators.routing import check_plain, routed
from estimators.sketches import DIAGONAL, Kept, Sketch, keep_support, magnitudes, put, take

AXES = ("element", "row", "unit")

Draw = Callable[[tuple[int, ...]], Tensor]  # uniforms of a shape, for the next sketched call
Needs = tuple[bool, bool, bool]  # which of grad_input, grad_weight, grad_bias are wanted
Grads = tuple[Tensor | None, Tensor | None, Tensor | None]
DenseVJP = Callable[[Tensor, Tensor, Tensor, Needs], Grads]


@dataclass(frozen=True)
class Plan:
    """What a sketched layer's backward does: which sketch, along which axis."""

    sketch: Sketch
    axis: str
    shared: bool = False

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"unknown axis {self.axis!r}; valid: {', '.join(AXES)}")
        if self.sketch.kind == "rank" and self.axis == "element":
            raise ValueError("the rank sketch projects rows or units; axis=element is undefined")
        if self.sketch.kind == "outer" and self.axis != "row":
            raise ValueError("the outer sketch scores rows; it needs axis=row")
        if self.shared and (self.axis != "row" or self.sketch.kind not in DIAGONAL):
            raise ValueError(
                "a shared sketch keeps whole examples: axis=row, a diagonal sketch "
                "(share=false for independent per-layer sketches)"
            )

    @property
    def dim(self) -> int | None:
        """The sketched dimension of the canonical gradient: (N, out) or (B, C, H, W)."""
        return {"row": 0, "unit": 1, "element": None}[self.axis]

    def noise_shape(self, out_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Uniforms one draw needs for a canonical output-gradient shape."""
        if self.shared:
            return (0,)  # the estimator draws the step's one subset
        n = math.prod(out_shape) if self.dim is None else out_shape[self.dim]
        return self.sketch.noise_shape(n)


def sketched_vjp(
    plan: Plan,
    noise: Tensor,
    g: Tensor,
    x: Tensor,
    w: Tensor,
    vjp: DenseVJP,
    needs: Needs,
    examples: int | None = None,
) -> Grads:
    """(grad_input, grad_weight, grad_bias) of a layer for the sketched output gradient S g.

    g (N, out, ...) and x (N, in, ...) are canonical: rows first, units/channels second; `vjp`
    is the layer's dense VJP; `examples` is how many examples the N rows belong to (N for
    rows that are examples, B for the B x T tokens of a sequence). Kept slices are gathered,
    so the dense work scales with keep.
    """
    need_x, need_w, need_b = needs
    if plan.sketch.kind == "rank":
        return _rank_vjp(plan, noise, g, x, w, vjp, needs)
    if plan.dim is None:
        return vjp(plan.sketch.apply(g, None, noise), x, w, needs)
    kept = (
        _shared_rows(plan, g, examples) if plan.shared else plan.sketch.kept(g, plan.dim, noise, x)
    )
    gk = take(g, plan.dim, kept.index) * _along(kept.scale.to(g.dtype), plan.dim, g.dim())
    if plan.dim == 0:
        gx_k, gw, gb = vjp(gk, take(x, 0, kept.index), w, needs)  # K rows
        gx = put(gx_k, kept.index, x.shape[0]) if need_x else None
        return gx, gw, gb
    gx, gw_k, gb_k = vjp(gk, x, take(w, 0, kept.index), needs)  # K units
    gw = put(gw_k, kept.index, w.shape[0]) if need_w else None
    gb = put(gb_k, kept.index, g.shape[1]) if need_b else None
    return gx, gw, gb


def _shared_rows(plan: Plan, g: Tensor, examples: int | None) -> Kept:
    """The rows of the step's kept examples: K = budget(examples) examples' rows, by norm."""
    rows = g.shape[0]
    per_example = rows // (examples or rows)
    return keep_support(magnitudes(g, 0), plan.sketch.budget(rows // per_example) * per_example)


def _rank_vjp(
    plan: Plan, noise: Tensor, g: Tensor, x: Tensor, w: Tensor, vjp: DenseVJP, needs: Needs
) -> Grads:
    """VJP for S g = R R^T g along rows or units, run at the projected size r."""
    need_x, need_w, need_b = needs
    r = plan.sketch.projection(noise).to(g.dtype)  # (n, r)
    if plan.dim == 0:
        # grad_weight is bilinear in (g, x) summed over rows: sum_n (R R^T g)_n x_n^T equals
        # sum_j (R^T g)_j (R^T x)_j^T; grad_input is linear per row: R (VJP of R^T g).
        g_low = torch.tensordot(r, g, dims=([0], [0]))  # (r, out, ...)
        x_low = torch.tensordot(r, x, dims=([0], [0]))  # (r, in, ...)
        gx_low, gw, _ = vjp(g_low, x_low, w, (need_x, need_w, False))
        gx = torch.tensordot(r, gx_low, dims=([1], [0])) if need_x else None
        gb = _bias_grad(torch.tensordot(r.sum(0), g_low, dims=([0], [0]))[None]) if need_b else None
        return gx, gw, gb
    g_low = torch.tensordot(g, r, dims=([1], [0])).movedim(-1, 1)  # (N, r, ...)
    w_low = torch.tensordot(r, w, dims=([0], [0]))  # (r, in, ...)
    gx, gw_low, gb_low = vjp(g_low, x, w_low, needs)
    gw = torch.tensordot(r, gw_low, dims=([1], [0])) if need_w else None
    gb = r @ gb_low if need_b else None
    return gx, gw, gb


def _bias_grad(g: Tensor) -> Tensor:
    """Sum of a canonical gradient over every dimension but the unit/channel one."""
    return g.sum(dim=[d for d in range(g.dim()) if d != 1])


def _along(values: Tensor, dim: int, ndim: int) -> Tensor:
    shape = [1] * ndim
    shape[dim] = values.shape[0]
    return values.reshape(shape)


def _linear_vjp(g: Tensor, x: Tensor, w: Tensor, needs: Needs) -> Grads:
    """Dense VJP of x (N, in) -> x W^T + b for g (N, out)."""
    need_x, need_w, need_b = needs
    return (g @ w if need_x else None, g.T @ x if need_w else None, g.sum(0) if need_b else None)


def _conv_vjp(
    g: Tensor, x: Tensor, w: Tensor, needs: Needs, *, stride: Any, padding: Any, dilation: Any
) -> Grads:
    """Dense VJP of a groups=1 Conv2d for g (B, C_out, H', W')."""
    gx, gw, gb = torch.ops.aten.convolution_backward(
        g, x, w, [w.shape[0]], stride, padding, dilation, False, [0, 0], 1, list(needs)
    )
    return gx, gw, gb


def _save(
    ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, noise: Tensor, plan: Plan
) -> None:
    """What a sketched layer's backward needs: its input, weight, noise and plan."""
    ctx.save_for_backward(x, weight, noise)
    ctx.plan = plan
    ctx.has_bias = bias is not None


def _saved(ctx: Any) -> tuple[Tensor, Tensor, Tensor, Needs]:
    """The saved input, weight and noise, and which of input, weight, bias need a gradient."""
    x, weight, noise = ctx.saved_tensors
    needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1],
             ctx.has_bias and ctx.needs_input_grad[2])  # fmt: skip
    return x, weight, noise, needs


class SketchedLinear(torch.autograd.Function):
    """F.linear forward; backward sketches g along the plan's axis (leading dims are rows)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor, weight: Tensor, bias: Tensor | None, noise: Tensor, plan: Plan
    ) -> Tensor:
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _save(ctx, *inputs)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, noise, needs = _saved(ctx)
        rows_g = g.reshape(-1, g.shape[-1])  # (N, out)
        rows_x = x.reshape(-1, x.shape[-1])  # (N, in)
        gx, gw, gb = sketched_vjp(
            ctx.plan,
            noise,
            rows_g,
            rows_x,
            weight,
            _linear_vjp,
            needs,
            len(x) if x.dim() > 1 else 1,
        )
        return (None if gx is None else gx.reshape(x.shape)), gw, gb, None, None


class SketchedConv2d(torch.autograd.Function):
    """F.conv2d forward (groups=1); backward sketches g per example (row) or output channel."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        noise: Tensor,
        plan: Plan,
        geometry: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    ) -> Tensor:
        stride, padding, dilation = geometry
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        *common, ctx.geometry = inputs
        _save(ctx, *common)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, noise, needs = _saved(ctx)
        stride, padding, dilation = ctx.geometry
        vjp = partial(_conv_vjp, stride=stride, padding=padding, dilation=dilation)
        gx, gw, gb = sketched_vjp(ctx.plan, noise, g, x, weight, vjp, needs)
        return gx, gw, gb, None, None, None


def _linear_forward(module: nn.Linear, plan: Plan, draw: Draw, x: Tensor) -> Tensor:
    rows = x.numel() // x.shape[-1]
    noise = draw(plan.noise_shape((rows, module.out_features)))
    return SketchedLinear.apply(x, module.weight, module.bias, noise, plan)


def _conv_forward(module: nn.Conv2d, plan: Plan, draw: Draw, x: Tensor) -> Tensor:
    geometry = (module.stride, module.padding, module.dilation)
    spatial = tuple(
        (size + 2 * pad - dil * (k - 1) - 1) // step + 1
        for size, k, step, pad, dil in zip(x.shape[-2:], module.kernel_size, *geometry, strict=True)
    )
    noise = draw(plan.noise_shape((x.shape[0], module.out_channels, *spatial)))
    return SketchedConv2d.apply(x, module.weight, module.bias, noise, plan, geometry)


@contextmanager
def sketched(layers: Mapping[str, nn.Module], plan: Plan, draw: Draw) -> Iterator[None]:
    """Route `layers` through the sketched Functions while the block runs; restore on exit.

    Each call of a routed layer asks `draw` for its noise, in call order. Nesting on the same
    layer is refused (the outer routing would be lost).
    """
    for name, module in layers.items():
        check_plain(name, module, "the sketched backward")
    forwards = {
        module: partial(
            _linear_forward if isinstance(module, nn.Linear) else _conv_forward, module, plan, draw
        )
        for module in layers.values()
    }
    with routed(forwards):
        yield
