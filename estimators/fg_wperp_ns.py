"""W-perp with Newton-Schulz subspace iteration in place of the per-example SVD."""

from __future__ import annotations

import torch
from torch import Tensor

from estimators.fg_wperp import K, WPerpGuess
from estimators.forward_gradient import TANGENTS, noise_param
from estimators.newton_schulz import shipped_schedule, top_subspace
from estimators.params import Param

ITERATIONS = Param(
    name="iterations",
    kind=int,
    default=5,
    low=0,
    help="subspace iterations (products with M^T M), each orthonormalised by Newton-Schulz",
)
STEPS = Param(
    name="steps",
    kind=int,
    default=len(shipped_schedule()),
    low=1,
    high=len(shipped_schedule()),
    help="Newton-Schulz steps per orthonormalisation (the first of the shipped fitted steps)",
)


class WPerpNewtonSchulz(WPerpGuess):
    """W-perp whose top-k subspace comes from Newton-Schulz subspace iteration, not an SVD.

    Formula: as `fg-wperp`, u = Q z with z ~ (0, I_k), but the basis Q of each site's top-k
    right singular subspace of M = W diag(phi'(s)) is Q = NS(M^T G), then `iterations` times
    Q <- NS(M^T M Q), G Gaussian (r, k) and NS the fitted Newton-Schulz orthonormalisation of
    `estimators.newton_schulz` (its docstring says how the steps were derived and why the
    subspace, not the polynomial, selects the top k).
    Unbiased: no. Its covariance is E_G[Q Q^T], near the projector V_k V_k^T of `fg-wperp` when
    sigma_{k+1} / sigma_k is small; the subspace overlap with the SVD's is reported by the
    forward-gradients study, not assumed. Default `iterations` = 5: on the first hidden layer of
    mlp-mnist1d:width=512 (sigma_11 / sigma_10 = 0.974) the mean overlap is 0.905-0.926 over
    seven sketches, against 0.87 at 2 and 0.89-0.91 at 3; the trained default MLP reaches 0.9
    at 2. There it costs 0.49 s against 23.9 s for the batched SVD (`python -m runners.study
    forward-gradients:tables=ns`, `fg_ns.csv`).
    Cost: as `fg-activity` (about 3 forward-pass units) plus (1 + 2 x iterations) products of M
    with k vectors per site and guided layer and a few k x k products per Newton-Schulz step:
    O(S r in k) against the SVD's O(S r in min(r, in)). FLOP ratio to backprop 40 on
    mlp-mnist1d, 14.8 on vit-digits, 23 on bagnet-digits (`measurements.flops.count_work`, one
    estimate at the defaults on the task's batch against one backprop step; `fg-wperp`: 209,
    16.6, 46).
    Reference: Wang, Markou and Campbell, "Towards Scalable Backpropagation-Free Gradient
    Estimation", 2025 (W-perp and its Newton-Schulz variant); Halko, Martinsson and Tropp,
    SIAM Review 53(2), 2011 (subspace iteration); Amsel et al., "The Polar Express",
    arXiv:2505.16932, 2025 (minimax Newton-Schulz steps).
    """

    name = "fg-wperp-ns"
    unbiased = False
    params = (K, ITERATIONS, STEPS, TANGENTS, noise_param("gaussian"))

    def basis(self, factor: Tensor, slope: Tensor, generator: torch.Generator) -> Tensor:
        k = min(self.k, *factor.shape)
        schedule = shipped_schedule()[: self.steps]
        return top_subspace(factor, slope, k, self.iterations, schedule, generator)
