"""Kernel benchmarks: each cheap kernel against its baseline, in one pytest-benchmark group.

    python -m pytest tests/test_kernels.py --benchmark-enable --benchmark-only
    python -m pytest tests/test_kernels.py --benchmark-enable --benchmark-only \
        --benchmark-autosave --benchmark-storage=/tmp/cg-bench
    python -m pytest tests/test_kernels.py --benchmark-enable --benchmark-only \
        --benchmark-storage=/tmp/cg-bench --benchmark-compare

`--benchmark-enable` is needed: `pyproject.toml` sets `addopts = "--benchmark-disable"`, and
`--benchmark-only` alone stops the run with "Can't have both --benchmark-only and
--benchmark-disable options". `--benchmark-save=NAME` stores a named run instead of an
autosaved one; `--benchmark-compare` with no value compares against the latest in the storage.

Groups (`baseline_*` is the reference in each):
- `tangent-pass`: one `fg-activity` estimate (one forward pass carrying one tangent, no
  backward) against a plain `model(x)` under `torch.no_grad()`; 4 x 256 MLP, batch 128.
- `sketched-backward`: one `sparse-vjp:keep=0.25` estimate against one `backprop` estimate,
  same model and batch.
- `newton-schulz`: `top_subspace` (fg-wperp-ns, k = 10, 5 iterations) against fg-wperp's
  exact basis from `torch.linalg.eigh` of the Gram matrix (`top_right_singular`), 64 sites of
  M = W diag(mask), W 128 x 128.
- `lowrank-weight-grad`: one Linear(784, 128) forward and backward to its weight and bias
  through `lowrank_weight_grads` (k = 8) against the plain one, batch 256.

In the normal run (benchmarks disabled) each benchmarked function runs once and the assertions
check that it computes what its baseline computes. CPU only, float32, seeds fixed.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from estimators import make_estimator
from estimators.base import Estimate, trainable_parameters
from estimators.fg_wperp import K, top_right_singular
from estimators.fg_wperp_ns import ITERATIONS
from estimators.lowrank_grad import lowrank_weight_grads
from estimators.newton_schulz import overlap, shipped_schedule, top_subspace
from tasks.models import MLP
from tasks.task import cross_entropy

IN_FEATURES, CLASSES, WIDTH, DEPTH, BATCH = 784, 10, 256, 4, 128
SITES, RANK, DECAY = 64, 128, 0.97
LAYER_IN, LAYER_OUT, LAYER_BATCH, LAYER_K = 784, 128, 256, 8
# fg-wperp-ns's docstring: at 5 iterations and sigma_11 / sigma_10 = 0.974 the mean overlap with
# the SVD's subspace is 0.905-0.926 (pinned >= 0.9 in test_forward_gradient_guesses at decay 0.97).
MIN_OVERLAP = 0.9


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return MLP(IN_FEATURES, CLASSES, width=WIDTH, depth=DEPTH)


@pytest.fixture
def batch() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, IN_FEATURES, generator=gen)
    y = torch.randint(CLASSES, (BATCH,), generator=gen)
    return x, y


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(2)


def _check_shapes(estimate: Estimate, model: nn.Module) -> None:
    params = trainable_parameters(model)
    assert list(estimate.grads) == list(params)
    for name, p in params.items():
        assert estimate.grads[name].shape == p.shape, name
        assert torch.isfinite(estimate.grads[name]).all(), name


def _batch_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    with torch.no_grad():
        return cross_entropy(model(batch[0]), batch[1]).mean()


# tangent-pass ------------------------------------------------------------------------------


@pytest.mark.benchmark(group="tangent-pass")
def test_tangent_pass_baseline_forward(benchmark, model, batch) -> None:
    x, _ = batch

    def forward() -> Tensor:
        with torch.no_grad():
            return model(x)

    logits = benchmark(forward)
    assert logits.shape == (BATCH, CLASSES)


@pytest.mark.benchmark(group="tangent-pass")
def test_tangent_pass_fg_activity(benchmark, model, batch, generator) -> None:
    """The tangent pass's primal is the plain forward: same batch loss; one grad per param."""
    est = make_estimator("fg-activity").bind(model, cross_entropy)
    estimate = benchmark(est.estimate, batch, generator)
    _check_shapes(estimate, model)
    torch.testing.assert_close(estimate.loss, _batch_loss(model, batch))


# sketched-backward -------------------------------------------------------------------------


@pytest.mark.benchmark(group="sketched-backward")
def test_sketched_backward_baseline_backprop(benchmark, model, batch, generator) -> None:
    est = make_estimator("backprop").bind(model, cross_entropy)
    estimate = benchmark(est.estimate, batch, generator)
    _check_shapes(estimate, model)


@pytest.mark.benchmark(group="sketched-backward")
def test_sketched_backward_sparse_vjp(benchmark, model, batch, generator) -> None:
    """Same forward (same loss) as backprop, gradients shaped like the parameters, and the
    sketch is really on (the estimate is not the exact gradient)."""
    est = make_estimator("sparse-vjp:keep=0.25").bind(model, cross_entropy)
    estimate = benchmark(est.estimate, batch, generator)
    _check_shapes(estimate, model)
    exact = make_estimator("backprop").bind(model, cross_entropy).estimate(batch, generator)
    torch.testing.assert_close(estimate.loss, exact.loss)
    assert not torch.allclose(estimate.grads["hidden.0.weight"], exact.grads["hidden.0.weight"])


# newton-schulz -----------------------------------------------------------------------------


@pytest.fixture
def sites() -> tuple[Tensor, Tensor]:
    """A consumer weight (RANK, RANK) with singular values DECAY^i and 0/1 (relu) slopes per
    site: the flat-at-k spectrum fg-wperp-ns's docstring measures its overlap on."""
    gen = torch.Generator().manual_seed(3)
    u = torch.linalg.qr(torch.randn(RANK, RANK, generator=gen)).Q
    v = torch.linalg.qr(torch.randn(RANK, RANK, generator=gen)).Q
    weight = u @ torch.diag(DECAY ** torch.arange(RANK, dtype=torch.float32)) @ v.mT
    slope = (torch.rand(SITES, RANK, generator=gen) > 0.5).float()
    return weight, slope


@pytest.mark.benchmark(group="newton-schulz")
def test_newton_schulz_baseline_eigh(benchmark, sites) -> None:
    """fg-wperp's basis: eigh of the smaller Gram matrix (here M M^T), V_k = M^T U_k / s_k."""
    weight, slope = sites
    basis = benchmark(lambda: top_right_singular(weight * slope[:, None, :], K.default))
    assert basis.shape == (SITES, RANK, K.default)
    assert torch.isfinite(basis).all()


@pytest.mark.benchmark(group="newton-schulz")
def test_newton_schulz_top_subspace(benchmark, sites) -> None:
    """Orthonormal columns whose mean overlap with the eigh subspace is >= MIN_OVERLAP."""
    weight, slope = sites
    schedule = shipped_schedule()

    def run() -> Tensor:
        gen = torch.Generator().manual_seed(0)  # the same sketch whatever the round count
        return top_subspace(weight, slope, K.default, ITERATIONS.default, schedule, gen)

    q = benchmark(run)
    assert q.shape == (SITES, RANK, K.default)
    eye = torch.eye(K.default).expand(SITES, -1, -1)
    torch.testing.assert_close(q.mT @ q, eye, atol=1e-5, rtol=0)
    exact = top_right_singular(weight * slope[:, None, :], K.default)
    assert overlap(q, exact).mean() >= MIN_OVERLAP


# lowrank-weight-grad -----------------------------------------------------------------------


@pytest.fixture
def layer_setup() -> tuple[nn.Linear, Tensor, Tensor, Tensor]:
    """A first layer (its input needs no gradient), its input, an upstream gradient and an
    orthonormal basis (in, k), as in `measurements.studies.lowrank_layer`."""
    torch.manual_seed(4)
    layer = nn.Linear(LAYER_IN, LAYER_OUT)
    x = torch.randn(LAYER_BATCH, LAYER_IN)
    seed = torch.randn(LAYER_BATCH, LAYER_OUT)
    basis = torch.linalg.qr(torch.randn(LAYER_IN, LAYER_K)).Q
    return layer, x, seed, basis


def _full_grads(layer: nn.Linear, x: Tensor, seed: Tensor) -> tuple[Tensor, ...]:
    return torch.autograd.grad((layer(x) * seed).sum(), [layer.weight, layer.bias])


@pytest.mark.benchmark(group="lowrank-weight-grad")
def test_lowrank_weight_grad_baseline_full(benchmark, layer_setup) -> None:
    layer, x, seed, _ = layer_setup
    weight, bias = benchmark(_full_grads, layer, x, seed)
    torch.testing.assert_close(weight, seed.T @ x)
    torch.testing.assert_close(bias, seed.sum(0))


@pytest.mark.benchmark(group="lowrank-weight-grad")
def test_lowrank_weight_grad_lowrank(benchmark, layer_setup) -> None:
    """The weight gradient is the full one projected on the basis, G P P^T (1e-5 relative);
    the bias gradient is the full one."""
    layer, x, seed, basis = layer_setup

    def lowrank() -> tuple[Tensor, ...]:
        with lowrank_weight_grads({layer: basis}):
            return _full_grads(layer, x, seed)

    weight, bias = benchmark(lowrank)
    full_weight, full_bias = _full_grads(layer, x, seed)
    projected = full_weight @ basis @ basis.T
    assert (weight - projected).norm() <= 1e-5 * projected.norm()
    torch.testing.assert_close(bias, full_bias)
