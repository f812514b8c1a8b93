"""Backprop whose layer VJPs are unbiased random sketches that skip the dropped work."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from estimators.base import Batch, Draws, Estimate, GradientEstimator, trainable_parameters
from estimators.errors import EstimatorError
from estimators.params import Param
from estimators.routing import check_plain
from estimators.sketches import SKETCHES, Sketch
from estimators.sparse_layers import AXES, Draw, Plan, sketched

LAYERS = ("all", "hidden")
PASS_ELEMENTS = 2**25  # `estimate_draws`: draws x sketched-layer output elements per pass


class SparseVJP(GradientEstimator):
    """Backprop in which every sketched layer's VJP v -> v^T J becomes (S v)^T J, E[S] = I.

    Formula: for each sketched nn.Linear / nn.Conv2d with output gradient g, the backward uses
    S g instead of g, with an independent S per layer and per step: `uniform` keeps
    K = round(keep n) of the n coordinates uniformly without replacement, scaled n / K;
    `minvar` keeps coordinate i with probability p_i = min(1, c |g_i|), sum_i p_i = K, scaled
    1 / p_i (|g_i| is the norm of the whole row / unit / channel); `rank` uses S = R R^T with
    R (n, r), r = round(keep n), entries +-1/sqrt(r). A coordinate is an example row (axis
    `row`; a token for (B, T, in) inputs), an output unit or channel (`unit`) or one element
    (`element`). The sketched g flows on to the layers below, so the sketches compound.
    `layers=all` sketches every Linear and Conv2d (the ViT's patch embedding, qkv, attention
    output, MLP and head included); `hidden` leaves the head exact.
    Unbiased: yes. Given g, E[S g] = g (each kept coordinate is scaled by 1 / its inclusion
    probability; E[R R^T] = I), and every VJP below a layer (ReLU/GELU masks, LayerNorm,
    softmax attention, residual sums, layer VJPs) is linear in its incoming gradient, so by the
    tower rule the expectation of the whole chain is the exact gradient; the variance grows
    with depth, which the quality protocol reports per layer.
    Cost: the forward pass (1 unit) is unchanged. With `row` or `unit` the kept rows/units are
    gathered into smaller dense products, so a sketched layer's backward costs about keep x its
    dense 2 units (1 unit for the first layer, whose input needs no gradient); the parts that
    are not Linear/Conv2d (the ViT's attention score products, norms, activations) stay dense.
    About 1 + 2 keep units when every layer is sketched. `rank` adds the projections by R
    (about keep (2 + out/in) units per layer for `unit`, more for `row`); `element` is a masked
    dense backward and saves nothing (3 units), kept for variance comparisons. Activations are
    stored as in backprop.
    Reference: Bakong, Massoulie, Oyallon and Scaman, "Unbiased Approximate Vector-Jacobian
    Products for Efficient Backpropagation" (MLP, BagNet and ViT experiments); minimal-variance
    diagonal sketch with systematic sampling for a fixed budget (Madow, Ann. Math. Stat. 1949).
    """

    name = "sparse-vjp"
    unbiased = True
    params = (
        Param(name="sketch", kind=str, default="uniform", choices=SKETCHES,
              help="uniform diagonal, minvar (minimal-variance diagonal) or rank projection"),
        Param(name="keep", kind=float, default=0.25, low=0, high=1, low_open=True,
              help="kept fraction of the axis (diagonal) or rank fraction (rank)"),
        Param(name="axis", kind=str, default="row", choices=AXES,
              help="what one kept coordinate is: an element, an example row or a unit/channel"),
        Param(name="layers", kind=str, default="all", choices=LAYERS,
              help="all Linear/Conv2d layers, or hidden: all but the model's head"),
    )  # fmt: skip

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        try:
            self._plan = Plan(Sketch(self.sketch, self.keep), self.axis)
        except ValueError as exc:
            raise EstimatorError(f"{self.name}: {exc}") from None
        self._layers: dict[str, nn.Module] = {}

    def bind(self, model: nn.Module, loss: Callable[[Tensor, Tensor], Tensor]) -> SparseVJP:
        """Attach the model and find the layers to sketch (all Linear/Conv2d, or all but `head`)."""
        super().bind(model, loss)
        self._layers = sketched_layers(model, self.layers)
        return self

    @property
    def sketched_names(self) -> list[str]:
        """Names of the modules whose backward is sketched."""
        return list(self._layers)

    def sketching(self, generator: torch.Generator) -> AbstractContextManager[None]:
        """While active, the bound model's sketched layers run the sketched backward, their
        noise drawn from `generator` in forward order (what `estimate` does around its pass)."""
        dtype = next(self.model.parameters()).dtype

        def draw(shape: tuple[int, ...]) -> Tensor:
            return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)

        return sketched(self._layers, self._plan, draw)

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        x, y = batch
        params = trainable_parameters(self.model)
        with self.sketching(generator):
            loss = self.loss(self.model(x), y).mean()
            grads = torch.autograd.grad(loss, list(params.values()))
        return Estimate(grads=dict(zip(params, grads, strict=True)), loss=loss.detach())

    def estimate_draws(self, batch: Batch, draws: int, generator: torch.Generator) -> Draws:
        """R draws in vectorised passes: one shared forward per pass, then that pass's sketched
        backward passes batched by `torch.func.vmap` over their noise tensors. A pass holds as
        many draws as keep draws x (elements of the sketched layers' outputs) within
        `PASS_ELEMENTS`, which bounds the memory of the batched gradients.

        With the same generator state, draw r of a pass uses the noise `estimate` would draw, so
        `estimate_draws(batch, 1, g)` equals `estimate(batch, g)`.
        """
        if draws < 1:
            raise EstimatorError(f"{self.name}: draws must be >= 1, got {draws}")
        x, y = batch
        params = {n: p.detach() for n, p in trainable_parameters(self.model).items()}
        dtype = next(iter(params.values())).dtype
        shapes, elements = self._probe(x)
        per_pass = max(1, PASS_ELEMENTS // elements)

        def loss_of(p: dict[str, Tensor], noises: list[Tensor]) -> tuple[Tensor, Tensor]:
            with sketched(self._layers, self._plan, _replay(noises)):
                logits = torch.func.functional_call(self.model, p, (x,))
            loss = self.loss(logits, y).mean()
            return loss, loss.detach()

        batched = torch.func.vmap(torch.func.grad(loss_of, has_aux=True), in_dims=(None, 0))
        parts: list[dict[str, Tensor]] = []
        loss = torch.tensor(float("nan"))
        for start in range(0, draws, per_pass):
            count = min(per_pass, draws - start)
            noises = [torch.rand((count, *s), generator=generator, device=generator.device,
                                 dtype=dtype) for s in shapes]  # fmt: skip
            grads, losses = batched(params, noises)
            parts.append(grads)
            loss = losses[0]
        return Draws(grads={n: torch.cat([g[n] for g in parts]) for n in params}, loss=loss)

    @torch.no_grad()
    def _probe(self, x: Tensor) -> tuple[list[tuple[int, ...]], int]:
        """One plain forward: the noise shape of each sketched call, in call order, and the
        number of elements the sketched layers output."""
        shapes: list[tuple[int, ...]] = []
        elements = [0]

        def record(shape: tuple[int, ...]) -> Tensor:
            shapes.append(shape)
            return x.new_zeros(shape)

        def count(module: nn.Module, args: object, out: Tensor) -> None:
            elements[0] += out.numel()

        hooks = [m.register_forward_hook(count) for m in self._layers.values()]
        try:
            with sketched(self._layers, self._plan, record):
                self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        return shapes, elements[0]


def sketched_layers(model: nn.Module, which: str) -> dict[str, nn.Module]:
    """The model's nn.Linear / nn.Conv2d modules by name; `hidden` leaves out `head`."""
    if which not in LAYERS:
        raise EstimatorError(f"layers={which!r} is invalid; valid: {', '.join(LAYERS)}")
    layers = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
        and not (which == "hidden" and (name == "head" or name.startswith("head.")))
    }
    if not layers:
        raise EstimatorError(
            f"sparse-vjp: the model has no Linear/Conv2d layer to sketch ({which})"
        )
    for name, m in layers.items():
        check_plain(name, m, "the sketched backward")
    return layers


def _replay(noises: list[Tensor]) -> Draw:
    """A `Draw` that hands out pre-drawn noise tensors in call order, checking their shapes."""
    queue = iter(noises)

    def draw(shape: tuple[int, ...]) -> Tensor:
        noise = next(queue)
        if tuple(noise.shape) != tuple(shape):
            raise RuntimeError(f"sparse-vjp: noise {tuple(noise.shape)} for a call of {shape}")
        return noise

    return draw
