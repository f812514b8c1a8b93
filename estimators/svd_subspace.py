"""SVD-subspace gradient projection with a drift monitor: the seed blog post's method, made real.

Warm-up steps use exact gradients and keep them; at the end of the warm-up each scoped layer's
subspace is the top-k right singular vectors of its stacked gradient history. Later steps use
the weight gradient projected onto that subspace, either computed in full and then projected
(`mode=project`, the blog's prototype) or computed directly in the subspace by a custom backward
(`mode=lowrank`, `estimators.lowrank_grad`). Every `sentinel`-th step after the warm-up is exact
again and checks the subspace.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from estimators.backprop import Backprop
from estimators.base import Batch, Estimate, GradientEstimator, PerExampleLoss, trainable_parameters
from estimators.errors import EstimatorError
from estimators.lowrank_grad import lowrank_weight_grads
from estimators.params import Param
from estimators.routing import unsupported_reason

SMOOTHING = 0.9  # EMA factor of the smoothed loss the stall test reads
STALL = 1e-3  # the loss stalls when its EMA fell by less than this fraction since the last check
SHRINK_MARGIN = 0.5  # adaptive: shrink k when rank k-1 keeps history error <= this x threshold


@dataclass(frozen=True)
class DriftEvent:
    """One (re-)fit of a layer's subspace: the step, the layer, why, the error seen, the new rank.

    reason: `fit` (end of the warm-up), `error` (the sentinel's projection error passed the
    threshold), `stall` (the smoothed loss fell by less than 0.1% since the previous check) or
    `shrink` (adaptive rank: rank k-1 describes the history well enough). error: the sentinel's
    relative projection error under the old subspace (nan for `fit`). step: 0-based.
    """

    step: int
    layer: str
    reason: str
    error: float
    k: int


@dataclass(frozen=True)
class _Feedback:
    """What `update` applies: exact gradients to remember, new bases, the events behind them."""

    true_grads: dict[str, Tensor]  # weight name -> (out, fan_in) exact gradient; {} if projected
    bases: dict[str, Tensor]  # weight name -> new (fan_in, k) basis
    events: tuple[DriftEvent, ...]
    checkpoint: bool  # the smoothed loss after this step is the next stall test's reference


def as_matrix(weight: Tensor) -> Tensor:
    """A Linear weight as is, a Conv kernel (out, in, kh, kw) as (out, in kh kw)."""
    return weight.reshape(weight.shape[0], -1)


def project(grad: Tensor, basis: Tensor) -> Tensor:
    """G P P^T for G (out, fan_in) and orthonormal P (fan_in, k), in factored order."""
    return (grad @ basis) @ basis.T  # (out, k) @ (k, fan_in)


def projection_error(grad: Tensor, basis: Tensor) -> float:
    """||G - G P P^T||_F / ||G||_F (0 for a zero gradient)."""
    norm = grad.norm().item()
    return (grad - project(grad, basis)).norm().item() / norm if norm > 0 else 0.0


def fit_basis(history: Sequence[Tensor], k: int) -> tuple[Tensor, Tensor]:
    """Top-k right singular vectors (fan_in, k') of the stacked history, and all singular values.

    Each gradient (out, fan_in) is scaled to unit norm before stacking, so early large gradients
    do not outweigh recent ones; k' = min(k, rank bound of the stack).
    """
    stacked = torch.cat([g / g.norm().clamp_min(torch.finfo(g.dtype).tiny) for g in history])
    _, singular, vh = torch.linalg.svd(stacked, full_matrices=False)  # vh: (r, fan_in)
    return vh[:k].T.contiguous(), singular


def tail_error(singular: Tensor, rank: int) -> float:
    """RMS relative projection error of the (unit-norm) history onto its top-`rank` subspace."""
    energy = singular.square()
    return math.sqrt((energy[rank:].sum() / energy.sum()).item())


def scoped_layers(model: nn.Module, scope: str) -> dict[str, nn.Module]:
    """Weight name -> module of every trainable Linear/Conv2d weight (`all`) or the first one."""
    trainable = trainable_parameters(model)
    layers = {
        f"{name}.weight": module
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d)) and f"{name}.weight" in trainable
    }
    if not layers:
        raise EstimatorError("svd-subspace: the model has no trainable Linear or Conv2d weight")
    return layers if scope == "all" else dict([next(iter(layers.items()))])


class SvdSubspace(GradientEstimator):
    """Weight gradients projected onto SVD subspaces of their own recent exact gradients.

    Formula: for a scoped layer with weight gradient G (out, fan_in; a Conv kernel reshaped),
    P = top-k right singular vectors of the stacked history [G_1/||G_1||; ...; G_T/||G_T||] of
    its last T <= warmup exact gradients, and the estimate is G P P^T; other parameters get
    their exact gradient. The first `warmup` steps and every `sentinel`-th step after them are
    exact (sentinels), and every exact gradient joins the history. A sentinel measures
    e = ||G - G P P^T|| / ||G|| per layer and re-fits P when e > threshold or the smoothed loss
    (EMA, factor 0.9) fell by less than 0.1% since the previous check (the end of the warm-up or
    the previous sentinel); such a re-fit restarts the history
    at the sentinel's gradient (the older ones span the subspace that just failed). With
    `adaptive`, a re-fit for e > threshold uses k+1, and a sentinel without drift shrinks to k-1
    when rank k-1 keeps the history's RMS error <= 0.5 x threshold.
    Unbiased: no. G P P^T drops the part of G outside the subspace, a systematic error of
    relative size e; only warm-up and sentinel steps are exact.
    Cost: warm-up and sentinel steps are backprop, 3 forward-pass units, plus (at fits only) one
    SVD per layer of a (T out, fan_in) matrix, which FLOP counters do not see. Projected steps in
    `lowrank` mode: the forward (1 unit) plus X P, k/out of each scoped layer's forward; input
    gradients as in backprop (none for the first layer); each scoped weight gradient costs
    B k (fan_in + out) + out k fan_in instead of B fan_in out multiply-adds (blog MLP, 64 inputs,
    10 hidden, k = 2: about -77% for the first layer's weight gradient). `project` mode costs
    backprop plus 2 out k fan_in per layer: no saving.
    Diagnostics: `k` (mean rank of the scoped layers); on exact checks (every step in `project`
    mode) `projection_error` (all scoped layers pooled) and `projection_error_max`; on sentinels
    `refit`, the number of layers re-fitted there. The full list of `DriftEvent`s is `events`.
    Reference: the seed blog post "Exploiting Gradient Correlations for Cheaper Training" (draft,
    June 2025); Gur-Ari, Roberts and Dyer, "Gradient Descent Happens in a Tiny Subspace", arXiv
    1812.04754 (2018); Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
    Projection", ICML 2024 (periodically re-fitted SVD projections of weight gradients).
    """

    name = "svd-subspace"
    unbiased = False
    params = (
        Param(name="k", kind=int, default=2, low=1, help="rank of each layer's subspace"),
        Param(name="warmup", kind=int, default=10, low=1,
              help="exact steps before the first fit; also the longest history"),
        Param(name="scope", kind=str, default="first", choices=("first", "all"),
              help="project the first Linear/Conv weight or all of them"),
        Param(name="sentinel", kind=int, default=10, low=0,
              help="every this many steps after the warm-up is exact and checks drift (0: never)"),
        Param(name="threshold", kind=float, default=0.5, low=0, high=1, low_open=True,
              help="re-fit when ||G - G P P^T|| / ||G|| exceeds this"),
        Param(name="adaptive", kind=bool, default=False,
              help="grow k on drift, shrink it when the spectrum allows"),
        Param(name="mode", kind=str, default="lowrank", choices=("lowrank", "project"),
              help="lowrank: project inside the backward; project: full backprop, then project"),
    )  # fmt: skip

    def bind(self, model: nn.Module, loss: PerExampleLoss) -> SvdSubspace:
        super().bind(model, loss)
        self._exact = Backprop().bind(model, loss)
        self._layers = scoped_layers(model, self.scope)
        if self.mode == "lowrank":
            for name, module in self._layers.items():
                reason = unsupported_reason(module)
                if reason is not None:
                    raise EstimatorError(f"svd-subspace: mode=lowrank cannot handle {name}: "
                                         f"{reason}; use mode=project")  # fmt: skip
        self._history: dict[str, deque[Tensor]] = {
            n: deque(maxlen=self.warmup) for n in self._layers
        }
        self._bases: dict[str, Tensor] = {}
        self._step = 0
        self._smoothed: float | None = None
        self._checkpoint = math.inf
        self.events: list[DriftEvent] = []
        return self

    @property
    def bases(self) -> dict[str, Tensor]:
        """The current subspace of each scoped weight, (fan_in, k); empty during the warm-up."""
        return dict(self._bases)

    def phase(self) -> str:
        if self._step < self.warmup:
            return "warmup"
        if self.sentinel and (self._step - self.warmup + 1) % self.sentinel == 0:
            return "sentinel"
        return "projected"

    def prime_steps(self) -> int:
        return self.warmup

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        phase = self.phase()
        if phase == "projected" and self.mode == "lowrank":
            with lowrank_weight_grads({self._layers[n]: p for n, p in self._bases.items()}):
                exact = self._exact.estimate(batch, generator)
            return Estimate(exact.grads, exact.loss, {"k": self._mean_k(self._bases)},
                            _Feedback({}, {}, (), checkpoint=False))  # fmt: skip
        exact = self._exact.estimate(batch, generator)
        true = {n: as_matrix(exact.grads[n]) for n in self._layers}
        if phase == "projected":
            grads = dict(exact.grads)
            for n, g in true.items():
                grads[n] = project(g, self._bases[n]).reshape_as(exact.grads[n])
            diagnostics = {**self._errors(true), "k": self._mean_k(self._bases)}
            return Estimate(grads, exact.loss, diagnostics, _Feedback({}, {}, (), False))
        diagnostics: dict[str, float] = {}
        bases: dict[str, Tensor] = {}
        events: list[DriftEvent] = []
        if phase == "sentinel":
            diagnostics = self._errors(true)
            bases, events = self._drift_check(true, exact.loss.item())
            diagnostics["refit"] = float(len(events))
        elif self._step == self.warmup - 1:
            bases, events = self._initial_fit(true)
        if bases or self._bases:
            diagnostics["k"] = self._mean_k({**self._bases, **bases})
        kept = {n: g.detach().clone() for n, g in true.items()}
        checkpoint = phase == "sentinel" or self._step == self.warmup - 1
        feedback = _Feedback(kept, bases, tuple(events), checkpoint)
        return Estimate(exact.grads, exact.loss, diagnostics, feedback)

    def update(self, estimate: Estimate) -> None:
        feedback: _Feedback = estimate.feedback
        restarted = {e.layer for e in feedback.events if e.reason in ("error", "stall")}
        for n, g in feedback.true_grads.items():
            if n in restarted:
                self._history[n].clear()
            self._history[n].append(g)
        self._bases.update(feedback.bases)
        self.events.extend(feedback.events)
        self._smoothed = self._smoothed_after(estimate.loss.item())
        if feedback.checkpoint:
            self._checkpoint = self._smoothed
        self._step += 1

    def _initial_fit(self, true: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[DriftEvent]]:
        bases = {n: fit_basis([*self._history[n], g], self.k)[0] for n, g in true.items()}
        events = [DriftEvent(self._step, n, "fit", math.nan, p.shape[1]) for n, p in bases.items()]
        return bases, events

    def _drift_check(
        self, true: dict[str, Tensor], loss: float
    ) -> tuple[dict[str, Tensor], list[DriftEvent]]:
        """New bases and events for the layers a sentinel step re-fits."""
        stalled = self._smoothed_after(loss) > (1 - STALL) * self._checkpoint
        bases: dict[str, Tensor] = {}
        events: list[DriftEvent] = []
        for n, g in true.items():
            k, error = self._bases[n].shape[1], projection_error(g, self._bases[n])
            reason = "error" if error > self.threshold else "stall" if stalled else None
            if reason is not None:
                grown = k + 1 if reason == "error" and self.adaptive else k
                bases[n] = fit_basis([g], grown)[0]
            elif self.adaptive and k > 1:
                smaller, singular = fit_basis([*self._history[n], g], k - 1)
                if tail_error(singular, k - 1) <= SHRINK_MARGIN * self.threshold:
                    reason, bases[n] = "shrink", smaller
            if reason is not None:
                events.append(DriftEvent(self._step, n, reason, error, bases[n].shape[1]))
        return bases, events

    def _errors(self, true: dict[str, Tensor]) -> dict[str, float]:
        """Pooled and worst relative projection error of the scoped layers' exact gradients."""
        errors = {n: projection_error(g, self._bases[n]) for n, g in true.items()}
        norms = {n: g.norm().item() for n, g in true.items()}
        total = sum(v**2 for v in norms.values())
        pooled = sum((errors[n] * norms[n]) ** 2 for n in true) / total if total > 0 else 0.0
        return {"projection_error": math.sqrt(pooled), "projection_error_max": max(errors.values())}

    def _smoothed_after(self, loss: float) -> float:
        if self._smoothed is None:
            return loss
        return SMOOTHING * self._smoothed + (1 - SMOOTHING) * loss

    @staticmethod
    def _mean_k(bases: dict[str, Tensor]) -> float:
        return sum(p.shape[1] for p in bases.values()) / len(bases)
