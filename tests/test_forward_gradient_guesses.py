"""Guided guesses: the W^T guess, W-perp's projector covariance, Newton-Schulz subspaces.

Float64 throughout; seeds stated per test.
"""

from __future__ import annotations

import json
from statistics import NormalDist

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estimators import make_estimator
from estimators.consumers import DERIVATIVES, consumers
from estimators.fg_wperp import WPerpGuess, top_right_singular
from estimators.newton_schulz import (
    SCHEDULE_FILE,
    fit_schedule,
    orthonormalize,
    overlap,
    shipped_schedule,
    top_subspace,
)
from tasks.models import MLP, BagNet, ViT
from tasks.task import cross_entropy


def _outputs(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Every module's output on `x`."""
    out: dict[str, Tensor] = {}
    handles = [m.register_forward_hook(lambda m, a, o, n=n: out.__setitem__(n, o))
               for n, m in model.named_modules()]  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return out


def _site_matrix(weight: Tensor) -> Tensor:
    """The consumer weight per site, built independently: (out * kh * kw, in)."""
    if weight.dim() == 2:
        return weight
    taps = [(i, j) for i in range(weight.shape[2]) for j in range(weight.shape[3])]
    return torch.cat([weight[:, :, i, j] for i, j in taps])


def _models() -> dict[str, tuple[nn.Module, Tensor]]:
    torch.manual_seed(0)
    return {
        "mlp": (MLP(6, 3, width=12, depth=2).double(), torch.randn(8, 6).double()),
        "bagnet": (BagNet(1, 3, width=5, receptive_field=3, pointwise=1).double(),
                   torch.randn(2, 1, 5, 5).double()),
        "vit": (ViT(4, 2, 1, 3, dim=4, depth=1, heads=1, mlp_ratio=2).double(),
                torch.randn(2, 1, 4, 4).double()),
    }  # fmt: skip


def _entry_z(u: Tensor, cov: Tensor) -> float:
    """max |empirical - expected| / se over covariance entries of Gaussian rows u (n, d)."""
    n = u.shape[0]
    emp = u.mT @ u / n
    se = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov.pow(2)) / n).sqrt()
    live = se > 1e-12
    assert (emp - cov)[~live].abs().sum() < 1e-10
    return ((emp - cov)[live].abs() / se[live]).max().item()


@pytest.mark.parametrize("family", ["mlp", "bagnet", "vit"])
def test_wt_and_wperp_guess_covariances(family: str) -> None:
    """Per site, fg-wt guesses have covariance D W^T W D and fg-wperp's the projector V_k V_k^T.

    D = diag(phi'(s)), W the consumer's per-site matrix (`_site_matrix`, built independently),
    V_k the top-k right singular vectors of W D (torch.linalg.svd of the explicit matrix; k
    capped by its rank, as dead ReLUs can leave fewer than k directions).
    fg-wperp guesses must lie in span(V_k) (residual < 1e-10) and their empirical covariance
    over 20,000 Gaussian draws must match the projector entrywise. Statistic: the largest
    |z| over covariance entries of one site (se^2 = (C_ii C_jj + C_ij^2) / n); alpha = 0.01 with
    a Bonferroni bound over the entries; draw seed 4. A guess with the top k+1 singular vectors
    would leave the subspace; an isotropic one would break the covariance.
    """
    model, x = _models()[family]
    outs, weights = _outputs(model, x), dict(model.named_parameters())
    n = 20_000
    for producer, consumer in consumers(model).items():
        s = outs[producer]  # the producer's output, layer layout
        w_site = _site_matrix(weights[consumer.weight].detach())
        d = w_site.shape[1]
        bound = NormalDist().inv_cdf(1 - 0.01 / (2 * d * d))
        rows = s.movedim(1, -1).reshape(-1, d) if consumer.conv else s.reshape(-1, d)
        slope = DERIVATIVES[consumer.activation](rows)  # (S, in)
        site = 1  # one site, its guesses read back from the layer layout
        for spec in ("fg-wt", "fg-wperp:k=3"):
            est = make_estimator(spec).bind(model, cross_entropy)
            u = est.guesses(n, torch.Generator().manual_seed(4))[producer](s, n)  # (n, *s.shape)
            u = (u.movedim(2, -1) if consumer.conv else u).reshape(n, -1, d)[:, site]  # (n, in)
            m = w_site * slope[site]
            if spec == "fg-wt":
                cov = m.mT @ m
            else:
                _, sigma, vh = torch.linalg.svd(m, full_matrices=False)
                rank = int((sigma > 1e-10 * sigma[0]).sum())  # k is capped by the rank
                basis = vh[: min(3, rank)].mT  # (in, k)
                cov = basis @ basis.mT
                assert (u - u @ cov).norm() / u.norm() < 1e-10
            assert _entry_z(u, cov) < bound, (producer, spec)


def test_conv_site_matrix_is_the_jacobian_block_and_its_factor_keeps_the_gram() -> None:
    """W_site^T W_site = J_p^T J_p, J_p the conv's Jacobian w.r.t. input position p (interior),
    and the QR factor C (in, in) has C^T C = W_site^T W_site."""
    torch.manual_seed(1)
    kernel = torch.randn(7, 4, 3, 3, dtype=torch.float64)
    x = torch.zeros(1, 4, 5, 5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda a: F.conv2d(a, kernel), x)  # (1,7,3,3,1,4,5,5)
    block = jac[0, :, :, :, 0, :, 2, 2].reshape(-1, 4)  # outputs reading position (2, 2)
    site = _site_matrix(kernel)
    assert torch.allclose(site.mT @ site, block.mT @ block)
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 7, 3))
    model.consumer_links = lambda: (_link("0", "2.weight"),)
    factor = consumers(model)["0"].factor(kernel)
    assert factor.shape == (4, 4) and torch.allclose(factor.mT @ factor, site.mT @ site)


def _link(producer: str, consumer: str) -> object:
    from tasks.links import ConsumerLink

    return ConsumerLink(producer, consumer, "relu")


def test_shipped_newton_schulz_steps_are_reproduced_by_the_fit() -> None:
    data = json.loads(SCHEDULE_FILE.read_text())
    refit = fit_schedule(data["lower"], len(data["steps"]))
    assert torch.allclose(torch.tensor(refit), torch.tensor(data["steps"]), atol=1e-9, rtol=0)
    assert tuple(map(tuple, data["steps"])) == shipped_schedule()


def test_orthonormalize_takes_singular_values_down_to_the_design_bound_to_one() -> None:
    """Singular values spread over [1e-3, 1] x scale come out within 1e-6 of 1, same span."""
    gen = torch.Generator().manual_seed(2)
    u = torch.linalg.qr(torch.randn(50, 40, 6, generator=gen, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(50, 6, 6, generator=gen, dtype=torch.float64)).Q
    sigma = torch.logspace(-3, 0, 6, dtype=torch.float64) * 7.0
    q = orthonormalize(u @ torch.diag(sigma) @ v.mT, shipped_schedule())
    eye = torch.eye(6, dtype=torch.float64)
    assert (q.mT @ q - eye).abs().max() < 1e-6
    assert (q @ q.mT - u @ u.mT).abs().max() < 1e-6


def _decaying(sites: int, width: int, decay: float, seed: int) -> tuple[Tensor, Tensor]:
    """A consumer weight with singular values decay^i and relu-like 0/1 slopes per site."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(width, width, generator=gen, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(width, width, generator=gen, dtype=torch.float64)).Q
    weight = u @ torch.diag(decay ** torch.arange(width, dtype=torch.float64)) @ v.mT
    slope = (torch.rand(sites, width, generator=gen, dtype=torch.float64) > 0.5).double()
    return weight, slope


@pytest.mark.parametrize("decay", [0.9, 0.97])
def test_newton_schulz_subspace_overlaps_the_svd_subspace_at_the_defaults(decay: float) -> None:
    """Mean overlap ||V_k^T Q||_F^2 / k >= 0.9 at k = 10, 5 iterations (the defaults), on 64
    sites of W diag(mask) with W's singular values decay^i (seed 3): 0.9 gives sigma_1 /
    sigma_10 = 2.6 as in the trained mlp-mnist1d; 0.97 a spectrum as flat at k as the first
    hidden layer of mlp-mnist1d:width=512 (sigma_11 / sigma_10 = 0.974 there), where 2
    iterations reach only 0.89. Q has orthonormal columns; guesses stay in span(Q)."""
    weight, slope = _decaying(64, 64, decay, seed=3)
    est = make_estimator("fg-wperp-ns")
    assert (est.k, est.iterations) == (10, 5)
    q = est.basis(weight, slope, torch.Generator().manual_seed(0))
    exact = WPerpGuess.basis(make_estimator("fg-wperp"), weight, slope, torch.Generator())
    assert overlap(q, exact).mean() >= 0.9
    assert (q.mT @ q - torch.eye(10, dtype=torch.float64)).abs().max() < 1e-6
    u = est.site_guess(weight, slope, 5, torch.Generator().manual_seed(0))  # (5, S, in), same Q
    inside = torch.einsum("sik,sjk,nsj->nsi", q, q, u)
    assert (u - inside).abs().max() < 1e-6 * u.abs().max()


def test_top_subspace_is_exact_when_k_reaches_the_rank() -> None:
    """With rank(M) <= k (a 10-row consumer, as the MLP's head) one iteration recovers the
    SVD's subspace exactly (overlap 1 - 1e-9)."""
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(6, 20, generator=gen, dtype=torch.float64)
    slope = torch.rand(16, 20, generator=gen, dtype=torch.float64)
    q = top_subspace(weight, slope, 6, 1, shipped_schedule(), gen)
    exact = torch.linalg.svd(weight * slope[:, None, :], full_matrices=False).Vh.mT  # (S, in, 6)
    assert overlap(q, exact).min() > 1 - 1e-9


@pytest.mark.parametrize("shape", [(64, 8, 32), (64, 32, 8), (16, 20, 20)])
def test_gram_eigendecomposition_gives_the_svd_subspace(shape: tuple[int, int, int]) -> None:
    """fg-wperp's V_k (from the Gram matrix's eigenvectors) spans torch.linalg.svd's top-k right
    singular subspace with orthonormal columns, for wide, tall and square M (seed 0, float64);
    a rank-deficient M gets zero columns beyond its rank."""
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(shape, generator=gen, dtype=torch.float64)
    k = 5
    basis = top_right_singular(m, k)
    exact = torch.linalg.svd(m, full_matrices=False).Vh[:, :k].mT
    assert torch.allclose(overlap(basis, exact), torch.ones(shape[0], dtype=torch.float64))
    eye = torch.eye(k, dtype=torch.float64).expand(shape[0], k, k)
    assert torch.allclose(basis.mT @ basis, eye, atol=1e-8)
    low = torch.randn(shape[0], shape[1], 3, generator=gen, dtype=torch.float64)
    low = low @ torch.randn(shape[0], 3, shape[2], generator=gen, dtype=torch.float64)  # rank 3
    cols = top_right_singular(low, k).norm(dim=-2)  # (S, k)
    assert torch.allclose(cols[:, :3], torch.ones(shape[0], 3, dtype=torch.float64))
    assert cols[:, 3:].abs().max() < 1e-12
