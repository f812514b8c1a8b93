"""FLOP counting: linear algebra by its documented formulas, elementwise work by its convention.

Each decomposition is called on shapes the estimators use (fg-wperp's per-site Gram matrices,
svd-subspace's stacked gradient history, cv-predicted's ridge system, the consumers' R factors),
batched, and the counter must give exactly the formula in `measurements.flops`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from measurements.flops import (
    cholesky_flops,
    count_flops,
    count_work,
    eigh_flops,
    inverse_flops,
    lstsq_flops,
    lu_solve_flops,
    qr_flops,
    svd_flops,
    triangular_solve_flops,
)

G = torch.Generator().manual_seed(0)
TALL = torch.randn(64, 128, 10, generator=G)  # (sites, m, n): a batch of tall matrices
WIDE = torch.randn(3, 10, 784, generator=G)  # svd-subspace: (layers, warm-up grads, fan_in)
SPD = TALL.mT @ TALL + torch.eye(10)  # (64, 10, 10): Gram matrices, positive definite
RHS = torch.randn(64, 10, 3, generator=G)  # three right-hand sides per system


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: torch.linalg.svd(WIDE, full_matrices=False), svd_flops(WIDE.shape, False)),
        (lambda: torch.linalg.svd(TALL), svd_flops(TALL.shape, True)),
        (lambda: torch.linalg.eigh(SPD), eigh_flops(SPD.shape)),
        (lambda: torch.linalg.qr(TALL), qr_flops(TALL.shape, "reduced")),
        (lambda: torch.linalg.qr(TALL, mode="r"), qr_flops(TALL.shape, "r")),
        (lambda: torch.linalg.qr(TALL, mode="complete"), qr_flops(TALL.shape, "complete")),
        (lambda: torch.linalg.solve(SPD, RHS), lu_solve_flops(SPD.shape, RHS.shape)),
        (lambda: torch.linalg.solve_ex(SPD, RHS), lu_solve_flops(SPD.shape, RHS.shape)),
        (lambda: torch.linalg.cholesky(SPD), cholesky_flops(SPD.shape)),
        (lambda: torch.linalg.inv(SPD), inverse_flops(SPD.shape)),
        (lambda: torch.linalg.lstsq(TALL, TALL[..., :3]), lstsq_flops(TALL.shape, (64, 128, 3))),
    ],
)  # fmt: skip
def test_linear_algebra_counts_its_formula(call: Callable[[], object], expected: int) -> None:
    assert expected > 0
    assert count_flops(call) == expected


def test_the_formulas_have_their_textbook_values() -> None:
    # n = 10, m = 128, one matrix: GvL's leading terms written out by hand
    assert svd_flops((128, 10), full_matrices=False) == 14 * 128 * 100 + 8 * 1000
    assert svd_flops((10, 128), full_matrices=False) == svd_flops((128, 10), False)
    assert eigh_flops((10, 10)) == 9 * 1000
    assert qr_flops((128, 10), "r") == int(2 * 100 * (128 - 10 / 3))
    assert lu_solve_flops((10, 10), (10, 3)) == int(2 * 1000 / 3 + 2 * 100 * 3)
    assert triangular_solve_flops((10, 10), (10, 3)) == 300
    assert cholesky_flops((2, 10, 10)) == int(2 * 1000 / 3)


def test_a_triangular_solve_after_a_cholesky_counts_both() -> None:
    factor = torch.linalg.cholesky(SPD)
    both = count_flops(lambda: torch.linalg.solve_triangular(factor, RHS, upper=False))
    assert both == triangular_solve_flops(factor.shape, RHS.shape)


def test_matmul_counts_are_unchanged_and_elementwise_work_is_its_own_column() -> None:
    x = torch.randn(8, 40, generator=G)
    w = torch.randn(40, 30, generator=G, requires_grad=True)
    work = count_work(lambda: torch.autograd.grad((x @ w).relu().sum(), w))
    assert work.flops == 2 * (2 * 8 * 40 * 30)  # forward product and the weight gradient
    # relu (240), the sum (1), its backward's expand of the ones (240 counted once as a fill
    # at most) and relu's backward (240): one op per output element, no views
    assert 480 <= work.elementwise <= 8 * 30 * 3 + 2
    gelu = count_work(lambda: torch.nn.functional.gelu(TALL))
    assert gelu == type(gelu)(flops=0, elementwise=TALL.numel())
    views = count_work(lambda: TALL.reshape(64, -1).t().unsqueeze(0))
    assert views.flops == 0 and views.elementwise == 0


def test_random_draws_count_as_elementwise_work() -> None:
    assert count_work(lambda: torch.randn(1000, generator=G)).elementwise == 1000


def test_training_counts_the_update_work_and_leaves_the_run_untouched() -> None:
    """cv-predicted refits its ridge predictor in `update`: the training loop's probe counts it
    (its FLOPs exceed the estimate's alone) and leaves the estimator's state and noise alone."""
    from estimators import make_estimator
    from measurements.train import probe_work
    from tasks import get_task
    from tasks.data import DataSource

    task = get_task("mlp-mnist1d")
    data = task.load(DataSource(None, False))
    batch = (data.x_train[:64], data.y_train[:64])
    est = make_estimator("cv-predicted").bind(task.model(), task.loss)
    noise = torch.Generator().manual_seed(0)
    for _ in range(est.prime_steps()):
        est.update(est.estimate(batch, noise))
    state = noise.get_state()
    phase = est.phase()
    estimate_only = count_flops(lambda: est.estimate(batch, torch.Generator().manual_seed(1)))
    assert probe_work(est, batch, noise).flops > estimate_only
    assert torch.equal(noise.get_state(), state) and est.phase() == phase
