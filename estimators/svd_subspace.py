"""SVD-subspace gradient projection with a calibrated drift monitor: the seed blog post's method.

Warm-up steps use exact gradients and keep them; at the end of the warm-up each scoped layer's
subspace is the top-k right singular vectors of its stacked recent exact gradients (the
window). Later steps use the weight gradient projected onto that subspace, either computed in
full and then projected (`mode=project`, the blog's prototype) or computed directly in the
subspace by a custom backward (`mode=lowrank`, `estimators.lowrank_grad`). Every `sentinel`-th
step after the warm-up is exact again and checks the subspace against a threshold calibrated on
held-out exact gradients (see `SvdSubspace`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from estimators.backprop import Backprop
from estimators.base import Batch, Estimate, GradientEstimator, PerExampleLoss, trainable_parameters
from estimators.errors import EstimatorError
from estimators.lowrank_grad import lowrank_weight_grads
from estimators.params import Param
from estimators.routing import unsupported_reason

SMOOTHING = 0.9  # EMA factor of the smoothed loss the stall test reads
OVERSAMPLE = 6  # randomized fit: extra columns of the range sketch beyond k
POWER_STEPS = 1  # randomized fit: subspace (power) iterations
SKETCH_SEED = 0  # randomized fit: the fixed seed of its Gaussian test matrix (deterministic fits)


@dataclass(frozen=True)
class DriftEvent:
    """One (re-)fit or rank change of a layer's subspace.

    reason: `fit` (end of the warm-up), `error` (the sentinel's projection error passed the
    layer's threshold; the re-fit grows k when the previous sentinel also re-fitted for
    `error`), `stall` (the smoothed loss fell by less than the `stall` fraction since the
    previous check) or `shrink` (rank k-1 explains the window, see `SvdSubspace`). error: the
    sentinel's relative projection error under the old subspace (nan for `fit`). k: the rank
    after the event. threshold: the layer's re-fit threshold after the event. step: 0-based.
    """

    step: int
    layer: str
    reason: str
    error: float
    k: int
    threshold: float


@dataclass(frozen=True)
class Fit:
    """A subspace fitted to a window: its basis (fan_in, k'), the singular values found (the
    top ones, at least k') and the window's total energy (squared Frobenius norm of the stack of
    unit-norm gradients)."""

    basis: Tensor
    singular: Tensor
    energy: float

    def tail_error(self, rank: int) -> float:
        """RMS relative projection error of the window's gradients onto its top-`rank`
        subspace: sqrt(1 - sum_{i < rank} s_i^2 / energy)."""
        kept = self.singular[:rank].square().sum().item()
        return math.sqrt(max(0.0, 1 - kept / self.energy)) if self.energy > 0 else 0.0


@dataclass(frozen=True)
class _Layer:
    """A layer's subspace state after a step: basis, threshold, calibrated error, whether the
    last fit was a re-fit for `error` (a second one in a row grows k), and `coords`, the
    window's unit-norm gradients in basis coordinates, G_t P / ||G_t|| (out, k) each, oldest
    first, so that the shrink test needs no pass over the window."""

    basis: Tensor
    threshold: float
    calibrated: float
    error_refit: bool
    coords: tuple[Tensor, ...]


@dataclass(frozen=True)
class _Feedback:
    """What `update` applies: exact gradients to remember, new layer states, the events."""

    true_grads: dict[str, Tensor]  # weight name -> (out, fan_in) exact gradient; {} if projected
    layers: dict[str, _Layer]
    events: tuple[DriftEvent, ...]
    checkpoint: bool  # the smoothed loss after this step is the next stall test's reference


def as_matrix(weight: Tensor) -> Tensor:
    """A Linear weight as is, a Conv kernel (out, in, kh, kw) as (out, in kh kw)."""
    return weight.reshape(weight.shape[0], -1)


def project(grad: Tensor, basis: Tensor) -> Tensor:
    """G P P^T for G (out, fan_in) and orthonormal P (fan_in, k), in factored order."""
    return (grad @ basis) @ basis.T  # (out, k) @ (k, fan_in)


def projection_error(grad: Tensor, basis: Tensor) -> float:
    """||G - G P P^T||_F / ||G||_F (0 for a zero gradient); with orthonormal P this is
    sqrt(1 - ||G P||^2 / ||G||^2), computed that way (no (out, fan_in) residual is formed)."""
    norm2 = grad.square().sum().item()
    if norm2 <= 0:
        return 0.0
    return math.sqrt(max(0.0, 1 - (grad @ basis).square().sum().item() / norm2))


def _scales(history: Sequence[Tensor]) -> list[Tensor]:
    """1 / ||G_t|| for each gradient of the window (a zero gradient gets a huge finite scale)."""
    return [1 / g.norm().clamp_min(torch.finfo(g.dtype).tiny) for g in history]


def _gram(
    history: Sequence[Tensor], scales: Sequence[Tensor], right: Tensor | None = None
) -> Tensor:
    """(S R)^T (S R) for the stack S = [s_1 G_1; ...] of the window and R = `right` (identity
    when None), summed gradient by gradient (the stack is never formed)."""
    total: Tensor | None = None
    for g, s in zip(history, scales, strict=True):
        part = g if right is None else g @ right  # (out, n) or (out, l)
        term = (s * s) * (part.T @ part)
        total = term if total is None else total + term
    assert total is not None
    return total


def _top(gram: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending, clamped at 0) and the top-k eigenvectors of a symmetric PSD
    matrix."""
    values, vectors = torch.linalg.eigh(gram)  # ascending
    return values.flip(0).clamp_min(0), vectors.flip(1)[:, :k]


def fit_subspace(history: Sequence[Tensor], k: int) -> Fit:
    """Top-k right singular vectors of the stacked unit-norm window S = [G_1/||G_1||; ...].

    Each gradient is scaled to unit norm, so early large gradients do not outweigh recent ones.
    The right singular vectors of S are the eigenvectors of S^T S = sum_t G_t^T G_t / ||G_t||^2.
    When that is the cheaper way (2 m n^2 + 9 n^3 <= 2 (2 `POWER_STEPS` + 2) m n l FLOPs for the
    stack's m = T out rows, fan_in n and l below, i.e. n up to about 4 l) the n x n matrix is
    formed and diagonalised exactly. Otherwise a randomized range finder (Halko,
    Martinsson and Tropp 2011, algorithms 4.3-4.4 and 5.3): Q spans S^T S Y for Y = S^T Omega,
    Omega a fixed-seed Gaussian of l = k + `OVERSAMPLE` columns (`POWER_STEPS` power steps),
    and the top eigenvectors of (S Q)^T (S Q) (l x l) rotate Q into the basis: about
    2 (2 `POWER_STEPS` + 2) m n l FLOPs, never forming S. The basis has min(k, n) columns.
    """
    scales = _scales(history)
    energy = sum(min(1.0, (g.norm() * s).item()) ** 2 for g, s in zip(history, scales, strict=True))
    n, rows = history[0].shape[1], sum(g.shape[0] for g in history)
    k = min(k, n)
    width = min(k + OVERSAMPLE, n, rows)
    if 2 * rows * n * n + 9 * n**3 <= 2 * (2 * POWER_STEPS + 2) * rows * n * width:
        values, basis = _top(_gram(history, scales), k)
        return Fit(basis.contiguous(), values.sqrt(), energy)
    like = history[0]
    gen = torch.Generator(device=like.device).manual_seed(SKETCH_SEED)
    sketch = torch.zeros(n, width, device=like.device, dtype=like.dtype)
    for g, s in zip(history, scales, strict=True):
        omega = torch.randn(g.shape[0], width, generator=gen, device=like.device, dtype=like.dtype)
        sketch += s * (g.T @ omega)  # S^T Omega, block by block
    q = torch.linalg.qr(sketch)[0]  # (n, width)
    for _ in range(POWER_STEPS):
        power = torch.zeros_like(q)
        for g, s in zip(history, scales, strict=True):
            power += (s * s) * (g.T @ (g @ q))
        q = torch.linalg.qr(power)[0]  # S^T S Q, orthonormalised
    values, rotation = _top(_gram(history, scales, q), k)
    return Fit((q @ rotation).contiguous(), values.sqrt(), energy)


def fit_basis(history: Sequence[Tensor], k: int) -> tuple[Tensor, Tensor]:
    """`fit_subspace`'s basis (fan_in, k') and singular values."""
    fit = fit_subspace(history, k)
    return fit.basis, fit.singular


def calibrate(window: Sequence[Tensor], k: int, holdout: int) -> float:
    """RMS projection error of the newest `holdout` gradients of `window` onto the rank-k
    subspace fitted to the older ones: the error the fit makes on gradients it has not seen."""
    if len(window) <= holdout:
        raise EstimatorError(f"svd-subspace: calibration needs more than {holdout} gradients")
    basis = fit_subspace(window[:-holdout], k).basis
    errors = [projection_error(g, basis) for g in window[-holdout:]]
    return math.sqrt(sum(e * e for e in errors) / len(errors))


def coordinates(window: Sequence[Tensor], basis: Tensor) -> tuple[Tensor, ...]:
    """G_t P / ||G_t|| (out, k) for each gradient of the window."""
    return tuple(s * (g @ basis) for g, s in zip(window, _scales(window), strict=True))


def best_within(coords: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Energies (descending) and rotation R (k, k) of the window inside span(P), from the
    window's coordinates G_t P / ||G_t||: the best rank-r subspace of span(P) for the window is
    spanned by P R[:, :r] and keeps the first r energies."""
    gram = coords[0].T @ coords[0]
    for c in coords[1:]:
        gram = gram + c.T @ c
    return _top(gram, coords[0].shape[1])


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
    P = top-k right singular vectors of the stacked window [G_1/||G_1||; ...; G_T/||G_T||] of
    its last T <= `window` exact gradients, and the estimate is G P P^T; other parameters get
    their exact gradient. The first `warmup` steps and every `sentinel`-th step after them are
    exact (sentinels); every exact gradient joins the window, which is never cleared.
    Drift monitor, per layer:
    - Calibration, on the warm-up: its newest `holdout` gradients are held out, a rank-k
      subspace is fitted to the older ones, and its RMS error c on the held-out ones is the
      error a fitted subspace makes on gradients it has not seen. The threshold is c + `margin`
      (kept through re-fits); the subspace used is then fitted to the whole warm-up.
    - A sentinel measures e = ||G - G P P^T|| / ||G|| and re-fits from the window (the
      sentinel's gradient included) when e > threshold (`error`) or when the smoothed loss (EMA,
      factor 0.9) fell by less than the fraction `stall` since the previous check (`stall`). The
      stall test is off by default: on mini-batch training its 10-step comparison follows the
      batch noise (stall=0.001 fired at 6 of 29 sentinels per layer in 300 steps of
      mlp-mnist1d:width=1024 whose loss was still falling).
    - Adaptive rank (`adaptive`): a re-fit for `error` right after another one for `error` (the
      error stayed high after the re-fit) uses k + 1, at most `k_max`. A sentinel without drift
      shrinks to k-1 when the best (k-1)-dimensional part of the current subspace leaves the
      window's RMS error less than margin / 2 above what the whole subspace leaves.
    Unbiased: no. G P P^T drops the part of G outside the subspace, a systematic error of
    relative size e; only warm-up and sentinel steps are exact.
    Cost: measured by `measurements.flops.count_work`, one step against one backprop step at the
    task's batch, scope=all, k=2. A projected step in `lowrank` mode has FLOP ratio 0.67 on
    mlp-mnist1d at width 128 and 1024, 0.69 on vit-digits, 0.68 on bagnet-digits: the forward
    (1 unit), the input gradients as in backprop (none for the first layer), and per scoped layer
    2 B k (fan_in + out) + 2 out k fan_in FLOPs for X P, delta^T (X P) and its expansion to the
    dense (out, fan_in) update instead of backprop's 2 B fan_in out (blog MLP, 64 inputs, 10
    hidden, k = 2, first layer: -77% of its weight-gradient FLOPs). Warm-up and sentinel steps
    are backprop (ratio 1.00, plus G P products for the errors). A re-fit of all four layers
    costs 0.89-0.95 backprop steps of FLOPs on mlp-mnist1d (width 128 and 1024), 0.11 on
    vit-digits and bagnet-digits; the first fit, calibration included, 1.58-1.68 and 0.19-0.20.
    Over a cost cell on mlp-mnist1d:width=1024 (sentinels and re-fits in proportion) the FLOP
    ratio is 0.77. `project` mode costs backprop plus 2 out k fan_in per layer: no saving.
    Diagnostics: every step `k` (mean rank of the scoped layers) and `k:LAYER`; at sentinels
    (every step in `project` mode) `projection_error` (layers pooled, gradient-norm weighted),
    `projection_error_max`, `energy_kept` (pooled share ||G P||^2 / ||G||^2 the subspace keeps)
    and `error:LAYER`; at sentinels and fits `threshold` (mean over layers), `threshold:LAYER`,
    `refit` (layers re-fitted), `refit_error`, `refit_stall`, `grow`, `shrink` (layers with that
    event). The full list of `DriftEvent`s is `events`.
    Reference: the seed blog post "Exploiting Gradient Correlations for Cheaper Training" (draft,
    June 2025); Gur-Ari, Roberts and Dyer, "Gradient Descent Happens in a Tiny Subspace", arXiv
    1812.04754 (2018); Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
    Projection", ICML 2024 (periodically re-fitted SVD projections of weight gradients); Halko,
    Martinsson and Tropp, "Finding Structure with Randomness", SIAM Review 2011 (the fit).
    """

    name = "svd-subspace"
    unbiased = False
    params = (
        Param(name="k", kind=int, default=2, low=1, help="starting rank of each layer's subspace"),
        Param(name="k_max", kind=int, default=8, low=1,
              help="largest rank adaptive growth may reach (>= k)"),
        Param(name="warmup", kind=int, default=10, low=2, help="exact steps before the first fit"),
        Param(name="window", kind=int, default=10, low=2,
              help="most recent exact gradients a (re-)fit uses"),
        Param(name="holdout", kind=int, default=2, low=1,
              help="newest window gradients held out of the calibration fit"),
        Param(name="scope", kind=str, default="first", choices=("first", "all"),
              help="project the first Linear/Conv weight or all of them"),
        Param(name="sentinel", kind=int, default=10, low=0,
              help="every this many steps after the warm-up is exact and checks drift (0: never)"),
        Param(name="margin", kind=float, default=0.1, low=0, high=1,
              help="re-fit when the sentinel's error exceeds the calibrated error by this"),
        Param(name="stall", kind=float, default=0.0, low=0, high=1,
              help="re-fit when the smoothed loss fell by less than this fraction (0: never)"),
        Param(name="adaptive", kind=bool, default=True,
              help="grow k when the error stays high after a re-fit, shrink it when k-1 suffices"),
        Param(name="mode", kind=str, default="lowrank", choices=("lowrank", "project"),
              help="lowrank: project inside the backward; project: full backprop, then project"),
    )  # fmt: skip

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        if self.k > self.k_max:
            raise EstimatorError(f"svd-subspace: k={self.k} exceeds k_max={self.k_max}")
        if self.holdout >= min(self.warmup, self.window):
            raise EstimatorError(
                f"svd-subspace: holdout={self.holdout} must be below warmup={self.warmup} and "
                f"window={self.window} (the calibration fit needs at least one gradient)"
            )

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
            n: deque(maxlen=self.window) for n in self._layers
        }
        self._state: dict[str, _Layer] = {}
        self._routes: dict[nn.Module, Tensor] = {}  # module -> basis, rebuilt when bases change
        self._rank_diagnostics: dict[str, float] = {}
        self._step = 0
        self._smoothed: float | None = None
        self._checkpoint = math.inf
        self.events: list[DriftEvent] = []
        return self

    @property
    def bases(self) -> dict[str, Tensor]:
        """The current subspace of each scoped weight, (fan_in, k); empty during the warm-up."""
        return {n: s.basis for n, s in self._state.items()}

    @property
    def thresholds(self) -> dict[str, float]:
        """Each scoped weight's current re-fit threshold (calibrated error + margin)."""
        return {n: s.threshold for n, s in self._state.items()}

    def phase(self) -> str:
        if self._step < self.warmup - 1:
            return "warmup"
        if self._step == self.warmup - 1:
            return "fit"
        if self.sentinel and (self._step - self.warmup + 1) % self.sentinel == 0:
            return "sentinel"
        return "projected"

    def prime_steps(self) -> int:
        return self.warmup

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        phase = self.phase()
        if phase == "projected" and self.mode == "lowrank":
            with lowrank_weight_grads(self._routes):
                exact = self._exact.estimate(batch, generator)
            return Estimate(exact.grads, exact.loss, dict(self._rank_diagnostics),
                            _Feedback({}, {}, (), checkpoint=False))  # fmt: skip
        bases = self.bases
        exact = self._exact.estimate(batch, generator)
        true = {n: as_matrix(exact.grads[n]) for n in self._layers}
        if phase == "projected":
            grads = dict(exact.grads)
            for n, g in true.items():
                grads[n] = project(g, bases[n]).reshape_as(exact.grads[n])
            diagnostics = {**self._errors(true, bases), **self._ranks(bases)}
            return Estimate(grads, exact.loss, diagnostics, _Feedback({}, {}, (), False))
        diagnostics: dict[str, float] = {}
        layers: dict[str, _Layer] = {}
        events: list[DriftEvent] = []
        if phase == "sentinel":
            diagnostics = self._errors(true, bases)
            layers, events = self._drift_check(true, exact.loss.item())
        elif phase == "fit":
            layers, events = self._initial_fit(true)
        if phase in ("sentinel", "fit"):
            state = {**self._state, **layers}
            diagnostics |= self._ranks({n: s.basis for n, s in state.items()})
            old = {n: p.shape[1] for n, p in bases.items()}
            thresholds = {n: s.threshold for n, s in state.items()}
            diagnostics |= self._events(events, old, thresholds)
        kept = {n: g.detach().clone() for n, g in true.items()}
        checkpoint = phase in ("sentinel", "fit")
        feedback = _Feedback(kept, layers, tuple(events), checkpoint)
        return Estimate(exact.grads, exact.loss, diagnostics, feedback)

    def update(self, estimate: Estimate) -> None:
        feedback: _Feedback = estimate.feedback
        for n, g in feedback.true_grads.items():
            self._history[n].append(g)
        if feedback.layers:
            self._state.update(feedback.layers)
            self._routes = {self._layers[n]: s.basis for n, s in self._state.items()}
            self._rank_diagnostics = self._ranks(self.bases)
        self.events.extend(feedback.events)
        self._smoothed = self._smoothed_after(estimate.loss.item())
        if feedback.checkpoint:
            self._checkpoint = self._smoothed
        self._step += 1

    def _fit(self, window: list[Tensor], k: int, error_refit: bool, old: _Layer | None) -> _Layer:
        """Fit the whole window at rank k; the first fit (`old` None) also calibrates on it
        (newest `holdout` held out), a re-fit keeps the old calibration."""
        calibrated = calibrate(window, k, self.holdout) if old is None else old.calibrated
        basis = fit_subspace(window, k).basis
        return _Layer(basis, calibrated + self.margin, calibrated, error_refit,
                      coordinates(window, basis))  # fmt: skip

    def _initial_fit(self, true: dict[str, Tensor]) -> tuple[dict[str, _Layer], list[DriftEvent]]:
        layers = {n: self._fit([*self._history[n], g][-self.window :], self.k, False, None)
                  for n, g in true.items()}  # fmt: skip
        events = [DriftEvent(self._step, n, "fit", math.nan, s.basis.shape[1], s.threshold)
                  for n, s in layers.items()]  # fmt: skip
        return layers, events

    def _drift_check(
        self, true: dict[str, Tensor], loss: float
    ) -> tuple[dict[str, _Layer], list[DriftEvent]]:
        """New layer states and events for the layers a sentinel step re-fits or shrinks."""
        stalled = (
            self.stall > 0 and self._smoothed_after(loss) > (1 - self.stall) * self._checkpoint
        )
        layers: dict[str, _Layer] = {}
        events: list[DriftEvent] = []
        for n, g in true.items():
            state, window = self._state[n], [*self._history[n], g][-self.window :]
            k, error = state.basis.shape[1], projection_error(g, state.basis)
            reason = "error" if error > state.threshold else "stall" if stalled else None
            if reason is not None:
                grow = self.adaptive and reason == "error" and state.error_refit
                rank = min(k + 1, self.k_max) if grow else k
                layers[n] = self._fit(window, rank, reason == "error", state)
            else:  # no drift: the window gains the sentinel's coordinates
                coords = (*state.coords, coordinates([g], state.basis)[0])[-self.window :]
                layers[n] = replace(state, error_refit=False, coords=coords)
                if self.adaptive and k > 1:
                    energies, rotation = best_within(coords)
                    total = float(len(coords))  # each gradient has unit norm in the stack
                    whole = math.sqrt(max(0.0, 1 - energies.sum().item() / total))
                    smaller = math.sqrt(max(0.0, 1 - energies[:-1].sum().item() / total))
                    if smaller - whole < self.margin / 2:
                        reason, keep = "shrink", rotation[:, :-1]
                        layers[n] = replace(layers[n], basis=(state.basis @ keep).contiguous(),
                                            coords=tuple(c @ keep for c in coords))  # fmt: skip
            if reason is not None:
                new = layers[n]
                events.append(
                    DriftEvent(self._step, n, reason, error, new.basis.shape[1], new.threshold)
                )
        return layers, events

    def _errors(self, true: dict[str, Tensor], bases: dict[str, Tensor]) -> dict[str, float]:
        """Pooled and worst relative projection error of the scoped layers' exact gradients,
        the pooled share of gradient energy kept, and each layer's error."""
        errors = {n: projection_error(g, bases[n]) for n, g in true.items()}
        norms = {n: g.norm().item() for n, g in true.items()}
        total = sum(v**2 for v in norms.values())
        pooled = sum((errors[n] * norms[n]) ** 2 for n in true) / total if total > 0 else 0.0
        return {
            "projection_error": math.sqrt(pooled),
            "projection_error_max": max(errors.values()),
            "energy_kept": 1 - pooled,
            **{f"error:{n}": e for n, e in errors.items()},
        }

    @staticmethod
    def _events(
        events: list[DriftEvent], old: dict[str, int], thresholds: dict[str, float]
    ) -> dict[str, float]:
        """Counts of the step's events by kind (`grow`: re-fits to a rank above the layer's
        `old` one) and each layer's threshold after them."""
        kinds = [e.reason for e in events]
        grown = sum(e.reason == "error" and e.k > old.get(e.layer, e.k) for e in events)
        return {
            "refit": float(sum(r in ("error", "stall") for r in kinds)),
            "refit_error": float(kinds.count("error")),
            "refit_stall": float(kinds.count("stall")),
            "grow": float(grown),
            "shrink": float(kinds.count("shrink")),
            "threshold": sum(thresholds.values()) / len(thresholds),
            **{f"threshold:{n}": t for n, t in thresholds.items()},
        }

    def _smoothed_after(self, loss: float) -> float:
        if self._smoothed is None:
            return loss
        return SMOOTHING * self._smoothed + (1 - SMOOTHING) * loss

    @staticmethod
    def _ranks(bases: dict[str, Tensor]) -> dict[str, float]:
        ranks = {n: float(p.shape[1]) for n, p in bases.items()}
        return {"k": sum(ranks.values()) / len(ranks), **{f"k:{n}": r for n, r in ranks.items()}}
