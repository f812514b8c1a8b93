"""Backprop whose layer VJPs are unbiased random sketches that skip the dropped work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from estimators.base import Batch, Draws, Estimate, GradientEstimator, trainable_parameters
from estimators.errors import EstimatorError
from estimators.params import Param
from estimators.routing import check_plain
from estimators.sketches import SKETCHES, Sketch, magnitudes, outer_magnitudes, put
from estimators.sparse_layers import AXES, Draw, Plan, sketched

LAYERS = ("all", "hidden")
PASS_ELEMENTS = 2**25  # `estimate_draws`: draws x sketched-layer output elements per pass


class SparseVJP(GradientEstimator):
    """Backprop in which every sketched layer's VJP v -> v^T J becomes (S v)^T J, E[S] = I.

    Formula: for each sketched nn.Linear / nn.Conv2d with output gradient g, the backward uses
    S g instead of g. With `share=false` S is independent per layer and per step: `uniform`
    keeps K = round(keep n) of the n coordinates uniformly without replacement, scaled n / K;
    `minvar` keeps coordinate i with probability p_i = min(1, c |g_i|), sum_i p_i = K, scaled
    1 / p_i (|g_i| is the norm of the whole row / unit / channel); `outer` (rows only) is
    `minvar` with |g_i| sqrt(||a_i||^2 + 1), a_i the layer's input row: the norm of row i's
    term of the weight-and-bias gradient (VCAS scores rows by ||delta_i|| ||a_i|| likewise);
    `rank` uses S = R R^T with R (n, r), r = round(keep n), entries +-1/sqrt(r). A coordinate
    is an example row (axis `row`; a token for (B, T, in) inputs), an output unit or channel
    (`unit`) or one element (`element`). The sketched g flows on to the layers below, so the
    sketches compound. With `share=true` (axis `row`, a diagonal sketch) one subset of K =
    round(keep B) examples is drawn per step, with probabilities from the forward pass alone
    (`uniform`; `minvar`: p_i ~ ||dl_i/dlogits_i||; `outer`: times sqrt(||h_i||^2 + 1), h_i
    the input of the model's `head`, as `minvar` in a model without one), and
    g_hat = sum_i w_i grad l_i, w_i = 1[i kept] / (B p_i): the per-example losses are weighted
    once, and every layer's backward gathers the rows of the kept examples (all the rows that
    carry gradient) and applies them unscaled.
    `layers=all` sketches every Linear and Conv2d (the ViT's patch embedding, qkv, attention
    output, MLP and head included); `hidden` leaves the head exact.
    Unbiased: yes. Per layer (`share=false`): given g, E[S g] = g (each kept coordinate is
    scaled by 1 / its inclusion probability, which is > 0 wherever g_i != 0, for `outer`
    thanks to the + 1; E[R R^T] = I), and every VJP below a layer (ReLU/GELU masks, LayerNorm,
    softmax attention, residual sums, layer VJPs) is linear in its incoming gradient, so by the
    tower rule the expectation of the whole chain is the exact gradient; the variance grows
    with depth, which the quality protocol reports per layer. Shared (`share=true`): the same
    diagonal S applied at each of L layers would not do: a kept row is scaled 1 / p_i by every
    layer it passes, (1 / p_i)^L in all, and E[S^L] != I. So S is applied once, to the
    per-example losses: E[w_i] = p_i / (B p_i) = 1 / B, hence E[g_hat] = mean_i grad l_i = g
    (p_i > 0 wherever grad l_i != 0, since grad l_i = 0 when dl_i/dlogits_i = 0). Examples are
    processed independently (no BatchNorm; attention mixes tokens within an example only), so
    below the loss the output gradient of every layer is exactly zero on the rows of dropped
    examples; a layer keeps the K x (rows per example) rows of largest norm, a set that holds
    every non-zero row, scale 1, which is exact: each weight gradient is exact backprop of the
    weighted loss on the kept sub-batch. (`minvar` rows already behave so below a layer that
    left at most K non-zero rows: they saturate at p = 1.)
    Cost: the forward pass (1 unit) is unchanged. With `row` or `unit` the kept rows/units are
    gathered into smaller dense products, so a sketched layer's backward costs about keep x its
    dense 2 units (1 unit for the first layer, whose input needs no gradient); the parts that
    are not Linear/Conv2d (the ViT's attention score products, norms, activations) stay dense.
    About 1 + 2 keep units when every layer is sketched, `share` or not (`share` adds the
    gradient of the loss in the logits, B x classes numbers). `rank` adds the projections by R
    (about keep (2 + out/in) units per layer for `unit`, more for `row`); `element` is a masked
    dense backward and saves nothing (3 units), kept for variance comparisons. Activations are
    stored as in backprop.
    Defaults: the setting with the lowest relative variance x FLOP ratio (total relative
    variance of the estimate at initialisation, seed 0, the task's own batch, 256 draws, times
    its FLOPs over backprop's, both counted, `FlopCounterMode`), geometric mean over the
    embedded tasks mlp-mnist1d, bagnet-digits and vit-digits, among sketch x axis x share at
    keep 0.25 and 0.5: share=true, sketch=outer, keep=0.5 (products 0.529, 0.475, 0.191; FLOP
    ratios 0.674, 0.668, 0.680; geometric mean 0.364). Close behind, within the about 10%
    sampling error of 256 draws: shared uniform (0.529, 0.487, 0.201), shared minvar (0.566,
    0.482, 0.191), per-layer outer rows (0.530, 0.515, 0.208) and minvar rows (0.557, 0.511,
    0.208); per-layer uniform rows, the old default, 1.90, 1.62, 0.358 at keep 0.5 and 13.3,
    16.7, 6.27 at keep 0.25; units and rank are worse still. No setting beats
    `backprop-subbatch` at the same fraction: 0.401, 0.348, 0.139 at 0.5 and 0.591, 0.570,
    0.226 at 0.25 (its forward is over the kept examples only, 3 f units, where sparse-vjp's
    is dense; with uniform shared rows the two have the same gradient, so the same variance).
    Reference: Bakong, Massoulie, Oyallon and Scaman, "Unbiased Approximate Vector-Jacobian
    Products for Efficient Backpropagation" (MLP, BagNet and ViT experiments); minimal-variance
    diagonal sketch with systematic sampling for a fixed budget (Madow, Ann. Math. Stat. 1949);
    per-example sampling by gradient and activation norms: Liu et al., "Efficient
    Backpropagation with Variance-Controlled Adaptive Sampling" (VCAS), ICLR 2024.
    """

    name = "sparse-vjp"
    unbiased = True
    sketch: str
    keep: float
    axis: str
    layers: str
    share: bool
    params = (
        Param(name="sketch", kind=str, default="outer", choices=SKETCHES,
              help="uniform diagonal, minvar (minimal-variance diagonal), outer (minvar on "
                   "||g_i|| ||[a_i; 1]||, rows) or rank projection"),
        Param(name="keep", kind=float, default=0.5, low=0, high=1, low_open=True,
              help="kept fraction of the axis (diagonal) or rank fraction (rank)"),
        Param(name="axis", kind=str, default="row", choices=AXES,
              help="what one kept coordinate is: an element, an example row or a unit/channel"),
        Param(name="layers", kind=str, default="all", choices=LAYERS,
              help="all Linear/Conv2d layers, or hidden: all but the model's head"),
        Param(name="share", kind=bool, default=True,
              help="one example subset per step for every layer, scaled once at the loss"),
    )  # fmt: skip

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        try:
            self._plan = Plan(Sketch(self.sketch, self.keep), self.axis, shared=self.share)
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
        noise drawn from `generator` in forward order (what `estimate` does around its pass).

        With `share` the layers gather the rows of the K examples of largest gradient norm;
        the weighting of the losses that makes that exact (`estimate`) is not part of this, so
        a caller timing the backward alone gets the estimate's work, not its value."""
        dtype = next(self.model.parameters()).dtype

        def draw(shape: tuple[int, ...]) -> Tensor:
            return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)

        return sketched(self._layers, self._plan, draw)

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        x, y = batch
        params = trainable_parameters(self.model)
        with self.sketching(generator), head_input(self.model) as seen:
            logits = self.model(x)
            losses = self.loss(logits, y)  # (n,)
            loss = losses.mean()
            objective = loss
            if self.share:
                (dlogits,) = torch.autograd.grad(loss, logits, retain_graph=True)
                mags = self._example_magnitudes(dlogits, seen.features)
                noise = torch.rand(self._plan.sketch.noise_shape(len(x)), generator=generator,
                                   device=generator.device, dtype=losses.dtype)  # fmt: skip
                objective = losses.mul(example_weights(self._plan.sketch, mags, noise)).sum()
            grads = torch.autograd.grad(objective, list(params.values()))
        return Estimate(grads=dict(zip(params, grads, strict=True)), loss=loss.detach())

    def _example_magnitudes(self, dlogits: Tensor, features: Tensor | None) -> Tensor:
        """Per-example magnitudes (n,) the shared subset is drawn from: ||dl/dlogits_i||
        (`minvar`), times sqrt(||h_i||^2 + 1) for the head input h_i (`outer`)."""
        if self.sketch == "outer" and features is not None:
            return outer_magnitudes(dlogits.detach(), features.detach())
        return magnitudes(dlogits.detach(), 0)

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
        mags = self._shared_magnitudes(x, y) if self.share else None
        if mags is not None:
            shapes.append(self._plan.sketch.noise_shape(len(x)))  # the step's example subset

        def loss_of(p: dict[str, Tensor], noises: list[Tensor]) -> tuple[Tensor, Tensor]:
            layer_noises = noises[:-1] if mags is not None else noises
            with sketched(self._layers, self._plan, _replay(layer_noises)):
                logits = torch.func.functional_call(self.model, p, (x,))
            losses = self.loss(logits, y)
            loss = losses.mean()
            if mags is None:
                return loss, loss.detach()
            weights = example_weights(self._plan.sketch, mags, noises[-1])
            return losses.mul(weights).sum(), loss.detach()

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

    def _shared_magnitudes(self, x: Tensor, y: Tensor) -> Tensor:
        """`_example_magnitudes` at the current parameters (one plain forward, no graph)."""
        with torch.no_grad(), head_input(self.model) as seen:
            logits = self.model(x)
        with torch.enable_grad():
            logits.requires_grad_()
            (dlogits,) = torch.autograd.grad(self.loss(logits, y).mean(), logits)
        return self._example_magnitudes(dlogits, seen.features)

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
    layers: dict[str, nn.Module] = {
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


def example_weights(sketch: Sketch, mags: Tensor, noise: Tensor) -> Tensor:
    """w (n,) with w_i = scale_i / n on the kept examples, 0 elsewhere, so that sum_i w_i l_i
    is an unbiased estimate of the mean loss's gradient (E[w_i] = 1/n)."""
    kept = sketch.select(mags, noise)
    n = mags.shape[0]
    return put(kept.scale.to(mags.dtype) / n, kept.index, n)


@dataclass
class _Seen:
    """The input of a model's `head` module in the last forward pass (None: no `head`)."""

    features: Tensor | None = None


@contextmanager
def head_input(model: nn.Module) -> Iterator[_Seen]:
    """Within the block, the yielded `_Seen` records the input of the model's `head`."""
    seen = _Seen()
    head = dict(model.named_modules()).get("head")

    def pre(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        seen.features = args[0]

    hook = None if head is None else head.register_forward_pre_hook(pre)
    try:
        yield seen
    finally:
        if hook is not None:
            hook.remove()


def _replay(noises: list[Tensor]) -> Draw:
    """A `Draw` that hands out pre-drawn noise tensors in call order, checking their shapes."""
    queue = iter(noises)

    def draw(shape: tuple[int, ...]) -> Tensor:
        noise = next(queue)
        if tuple(noise.shape) != tuple(shape):
            raise RuntimeError(f"sparse-vjp: noise {tuple(noise.shape)} for a call of {shape}")
        return noise

    return draw
