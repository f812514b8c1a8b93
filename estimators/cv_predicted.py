"""Predicted gradients with control variates (Predicted Gradient Descent)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.func import grad as func_grad

from estimators.base import (
    Batch,
    Estimate,
    GradientEstimator,
    PerExampleLoss,
    trainable_parameters,
)
from estimators.params import Param
from estimators.predictors import GradientPredictor, HeadSignal, RidgePredictor

BETA_DECAY = 0.9  # moving-average decay of the statistics the fitted beta is computed from


def control_variate(
    true_control: Tensor, pred_control: Tensor, pred_gap: Tensor, beta: float
) -> Tensor:
    """G = beta g_pred(B) + (g_true(C) - beta g_pred(C)), given gap = g_pred(B) - g_pred(C).

    Unbiased for a fixed beta; written as g_true(C) + beta gap (one pass, no temporaries).
    """
    return torch.add(true_control, pred_gap, alpha=beta)


def nominal_cost_ratio(fraction: float) -> float:
    """Cost of a predict step over backprop's in forward-pass units: (1 + 2 (1 - f)) / 3."""
    return 1.0 - 2.0 * fraction / 3.0


def break_even_alignment(cost_ratio: float, fraction: float, beta: float = 1.0) -> float:
    """The cosine above which the method beats plain SGD per unit compute (class docstring).

    cos* = sqrt((1 - q) / (beta (2 - beta))), q = (1 - kappa)(1 - f) / (kappa f), kappa the cost
    ratio to backprop and f the predicted fraction; 0 when q >= 1 (any predictor breaks even),
    inf when no cosine <= 1 reaches it.
    """
    if not (cost_ratio > 0 and 0 < fraction < 1 and 0 <= beta <= 2):
        raise ValueError(f"need cost_ratio > 0, 0 < fraction < 1, 0 <= beta <= 2; got "
                         f"{cost_ratio}, {fraction}, {beta}")  # fmt: skip
    q = (1 - cost_ratio) * (1 - fraction) / (cost_ratio * fraction)
    if q >= 1:
        return 0.0
    gain = beta * (2 - beta)
    need = (1 - q) / gain if gain > 0 else math.inf
    return math.sqrt(need) if need <= 1 else math.inf


@dataclass
class _Part:
    """One micro-batch's forward pass: its size, mean loss and flat exact head gradient."""

    size: int
    loss: Tensor
    signal: Tensor  # (d_z,)


@dataclass
class _Feedback:
    """What `update` learns from a step: new control pairs and beta statistics."""

    pairs: list[tuple[Tensor, Tensor]]  # (signal (d_z,), true trunk gradient (d_t,))
    cross: float | None = None  # <g_true(C), Y>, Y = g_pred(C) - g_pred(B)
    spread: float | None = None  # ||Y||^2


class CVPredicted(GradientEstimator):
    """Predicted trunk gradients on most of the batch, debiased by a control micro-batch.

    Formula: each batch B (n examples) is split at random into a control micro-batch C of
    c = n - round(f n) examples and a prediction micro-batch P (the rest). With the head-side
    signal z(S) = exact head gradient over S (`predictors.HeadSignal`, forward pass only) and a
    predictor g_pred(S) = predictor(z(S)) fitted on EARLIER control micro-batches only, the
    trunk (every parameter outside `head`) gets
        G = beta g_pred(B) + (g_true(C) - beta g_pred(C)),
    g_true(C) by backprop on C alone; P gets a forward pass without graph. The head gets its
    exact batch gradient (c/n) head(C) + (p/n) head(P) from the two forward passes. Until the
    predictor is fitted (phase `warmup`), a step is exact backprop done in micro-batches of c
    examples, each giving one (z, g_true) pair; then (phase `predict`) each step gives one pair.
    beta is `beta`, or with `fit_beta` the ratio of moving averages (decay 0.9) of
    <g_true(C), Y> and ||Y||^2, Y = g_pred(C) - g_pred(B), over past steps (clipped to [0, 2]).

    Unbiased: yes, over the random split at a fixed predictor and beta (both set by past steps
    only). C is a uniform random subset, so E[g_true(C)] = g; the predictor is linear in z and
    z(C) is a mean over C, so E[g_pred(C)] = g_pred(B) and E[G] = g for any beta. The head part
    is exact. Needs examples processed independently (no BatchNorm), as in every suite model.
    Closed-form variance: with per-example trunk gradients t_i, predictions pi_i = g_pred(z_i)
    and residuals r_i = t_i - beta pi_i, sampling c of n without replacement gives
        E||G - g||^2 = (1/c - 1/n) S_r^2,  S_r^2 = sum_i ||r_i - mean r||^2 / (n - 1),
    minimised at beta* = E<g_true(C), Y> / E||Y||^2 (what `fit_beta` estimates).
    Break-even alignment (derived here; cf. the paper's Theorem "Break-even alignment"): over
    i.i.d. batches, with per-example variances sigma_t^2 of t_i and sigma_r^2 of r_i, the law
    of total variance gives V = sigma_t^2/n + (1/c - 1/n) sigma_r^2 against SGD's
    V0 = sigma_t^2/n. In the noise-dominated regime the steps to a given loss scale with the
    variance, so at cost ratio kappa (per step, to backprop) the method wins per unit compute
    iff kappa V < V0, i.e. sigma_r^2/sigma_t^2 < q = (1 - kappa)(1 - f)/(kappa f). For a
    calibrated predictor (residual orthogonal to the prediction, as least squares gives) at
    cosine cos(theta) to the true gradient, sigma_r^2/sigma_t^2 = 1 - beta(2 - beta)cos^2, so
        cos* = sqrt((1 - q) / (beta (2 - beta)))   (`break_even_alignment`);
    f = 3/4, kappa = 1/2, beta = 1 give q = 1/3 and cos* = 0.816. Diagnostics per predict step:
    `alignment` = cos(g_pred(C), g_true(C)) over the trunk, `residual` =
    ||g_true(C) - beta g_pred(C)||^2 / ||g_true(C)||^2, `beta`, and `break_even` at the nominal
    kappa = 1 - 2f/3 (`python -m runners.study cv-predicted` reports it at the measured kappa too).
    With `ratio_every` = k > 0, every k-th step that predicts (c >= 2) also logs
    `variance_ratio` = S_r^2 / S_t^2 on the control micro-batch, the quantity the break-even
    condition compares with q (beating SGD per unit compute needs it below q; above 1 the
    control variate adds variance to g_true(C) alone): sample variances over C of the
    per-example residuals r_i = t_i - beta pi_i and true trunk gradients t_i. Such a step gets
    g_true(C) as the mean of per-example gradients (`torch.func.vmap`; equal to the batched
    backward's up to float round-off) and predicts each of the c examples, about
    2 c m (d_z + d_t) more FLOPs, and holds 2 c d_t more numbers. That is not cheap: counted
    on the embedded tasks at buffer 2 a predict step costs 0.72x backprop's FLOPs on
    mlp-mnist1d (0.54x without), 1.78x on bagnet-digits (0.50x; per-example convolution
    gradients) and 0.51x on vit-digits (0.50x), and the predictions grow with m (at the
    default m = 64 on mlp-mnist1d 6.5x, against 0.88x without). So it is off by default (0), a
    measurement's tool: the FLOPs the runners count probe one step per phase and leave it out.

    Cost: warm-up steps as backprop (about 3 forward-pass units). Predict steps: one forward
    pass over B plus a backward pass over C, 1 + 2(1 - f) units (1.5 at f = 3/4, half of
    backprop), plus the prediction, 2 m (d_z + d_t) multiply-adds (m = `buffer`, d_z = head
    size, d_t = trunk size), and every `refit_every` steps a refit of 2 m^2 d_z + m^3. Memory:
    activations for C only, plus the buffer m (d_z + d_t) and up to `refit_every` queued pairs.

    Defaults (buffer 64, ridge 0.1, fitted beta): the lowest mean `variance_ratio` over the
    embedded tasks on the grid buffer {8, 16, 32, 64} x ridge {0.01, 0.1, 1} x beta {0.5, 1,
    fitted}, each setting training (Adam, the task's lr, seed 0) from the same 50 backprop
    steps, the ratio averaged over predict steps 11 to 30: mlp-mnist1d 0.639, bagnet-digits
    0.055, vit-digits 0.640 (mean 0.445; per-step sd about 0.05, 0.01, 0.10). Next: buffer 64,
    ridge 1, beta 1: 0.645, 0.086, 0.616 (0.449); buffer 64, ridge 0.01, fitted: 0.466; the old
    defaults (8, 1, beta 1): 0.870, 0.597, 0.878 (0.782). beta 0.5 and ridge 0.01 at beta 1
    do worse (up to 1.42 on mlp-mnist1d: the control variate then adds variance). The ratio
    still falls with the buffer at 64, the grid's edge; more pairs cost memory m d_t and a
    longer warm-up. Only bagnet-digits gets below the nominal break-even ratio q = 1/3
    (f = 3/4, kappa = 1/2): on mlp-mnist1d and vit-digits the control variate reduces the
    variance of g_true(C) but not enough to beat SGD per unit of compute. The rule looks at
    the ratio only, and the larger buffer costs FLOPs: a predict step (counted, refit left
    out) is 0.883x backprop's on mlp-mnist1d (0.575x at the old defaults), 0.544x on
    bagnet-digits (0.508x) and 0.542x on vit-digits (0.507x); at kappa = 0.883, q = 0.044 on
    mlp-mnist1d, far below its ratio.

    Reference: Ciosek, Felicioni and Elenter Litwin, "Linear Gradient Prediction with Control
    Variates", arXiv:2511.05187, 2025.
    """

    name = "cv-predicted"
    unbiased = True
    fraction: float
    buffer: int
    refit_every: int
    ridge: float
    beta: float
    fit_beta: bool
    ratio_every: int
    params = (
        Param(name="fraction", kind=float, default=0.75, low=0, high=1, high_open=True,
              help="fraction of each batch whose trunk gradient is predicted (no backward)"),
        Param(name="buffer", kind=int, default=64, low=1, high=4096,
              help="control pairs the ridge predictor is fitted on (its rank)"),
        Param(name="refit_every", kind=int, default=1, low=1, high=1_000_000,
              help="steps between predictor refits"),
        Param(name="ridge", kind=float, default=0.1, low=0, high=1e6, low_open=True,
              help="ridge strength, relative to the mean squared signal norm"),
        Param(name="beta", kind=float, default=1.0, low=0, high=2,
              help="control-variate coefficient (the starting value when fit_beta)"),
        Param(name="fit_beta", kind=bool, default=True,
              help="fit beta from past steps' moving averages"),
        Param(name="ratio_every", kind=int, default=0, low=0, high=1_000_000,
              help="steps between logs of variance_ratio = S_r^2 / S_t^2 on the control "
                   "micro-batch (per-example gradients); 0: never"),
    )  # fmt: skip

    def make_predictor(self) -> GradientPredictor:
        """The predictor a bind starts from; subclasses override it to use another."""
        return RidgePredictor(size=self.buffer, ridge=self.ridge)

    def bind(self, model: nn.Module, loss: PerExampleLoss) -> CVPredicted:
        super().bind(model, loss)
        self.head = HeadSignal(model)
        params = trainable_parameters(model)
        self.trunk = {n: p for n, p in params.items() if n not in self.head.names}
        self._sizes = [p.numel() for p in self.trunk.values()]
        self._shapes = {n: p.shape for n, p in params.items()}
        self.predictor = self.make_predictor()
        self._steps = 0
        self._cross = 0.0
        self._spread = 0.0
        return self

    def phase(self) -> str:
        return "predict" if self.predictor.ready else "warmup"

    def prime_steps(self) -> int:
        """Enough steps to fill the buffer however few pairs a step gives (one, at least)."""
        return self.buffer

    def control_size(self, n: int) -> int:
        """Examples in the control micro-batch of a batch of n (at least one)."""
        return min(n, max(1, n - round(self.fraction * n)))

    def break_even(self, beta: float) -> float:
        """Break-even alignment at the nominal cost ratio of this split (0: nothing predicted)."""
        if self.fraction == 0:
            return 0.0
        return break_even_alignment(nominal_cost_ratio(self.fraction), self.fraction, beta)

    def current_beta(self) -> float:
        """beta for the next step: fixed, or fitted from past steps only."""
        if not self.fit_beta or self._spread <= 0:
            return self.beta
        return min(2.0, max(0.0, self._cross / self._spread))

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        x, y = batch
        n = len(x)
        c = self.control_size(n)
        if not self.predictor.ready:
            return self._warmup(x, y, c)
        order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
        xc, yc = x[order[:c]], y[order[:c]]
        per_example = c >= 2 and self.ratio_every > 0 and self._steps % self.ratio_every == 0
        if per_example:
            control, true_c, signals, trunks = self._per_example(xc, yc)
        else:
            control, true_c = self._backward(xc, yc)
        parts = [control] if c == n else [control, self._forward(x[order[c:]], y[order[c:]])]
        whole = _mean(parts, n)
        gap = whole.signal - control.signal  # z(B) - z(C): predicts g_pred(B) - g_pred(C)
        preds = self.predictor.predict(torch.stack([control.signal, gap]))  # (2, d_t)
        beta = self.current_beta()
        trunk = control_variate(true_c, preds[0], preds[1], beta)
        products = [preds @ true_c, (preds @ preds.T).reshape(-1), true_c.dot(true_c)[None]]
        tc_pc, tc_gap, pc_pc, _, _, gap_gap, tc_tc = torch.cat(products).tolist()  # one sync
        tiny = 1e-300
        residual = max(0.0, tc_tc - 2 * beta * tc_pc + beta**2 * pc_pc)
        diagnostics = {
            "alignment": tc_pc / max(math.sqrt(pc_pc * tc_tc), tiny),
            "residual": residual / max(tc_tc, tiny),
            "beta": beta,
            "break_even": self.break_even(beta),
        }
        if per_example:
            diagnostics["variance_ratio"] = self._variance_ratio(signals, trunks, beta)
        feedback = _Feedback(
            pairs=[(control.signal, true_c)],
            cross=-tc_gap,
            spread=gap_gap,
        )
        return self._estimate(whole, trunk, diagnostics, feedback)

    def update(self, estimate: Estimate) -> None:
        feedback: _Feedback = estimate.feedback
        for signal, grad in feedback.pairs:
            self.predictor.observe(signal, grad)
        self._steps += 1
        if not self.predictor.ready or self._steps % self.refit_every == 0:
            self.predictor.refit()
        if feedback.cross is not None and feedback.spread is not None:
            self._cross = BETA_DECAY * self._cross + (1 - BETA_DECAY) * feedback.cross
            self._spread = BETA_DECAY * self._spread + (1 - BETA_DECAY) * feedback.spread

    def _warmup(self, x: Tensor, y: Tensor, c: int) -> Estimate:
        """Exact backprop in micro-batches of c examples; each gives the predictor a pair."""
        n = len(x)
        done = [self._backward(x[i : i + c], y[i : i + c]) for i in range(0, n, c)]
        trunk = torch.stack([part.size * t for part, t in done]).sum(0) / n
        pairs = [(part.signal, t) for part, t in done]
        return self._estimate(_mean([p for p, _ in done], n), trunk, {}, _Feedback(pairs=pairs))

    def _estimate(
        self, batch: _Part, trunk: Tensor, diagnostics: dict[str, float], feedback: _Feedback
    ) -> Estimate:
        """The trunk vector and the batch's exact head gradient as one Estimate."""
        grads = dict(zip(self.trunk, trunk.split(self._sizes), strict=True))
        grads.update(self.head.gradients(batch.signal))
        ordered = {name: grads[name].view(shape) for name, shape in self._shapes.items()}
        return Estimate(ordered, batch.loss, diagnostics, feedback)

    def _backward(self, x: Tensor, y: Tensor) -> tuple[_Part, Tensor]:
        """Forward and backward over a micro-batch: its part and true trunk gradient (d_t,)."""
        with self.head.capture() as seen:
            logits = self.model(x)  # (c, classes)
        loss = self.loss(logits, y).mean()
        dlogits, *trunk = torch.autograd.grad(loss, [logits, *self.trunk.values()])
        signal = self.head.signal(self.head.features(seen[-1].detach()), dlogits)
        flat = torch.cat([g.reshape(-1) for g in trunk])  # (d_t,)
        return _Part(len(x), loss.detach(), signal), flat

    def _per_example(self, x: Tensor, y: Tensor) -> tuple[_Part, Tensor, Tensor, Tensor]:
        """`_backward` from per-example gradients: the part, true trunk gradient (d_t,), and
        per-example head signals (c, d_z) and trunk gradients (c, d_t)."""
        params = {n: p.detach() for n, p in trainable_parameters(self.model).items()}

        def one(p: dict[str, Tensor], x1: Tensor, y1: Tensor) -> tuple[Tensor, Tensor]:
            loss = self.loss(functional_call(self.model, p, (x1[None],)), y1[None]).sum()
            return loss, loss.detach()

        grads, losses = vmap(func_grad(one, has_aux=True), in_dims=(None, 0, 0))(params, x, y)
        c = len(x)
        signals = torch.cat([grads[k].reshape(c, -1) for k in self.head.names], 1)  # (c, d_z)
        trunks = torch.cat([grads[k].reshape(c, -1) for k in self.trunk], 1)  # (c, d_t)
        return _Part(c, losses.mean(), signals.mean(0)), trunks.mean(0), signals, trunks

    def _variance_ratio(self, signals: Tensor, trunks: Tensor, beta: float) -> float:
        """S_r^2 / S_t^2 over a micro-batch: per-example residuals t_i - beta g_pred(z_i)
        against the t_i themselves (sample variances; the 1/(c-1) cancels)."""
        resid = trunks - beta * self.predictor.predict(signals)  # (c, d_t)
        s_r = (resid - resid.mean(0)).square().sum()
        s_t = (trunks - trunks.mean(0)).square().sum()
        return (s_r / s_t.clamp_min(1e-300)).item()

    def _forward(self, x: Tensor, y: Tensor) -> _Part:
        """Forward only (no graph) over a micro-batch: loss and head signal."""
        with torch.no_grad(), self.head.capture() as seen:
            logits = self.model(x)  # (p, classes)
        with torch.enable_grad():
            leaf = logits.requires_grad_()
            loss = self.loss(leaf, y).mean()
            (dlogits,) = torch.autograd.grad(loss, leaf)  # (p, classes)
        return _Part(len(x), loss.detach(), self.head.signal(self.head.features(seen[-1]), dlogits))


def _mean(parts: list[_Part], n: int) -> _Part:
    """The batch as a part: size-weighted means of the parts' losses and signals."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        share = second.size / n
        return _Part(
            n, first.loss.lerp(second.loss, share), first.signal.lerp(second.signal, share)
        )
    loss = torch.stack([p.size * p.loss for p in parts]).sum() / n
    signal = torch.stack([p.size * p.signal for p in parts]).sum(0) / n
    return _Part(n, loss, signal)
