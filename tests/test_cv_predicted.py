"""cv-predicted: exact head, unbiased over random splits, variance as derived, state in update."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import pytest
import torch
from torch import Tensor, nn

from estimators import EstimatorError, make_estimator
from estimators import cv_predicted as cv
from estimators.cv_predicted import CVPredicted, break_even_alignment, nominal_cost_ratio
from estimators.predictors import GradientPredictor
from tasks.models import MLP, BagNet, ViT
from tasks.task import cross_entropy
from tests.threads import one_thread

N, CLASSES = 12, 3  # batch size; fraction 0.75 leaves a control micro-batch of 3
ALPHA = 0.001  # split evenly between the pooled and the per-coordinate statistic
CHI2_1 = 12.116  # 1 - ALPHA / 2 quantile of chi-square with 1 degree of freedom


@dataclass
class Bias:
    """pooled: T = R ||mean - g||^2 / tr(Sigma_hat); max_z: largest |mean_j - g_j| / se_j over
    coordinates with variance, against the Bonferroni limit z_limit; fixed: largest relative
    error of the coordinates without variance (the exact head)."""

    pooled: float
    max_z: float
    z_limit: float
    fixed: float

    @property
    def passes(self) -> bool:
        return self.pooled < CHI2_1 and self.max_z < self.z_limit and self.fixed < 1e-9


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    with one_thread():
        yield


def _family(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    if name == "mlp":
        return MLP(6, CLASSES, width=8, depth=2), (6,)
    if name == "bagnet":
        return BagNet(1, CLASSES, width=6, receptive_field=3, pointwise=1), (1, 6, 6)
    return ViT(4, 2, 1, CLASSES, dim=8, depth=1, heads=2, mlp_ratio=2), (1, 4, 4)


def _batch(shape: tuple[int, ...], seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, *shape, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, CLASSES, (N,), generator=gen)


def _primed(name: str, spec: str = "cv-predicted:buffer=4,ridge=0.01") -> tuple[CVPredicted, tuple]:
    """A float64 model of the family and an estimator fitted on 4 earlier batches.

    A light ridge keeps the predictions large, so that the control variate matters.
    """
    model, shape = _family(name)
    est = make_estimator(spec).bind(model.double(), cross_entropy)
    assert isinstance(est, CVPredicted)
    noise = torch.Generator().manual_seed(1)
    for k in range(est.prime_steps()):
        est.update(est.estimate(_batch(shape, 100 + k), noise))
    assert est.phase() == "predict"
    return est, shape


def _exact(est: CVPredicted, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    return make_estimator("backprop").bind(est.model, est.loss).estimate(batch, None).grads


def _flat(grads: dict[str, Tensor], lead: int = 0) -> Tensor:
    return torch.cat([g.reshape(lead, -1) if lead else g.reshape(-1) for g in grads.values()], -1)


def _bias_statistics(est: CVPredicted, batch: tuple[Tensor, Tensor], draws: int) -> Bias:
    """Pooled and per-coordinate bias statistics of R draws against the exact gradient."""
    sample = est.estimate_draws(batch, draws, torch.Generator().manual_seed(7))
    g = _flat(_exact(est, batch))
    flat = _flat(sample.grads, draws)  # (R, d)
    mean = flat.mean(0)
    var = (flat - mean).pow(2).sum(0) / (draws - 1)  # (d,)
    noisy = var > 1e-24 * g.pow(2).sum()
    z = (mean - g)[noisy] / (var[noisy] / draws).sqrt()
    return Bias(
        pooled=(draws * (mean - g).pow(2).sum() / var.sum()).item(),
        max_z=_max_abs(z),
        z_limit=NormalDist().inv_cdf(1 - ALPHA / 2 / (2 * max(1, len(z)))),
        fixed=_max_abs((mean - g)[~noisy]) / g.abs().max().item(),
    )


def _max_abs(t: Tensor) -> float:
    return t.abs().max().item() if t.numel() else 0.0


@pytest.mark.parametrize("family", ["mlp", "bagnet", "vit"])
def test_head_gradient_is_exact_and_warmup_is_backprop(family: str) -> None:
    """Warm-up steps equal backprop; predict steps carry the exact batch head gradient."""
    model, shape = _family(family)
    est = make_estimator("cv-predicted:buffer=8").bind(model.double(), cross_entropy)
    batch = _batch(shape, 0)
    exact = _exact(est, batch)
    warm = est.estimate(batch, torch.Generator().manual_seed(0))
    assert est.phase() == "warmup"
    for name, g in exact.items():
        torch.testing.assert_close(warm.grads[name], g, rtol=1e-10, atol=1e-12)
    est, shape = _primed(family)
    batch = _batch(shape, 0)
    exact = _exact(est, batch)
    step = est.estimate(batch, torch.Generator().manual_seed(0))
    for name in est.head.names:
        torch.testing.assert_close(step.grads[name], exact[name], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(step.loss, est.loss(est.model(batch[0]), batch[1]).mean())
    assert list(step.grads) == list(exact) and not any(
        p.grad is not None for p in model.parameters()
    )


@pytest.mark.parametrize("family", ["mlp", "bagnet", "vit"])
def test_unbiased_over_random_splits(family: str) -> None:
    """Mean of R = 400 splits at a frozen predictor matches the exact batch gradient.

    Statistics (alpha = 0.001 in all, half each): pooled T = R ||mean - g||^2 / tr(Sigma_hat);
    under unbiasedness R ||mean - g||^2 is (CLT) a Gaussian quadratic form with mean
    tr(Sigma), a weighted sum of chi-square(1) variables with weights summing to one, whose
    upper tail is at most chi-square(1)'s (Szekely and Bakirov 2003): reject if T > 12.12.
    Per coordinate, z_j = (mean_j - g_j) / se_j against the Bonferroni normal limit. The head
    has no variance and must match to 1e-9. Seeds: model 0, priming noise 1, batch 0, draws 7.
    """
    est, shape = _primed(family)
    bias = _bias_statistics(est, _batch(shape, 0), 400)
    assert bias.passes, bias


@pytest.mark.parametrize("family", ["mlp", "bagnet", "vit"])
@pytest.mark.parametrize(
    "broken",
    [
        lambda true_c, pred_c, gap, beta: beta * (pred_c + gap),
        lambda true_c, pred_c, gap, beta: pred_c + gap + 0.25 * (true_c - pred_c),
    ],
    ids=["control-term-dropped", "naive-mix"],
)
def test_dropping_the_control_term_is_detected(
    family: str, broken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unbiasedness statistics above reject without the control variate.

    Broken forms: the control term g_true(C) - beta g_pred(C) dropped (G = g_pred(B)), and the
    naive mix (c/n) g_true(C) + (p/n) g_pred(P) (true where computed, predicted elsewhere).
    """
    est, shape = _primed(family)
    monkeypatch.setattr(cv, "control_variate", broken)
    bias = _bias_statistics(est, _batch(shape, 0), 400)
    assert not bias.passes, bias


def _closed_form_variance(est: CVPredicted, batch: tuple[Tensor, Tensor]) -> float:
    """(1/c - 1/n) S_r^2 / ||g||^2 from per-example gradients and predictions."""
    x, y = batch
    per = [_exact(est, (x[i : i + 1], y[i : i + 1])) for i in range(N)]
    t = torch.stack([torch.cat([g[k].reshape(-1) for k in est.trunk]) for g in per])
    z = torch.stack([torch.cat([g[k].reshape(-1) for k in est.head.names]) for g in per])
    r = t - est.current_beta() * est.predictor.predict(z)
    s_r = (r - r.mean(0)).pow(2).sum() / (N - 1)
    c = est.control_size(N)
    return ((1 / c - 1 / N) * s_r / _flat(_exact(est, batch)).pow(2).sum()).item()


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_variance_matches_closed_form(beta: float) -> None:
    """Measured relative variance over R = 2000 splits is within 8% of the closed form.

    Statistic: measured / closed form. Its standard deviation over 15 draw seeds was 0.015
    here, so 8% is over 5 SDs (alpha < 1e-6 if Gaussian); it still rejects the closed form
    without the finite-population factor (ratio 0.75) or with replacement (0.82). beta = 0 is
    plain SGD on the control micro-batch; 0.5 and 1 use the predictor. Seeds as in the
    unbiasedness test.
    """
    est, shape = _primed("mlp", f"cv-predicted:buffer=4,beta={beta},fit_beta=false")
    batch = _batch(shape, 0)
    draws = 2000
    flat = _flat(est.estimate_draws(batch, draws, torch.Generator().manual_seed(7)).grads, draws)
    g2 = _flat(_exact(est, batch)).pow(2).sum()
    measured = ((flat - flat.mean(0)).pow(2).sum() / (draws - 1) / g2).item()
    assert measured == pytest.approx(_closed_form_variance(est, batch), rel=0.08)


def test_estimate_changes_no_state_and_update_refits_on_schedule() -> None:
    est, shape = _primed("mlp", "cv-predicted:buffer=4,refit_every=3,ratio_every=2")
    predictor = est.predictor
    batch = _batch(shape, 0)
    factor, queued = predictor.factor, len(predictor.queue)
    first = est.estimate(batch, torch.Generator().manual_seed(3))
    again = est.estimate(batch, torch.Generator().manual_seed(3))
    for name in first.grads:
        torch.testing.assert_close(first.grads[name], again.grads[name], rtol=0, atol=0)
    assert predictor.factor is factor and len(predictor.queue) == queued
    refits, ratio_logged = [], []
    for k in range(6):
        before = predictor.factor
        step = est.estimate(_batch(shape, 200 + k), torch.Generator().manual_seed(k))
        ratio_logged.append(("variance_ratio" in step.diagnostics, est._steps % 2 == 0))
        est.update(step)
        refits.append(predictor.factor is not before)
    assert sum(refits) == 2 and len(predictor.queue) == (est._steps % 3)
    assert all(logged == due for logged, due in ratio_logged)  # every 2nd step (ratio_every)
    assert set(first.diagnostics) == {
        "alignment", "residual", "beta", "break_even", "variance_ratio",
    }  # fmt: skip
    assert -1 <= first.diagnostics["alignment"] <= 1


@pytest.mark.parametrize("family", ["mlp", "bagnet", "vit"])
def test_variance_ratio_is_the_control_micro_batch_ratio(family: str) -> None:
    """The logged S_r^2 / S_t^2 equals the ratio recomputed from per-example gradients taken one
    example at a time by autograd on the same control micro-batch (the split replayed from the
    generator, seed 3), and the per-example path's estimate equals the batched backward's (the
    same step with the diagnostic off: ratio_every = 0), both to float64 round-off."""
    spec = "cv-predicted:buffer=4,ridge=0.01,beta=0.7,fit_beta=false,ratio_every=1"
    est, shape = _primed(family, spec)
    batch = _batch(shape, 0)
    step = est.estimate(batch, torch.Generator().manual_seed(3))
    c = est.control_size(N)
    order = torch.randperm(N, generator=torch.Generator().manual_seed(3))[:c]
    named = dict(est.model.named_parameters())
    zs, ts = [], []
    for i in order.tolist():
        loss = est.loss(est.model(batch[0][i : i + 1]), batch[1][i : i + 1]).sum()
        grads = dict(zip(named, torch.autograd.grad(loss, list(named.values())), strict=True))
        zs.append(torch.cat([grads[n].reshape(-1) for n in est.head.names]))
        ts.append(torch.cat([grads[n].reshape(-1) for n in est.trunk]))
    z, t = torch.stack(zs), torch.stack(ts)
    r = t - 0.7 * est.predictor.predict(z)
    want = ((r - r.mean(0)).square().sum() / (t - t.mean(0)).square().sum()).item()
    assert step.diagnostics["variance_ratio"] == pytest.approx(want, rel=1e-9)
    est.ratio_every = 0
    batched = est.estimate(batch, torch.Generator().manual_seed(3))
    assert "variance_ratio" not in batched.diagnostics
    for name, g in batched.grads.items():
        torch.testing.assert_close(step.grads[name], g, rtol=1e-10, atol=1e-13)


def test_fitted_beta_comes_from_past_steps_only() -> None:
    est, shape = _primed("mlp", "cv-predicted:buffer=4,fit_beta=true")
    start = est.current_beta()
    step = est.estimate(_batch(shape, 0), torch.Generator().manual_seed(0))
    assert est.current_beta() == start and step.diagnostics["beta"] == start
    est.update(step)
    assert 0 <= est.current_beta() <= 2
    assert est.current_beta() != start


def test_break_even_alignment_matches_its_variance_model() -> None:
    """At cos*, kappa x (1/n + (1/c - 1/n) rho) = 1/n with rho = 1 - beta (2 - beta) cos*^2."""
    assert break_even_alignment(0.5, 0.75) == pytest.approx(math.sqrt(2 / 3))
    assert nominal_cost_ratio(0.75) == pytest.approx(0.5)
    assert break_even_alignment(0.25, 0.75) == 0.0  # cheaper than SGD on C alone
    assert break_even_alignment(1.2, 0.75) == math.inf  # dearer than backprop: none suffices
    assert break_even_alignment(0.5, 0.75, beta=0.0) == math.inf
    n, f, kappa, beta = 64, 0.75, 0.55, 0.8
    cos = break_even_alignment(kappa, f, beta)
    c = n * (1 - f)
    rho = 1 - beta * (2 - beta) * cos**2
    assert kappa * (1 / n + (1 / c - 1 / n) * rho) == pytest.approx(1 / n)


class _LastPair(GradientPredictor):
    """Rank-one predictor: the last control gradient, scaled by the signals' projection."""

    def __init__(self) -> None:
        self.pair: tuple[Tensor, Tensor] | None = None
        self.next: tuple[Tensor, Tensor] | None = None

    @property
    def ready(self) -> bool:
        return self.pair is not None

    def predict(self, signals: Tensor) -> Tensor:
        assert self.pair is not None
        z, g = self.pair
        return (signals @ z / z.dot(z))[:, None] * g  # (k, d_t)

    def observe(self, signal: Tensor, grad: Tensor) -> None:
        self.next = (signal, grad)

    def refit(self) -> None:
        self.pair = self.next

    @property
    def nbytes(self) -> int:
        return 0


def test_another_predictor_is_a_small_subclass() -> None:
    """A predictor plugs in through `make_predictor`; the estimate stays unbiased (as above)."""

    class WithLastPair(CVPredicted):
        def make_predictor(self) -> GradientPredictor:
            return _LastPair()

    model, shape = _family("vit")
    est = WithLastPair().bind(model.double(), cross_entropy)
    noise = torch.Generator().manual_seed(1)
    est.update(est.estimate(_batch(shape, 100), noise))
    assert isinstance(est.predictor, _LastPair) and est.phase() == "predict"
    bias = _bias_statistics(est, _batch(shape, 0), 400)
    assert bias.passes, bias


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cv-predicted:fraction=1", r"fraction=1.0 is invalid; valid: a number in \[0, 1\)"),
        ("cv-predicted:buffer=0", r"buffer=0 is invalid"),
        ("cv-predicted:ridge=0", r"ridge=0.0 is invalid"),
        ("cv-predicted:beta=3", r"beta=3.0 is invalid; valid: a number in \[0, 2\]"),
    ],
)
def test_parameters_are_range_checked(spec: str, message: str) -> None:
    with pytest.raises(EstimatorError, match=message):
        make_estimator(spec)


def test_unsupported_head_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(EstimatorError, match="needs a final `head` module"):
        make_estimator("cv-predicted").bind(model, cross_entropy)
