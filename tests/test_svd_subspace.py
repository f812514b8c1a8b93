"""svd-subspace and its low-rank backward: exactness, state discipline, drift monitor, FLOPs.

Every comparison here is deterministic (float64 where exactness matters); nothing is timed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from estimators import Estimate, EstimatorError, make_estimator, trainable_parameters
from estimators.lowrank_grad import LowRankConv2dFn, lowrank_weight_grads
from estimators.svd_subspace import SvdSubspace, fit_basis, project, scoped_layers
from measurements.studies.blog_table import blog_config, run_pair, step_flops
from tasks.models import MLP, BagNet, ViT
from tasks.task import cross_entropy

Batches = Callable[[int], tuple[Tensor, Tensor]]


def _batches(
    shape: tuple[int, ...], classes: int, size: int = 16, dtype: torch.dtype = torch.float64
) -> Batches:
    """Step i -> a fixed random batch of inputs `shape` and labels."""

    def batch(i: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(100 + i)
        x = torch.randn(size, *shape, generator=gen, dtype=dtype)
        return x, torch.randint(0, classes, (size,), generator=gen)

    return batch


def _bound(spec: str, model: nn.Module) -> SvdSubspace:
    est = make_estimator(spec).bind(model, cross_entropy)
    assert isinstance(est, SvdSubspace)
    return est


def _gd_step(est: SvdSubspace, estimate: Estimate, lr: float = 0.05) -> None:
    with torch.no_grad():
        for name, p in trainable_parameters(est.model).items():
            p -= lr * estimate.grads[name]
    est.update(estimate)


def _exact(model: nn.Module, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    return make_estimator("backprop").bind(model, cross_entropy).estimate(batch, None).grads


MODELS = {
    "blog-mlp-first": (lambda: MLP(64, 2, width=10, depth=1), (64,), 2, "first"),
    "mlp-all": (lambda: MLP(12, 3, width=8, depth=2), (12,), 3, "all"),
    "bagnet-all": (lambda: BagNet(1, 3, width=6, receptive_field=5), (1, 8, 8), 3, "all"),
    "vit-all": (lambda: ViT(8, 2, 1, 3, dim=8, depth=1, heads=2, mlp_ratio=2), (1, 8, 8), 3, "all"),
}


@pytest.mark.parametrize("case", MODELS)
def test_lowrank_gives_the_same_update_as_project(case: str) -> None:
    """Float64, 8 steps through warm-up, projected and sentinel phases, models in lockstep."""
    factory, shape, classes, scope = MODELS[case]
    torch.manual_seed(0)
    model = factory().double()
    spec = f"svd-subspace:k=2,warmup=2,sentinel=3,scope={scope}"
    low = _bound(spec + ",mode=lowrank", model)
    ref = _bound(spec + ",mode=project", copy.deepcopy(model))
    batch = _batches(shape, classes)
    phases = []
    for step in range(8):
        phases.append(low.phase())
        a, b = low.estimate(batch(step), None), ref.estimate(batch(step), None)
        for name in a.grads:
            torch.testing.assert_close(a.grads[name], b.grads[name], rtol=1e-10, atol=1e-13)
        if low.phase() == "projected":  # the projection is not the identity here
            exact = _exact(model, batch(step))
            moved = [(a.grads[n] - exact[n]).norm() / exact[n].norm() for n in low.bases]
            assert max(moved) > 0.05
        _gd_step(low, a)
        _gd_step(ref, b)
    assert phases == ["warmup"] * 2 + ["projected"] * 2 + ["sentinel"] + ["projected"] * 2 + [
        "sentinel"
    ]


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_lowrank_conv_matches_projected_conv_gradients(
    stride: int, padding: int, dilation: int
) -> None:
    """Input and bias gradients exact, kernel gradient = (exact kernel gradient) P P^T."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=padding, dilation=dilation).double()
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    basis = torch.linalg.qr(torch.randn(27, 4, dtype=torch.float64))[0]  # (in kh kw, k)
    out = conv(x)
    weight = torch.randn_like(out)
    exact = torch.autograd.grad((out * weight).sum(), [x, conv.weight, conv.bias])
    low_out = LowRankConv2dFn.apply(x, conv.weight, conv.bias, basis, conv.stride, conv.padding,
                                    conv.dilation)  # fmt: skip
    low = torch.autograd.grad((low_out * weight).sum(), [x, conv.weight, conv.bias])
    torch.testing.assert_close(low_out, out)
    torch.testing.assert_close(low[0], exact[0])
    torch.testing.assert_close(low[2], exact[2])
    expected = project(exact[1].reshape(5, -1), basis).reshape_as(exact[1])
    torch.testing.assert_close(low[1], expected, rtol=1e-10, atol=1e-13)


def test_basis_is_orthonormal_top_subspace_and_projects() -> None:
    """P^T P = I; G P P^T is idempotent with residual orthogonal to P; P spans the top-k
    eigenvectors of sum_t G_t^T G_t / ||G_t||^2 (the stacked history's right singular vectors)."""
    gen = torch.Generator().manual_seed(0)
    history = [torch.randn(7, 12, generator=gen, dtype=torch.float64) * s for s in (1, 5, 0.1)]
    basis, singular = fit_basis(history, 3)
    assert basis.shape == (12, 3)
    torch.testing.assert_close(basis.T @ basis, torch.eye(3, dtype=torch.float64))
    g = torch.randn(7, 12, generator=gen, dtype=torch.float64)
    projected = project(g, basis)
    torch.testing.assert_close(projected, g @ basis @ basis.T)
    torch.testing.assert_close(project(projected, basis), projected)
    torch.testing.assert_close((g - projected) @ basis, torch.zeros(7, 3, dtype=torch.float64))
    gram = sum(h.T @ h / h.norm() ** 2 for h in history)
    _, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues
    top = vectors[:, -3:]
    torch.testing.assert_close(basis @ basis.T, top @ top.T)
    torch.testing.assert_close(singular.square().sum(), torch.tensor(3.0, dtype=torch.float64))


def test_fit_after_warmup_uses_the_warmup_gradients() -> None:
    """The basis after the warm-up is fit_basis of the exact gradients the warm-up returned."""
    torch.manual_seed(0)
    est = _bound("svd-subspace:k=3,warmup=4", MLP(12, 3, width=8, depth=1).double())
    batch = _batches((12,), 3)
    seen = []
    for step in range(4):
        estimate = est.estimate(batch(step), None)
        seen.append(estimate.grads["hidden.0.weight"].clone())
        _gd_step(est, estimate)
    expected = fit_basis(seen, 3)[0]
    basis = est.bases["hidden.0.weight"]
    torch.testing.assert_close(basis @ basis.T, expected @ expected.T)
    assert [(e.step, e.reason, e.k) for e in est.events] == [(3, "fit", 3)]


@pytest.mark.parametrize("mode", ["lowrank", "project"])
def test_warmup_and_sentinel_steps_return_exact_gradients(mode: str) -> None:
    torch.manual_seed(0)
    model = MLP(12, 3, width=8, depth=2).double()
    est = _bound(f"svd-subspace:warmup=3,sentinel=2,scope=all,mode={mode}", model)
    batch = _batches((12,), 3)
    checked = []
    for step in range(7):
        estimate = est.estimate(batch(step), None)
        if est.phase() != "projected":
            exact = _exact(model, batch(step))
            assert all(torch.equal(estimate.grads[n], exact[n]) for n in exact)
            checked.append(est.phase())
        _gd_step(est, estimate)
    assert checked == ["warmup"] * 3 + ["sentinel"] * 2


def _state(est: SvdSubspace) -> tuple[object, ...]:
    history = {n: [g.clone() for g in h] for n, h in est._history.items()}
    bases = {n: p.clone() for n, p in est.bases.items()}
    return est._step, est._smoothed, est._checkpoint, history, bases, list(est.events)


def _same(a: object, b: object) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("mode", ["lowrank", "project"])
def test_estimate_never_changes_state_and_update_does(mode: str) -> None:
    """In every phase: two estimates at one state are identical and leave the state as it was;
    update then changes it."""
    torch.manual_seed(0)
    est = _bound(
        f"svd-subspace:warmup=2,sentinel=2,scope=all,mode={mode}", MLP(12, 3, width=8).double()
    )
    batch = _batches((12,), 3)
    for step in range(6):
        before = _state(est)
        first, second = est.estimate(batch(step), None), est.estimate(batch(step), None)
        assert _same(_state(est), before)
        assert _same(first.grads, second.grads) and torch.equal(first.loss, second.loss)
        assert first.diagnostics == second.diagnostics
        _gd_step(est, first)
        assert not _same(_state(est), before)


def _subspace_batch(features: list[int], size: int = 16, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Inputs nonzero only in `features` of 6: every weight gradient of the first layer then
    has its rows in the span of those coordinate vectors."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(size, 6, dtype=torch.float64)
    x[:, features] = torch.randn(size, len(features), generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 2, (size,), generator=gen)


def _spans(basis: Tensor, features: list[int]) -> bool:
    target = torch.zeros(6, 6, dtype=torch.float64)
    target[features, features] = 1.0
    return torch.allclose(basis[:, : len(features)] @ basis[:, : len(features)].T, target)


def _warmed(spec: str, features: list[int], lr: float = 0.5) -> SvdSubspace:
    """The estimator after its 3 warm-up steps of gradient descent on one fixed batch."""
    torch.manual_seed(0)
    est = _bound(spec, MLP(6, 2, width=4, depth=1).double())
    for _ in range(3):
        _gd_step(est, est.estimate(_subspace_batch(features), None), lr)
    assert est.phase() == "sentinel"
    return est


@pytest.mark.parametrize("adaptive", [False, True])
def test_drift_monitor_refits_when_the_error_passes_the_threshold(adaptive: bool) -> None:
    """Warm-up gradients live in span(e0, e1); the sentinel's in span(e4, e5): error 1 > 0.5,
    a re-fit onto the new span (adaptive: with k + 1 = 3)."""
    spec = f"svd-subspace:k=2,warmup=3,sentinel=1,threshold=0.5,adaptive={adaptive}"
    est = _warmed(spec, [0, 1])
    assert _spans(est.bases["hidden.0.weight"], [0, 1])
    estimate = est.estimate(_subspace_batch([4, 5], seed=9), None)
    assert estimate.diagnostics["projection_error"] == pytest.approx(1.0)
    assert estimate.diagnostics["refit"] == 1.0
    assert estimate.diagnostics["k"] == (3.0 if adaptive else 2.0)
    _gd_step(est, estimate)
    event = est.events[-1]
    assert (event.step, event.reason, event.k) == (3, "error", 3 if adaptive else 2)
    assert event.error == pytest.approx(1.0)
    assert _spans(est.bases["hidden.0.weight"], [4, 5])


def test_drift_monitor_keeps_the_subspace_while_it_fits_and_the_loss_falls() -> None:
    """Gradient descent on the warm-up batch: error ~0 and a falling loss, so no re-fit."""
    est = _warmed("svd-subspace:k=2,warmup=3,sentinel=1,threshold=0.5", [0, 1])
    basis = est.bases["hidden.0.weight"]
    for _ in range(3):
        estimate = est.estimate(_subspace_batch([0, 1]), None)
        assert estimate.diagnostics["projection_error"] < 1e-10
        assert estimate.diagnostics["refit"] == 0.0
        _gd_step(est, estimate, lr=0.5)
    assert [e.reason for e in est.events] == ["fit"]
    assert torch.equal(est.bases["hidden.0.weight"], basis)


def test_drift_monitor_refits_when_the_smoothed_loss_stalls() -> None:
    """Parameters never move: the loss stays put, so every sentinel re-fits for the stall."""
    est = _warmed("svd-subspace:k=2,warmup=3,sentinel=1,threshold=0.5", [0, 1], lr=0.0)
    for _ in range(2):
        estimate = est.estimate(_subspace_batch([0, 1]), None)
        assert estimate.diagnostics["projection_error"] < 1e-10
        est.update(estimate)
    assert [e.reason for e in est.events] == ["fit", "stall", "stall"]


def test_adaptive_rank_shrinks_when_the_spectrum_allows() -> None:
    """Gradients of rank 1 (one input feature): a sentinel without drift drops k from 2 to 1;
    without `adaptive`, k stays."""
    fixed = _warmed("svd-subspace:k=2,warmup=3,sentinel=1", [0])
    _gd_step(fixed, fixed.estimate(_subspace_batch([0]), None), lr=0.5)
    assert fixed.bases["hidden.0.weight"].shape == (6, 2)
    est = _warmed("svd-subspace:k=2,warmup=3,sentinel=1,adaptive=true", [0])
    estimate = est.estimate(_subspace_batch([0]), None)
    assert estimate.diagnostics["k"] == 1.0
    _gd_step(est, estimate, lr=0.5)
    assert (est.events[-1].reason, est.events[-1].k) == ("shrink", 1)
    assert est.bases["hidden.0.weight"].shape == (6, 1)
    assert _spans(est.bases["hidden.0.weight"], [0])


def _has_instance_forward(model: nn.Module) -> bool:
    return any("forward" in m.__dict__ for m in model.modules())


def test_layers_are_restored_after_estimates_and_after_exceptions() -> None:
    torch.manual_seed(0)
    model = MLP(12, 3, width=8, depth=2).double()
    failing = {"on": False}

    def loss(logits: Tensor, y: Tensor) -> Tensor:
        if failing["on"]:
            raise RuntimeError("loss failed")
        return cross_entropy(logits, y)

    est = make_estimator("svd-subspace:warmup=1,scope=all").bind(model, loss)
    batch = _batches((12,), 3)
    est.update(est.estimate(batch(0), None))
    assert est.phase() == "projected"
    est.estimate(batch(1), None)
    assert not _has_instance_forward(model)
    failing["on"] = True
    with pytest.raises(RuntimeError, match="loss failed"):
        est.estimate(batch(1), None)
    assert not _has_instance_forward(model)
    layer = model.hidden[0]
    with (
        pytest.raises(ValueError, match="inside"),
        lowrank_weight_grads({layer: est.bases["hidden.0.weight"]}),
    ):
        assert "forward" in layer.__dict__
        raise ValueError("inside")
    assert not _has_instance_forward(model)


@pytest.mark.parametrize("mode", ["lowrank", "project"])
def test_no_grad_is_left_on_parameters(mode: str) -> None:
    torch.manual_seed(0)
    model = BagNet(1, 3, width=6, receptive_field=3)
    est = _bound(f"svd-subspace:warmup=1,sentinel=2,scope=all,mode={mode}", model)
    batch = _batches((1, 8, 8), 3, dtype=torch.float32)
    for step in range(4):
        estimate = est.estimate(batch(step), None)
        assert all(p.grad is None for p in model.parameters())
        est.update(estimate)


def test_scope_and_mode_checks() -> None:
    assert list(scoped_layers(MLP(4, 2, width=3, depth=2), "first")) == ["hidden.0.weight"]
    assert list(scoped_layers(ViT(8, 2, 1, 3, dim=8, depth=1, heads=2), "first")) == [
        "embed.weight"
    ]
    assert len(scoped_layers(BagNet(1, 3, width=6, receptive_field=5), "all")) == 5
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(EstimatorError, match="grouped convolution"):
        make_estimator("svd-subspace:mode=lowrank").bind(grouped, cross_entropy)
    make_estimator("svd-subspace:mode=project").bind(grouped, cross_entropy)
    with pytest.raises(EstimatorError, match="threshold"):
        make_estimator("svd-subspace:threshold=0")


def test_lowrank_cuts_first_layer_weight_gradient_flops_by_60_percent_on_the_blog_mlp() -> None:
    """Blog MLP (64 inputs, 10 hidden, k = 2), batch 256: the first layer's weight-gradient
    FLOPs are exactly 2 B k (in + out) + 2 out k in against backprop's 2 B in out (-76.6%)."""
    torch.manual_seed(0)
    model = MLP(64, 2, width=10, depth=1)
    x, y = torch.randn(256, 64), torch.randint(0, 2, (256,))
    est = make_estimator("svd-subspace:k=2,warmup=1").bind(model, cross_entropy)
    est.update(est.estimate((x, y), None))
    assert est.phase() == "projected"
    low = step_flops(est, (x, y), None)
    exact = step_flops(make_estimator("backprop").bind(model, cross_entropy), (x, y), None)
    b, fan_in, out, k = 256, 64, 10, 2
    assert exact[1] == 2 * b * fan_in * out
    assert low[1] == 2 * b * k * (fan_in + out) + 2 * out * k * fan_in
    assert low[1] / exact[1] - 1 <= -0.60
    assert low[0] < exact[0]


def test_blog_setup_accuracy_within_003_of_backprop_on_breast_cancer() -> None:
    """The reproduction table's accuracy goal on one data set, seed 0 (deterministic)."""
    task, data = blog_config("mlp-breast-cancer", lr=1.0)
    result = run_pair(task, data, seed=0)
    assert abs(result["delta_acc"]) <= 0.03
    assert result["baseline_acc"] > 0.9
