"""Newton-Schulz orthonormalisation with fitted quintic steps, and a top-k subspace built on it.

`orthonormalize(Y)` maps a batch of tall matrices Y (m, k), m >= k, to their polar factor
Y (Y^T Y)^(-1/2): orthonormal columns spanning the same space, using only matrix products.
After scaling by the Frobenius norm every singular value lies in (0, 1]; each step
X <- a X + b X (X^T X) + c X (X^T X)^2 applies the odd quintic p(x) = a x + b x^3 + c x^5 to
every singular value and keeps the singular vectors. The steps (a, b, c) are fitted once by
`fit_schedule`: step i is the minimax quintic that brings the interval [lo_i, hi_i] closest to
1 (Remez exchange on the four alternation points lo, the two critical points of p, hi), and the
next interval is its image [1 - E_i, 1 + E_i] (the greedy scheme shown optimal by Amsel,
Persson, Musco and Gower, "The Polar Express", arXiv:2505.16932, 2025). The shipped schedule
(`data/ns_coefficients.json`, reproduced by a test) starts from lo = 1e-3: singular values down
to 1e-3 of the Frobenius norm end within `final_error` of 1; smaller ones grow by the product of
the a's (about 1e3) but do not reach 1, so a direction that weak is under-represented.

Why not the Muon quintic (3.4445, -4.7750, 2.0315) on M itself: it maps every singular value of
M, large or small, into roughly 0.7..1.2, so it orthogonalises all of M instead of selecting
the top k. Selection here comes from the sketch, not from the polynomial: `top_subspace` runs
subspace iteration on A = M^T M (Halko, Martinsson and Tropp, SIAM Review 2011): Y = M^T G with
G Gaussian (k columns), then `iterations` times Y <- A Q, each followed by Newton-Schulz in place
of a QR. The columns converge to the top-k right singular subspace of M at the rate
(sigma_{k+1} / sigma_k)^(2 x iterations); with a flat spectrum at k the subspace is mixed
with its neighbours (the overlap with the SVD's subspace is measured, not assumed). Cost per
site: (1 + 2 x iterations) products of M with k vectors plus small k x k products, against a full
SVD of M.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

Step = tuple[float, float, float]
SCHEDULE_FILE = Path(__file__).with_name("data") / "ns_coefficients.json"
WARM_START = 8  # subspace iterations on the consumer weight alone, shared by every site


def _minimax_quintic(lo: float, hi: float) -> tuple[Step, float]:
    """The odd quintic p minimising max |1 - p(x)| on [lo, hi], and that error (Remez)."""
    points = [lo, lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo), hi]
    for _ in range(200):
        system = torch.tensor(
            [[x, x**3, x**5, (-1.0) ** j] for j, x in enumerate(points)], dtype=torch.float64
        )
        a, b, c, error = torch.linalg.solve(system, torch.ones(4, dtype=torch.float64)).tolist()
        # interior extrema of 1 - p: roots of p'(x) = a + 3b x^2 + 5c x^4 in (lo, hi)
        disc = 9 * b * b - 20 * a * c
        if disc <= 0 or c == 0:
            break
        squares = [(-3 * b + sign * math.sqrt(disc)) / (10 * c) for sign in (-1, 1)]
        critical = sorted(math.sqrt(y) for y in squares if y > 0)
        if len(critical) != 2 or not lo < critical[0] < critical[1] < hi:
            break
        moved = max(abs(p - q) for p, q in zip(points[1:3], critical, strict=True))
        points = [lo, *critical, hi]
        if moved < 1e-15:
            break
    return (a, b, c), abs(error)


def fit_schedule(lower: float = 1e-3, steps: int = 8) -> list[Step]:
    """Greedy minimax quintic steps taking singular values in [lower, 1] towards 1."""
    lo, hi, schedule = lower, 1.0, []
    for _ in range(steps):
        step, error = _minimax_quintic(lo, hi)
        schedule.append(step)
        lo, hi = 1 - error, 1 + error
    return schedule


@cache
def shipped_schedule() -> tuple[Step, ...]:
    """The schedule fitted once and shipped as data (see `SCHEDULE_FILE`)."""
    data = json.loads(SCHEDULE_FILE.read_text())
    return tuple(tuple(step) for step in data["steps"])


def orthonormalize(y: Tensor, schedule: Sequence[Step]) -> Tensor:
    """Approximate polar factor of `y` (..., m, k), m >= k, by Newton-Schulz steps.

    The steps run on the k x k Gram matrix, in float64: with G = X^T X and
    h = a I + b G + c G^2, a step X <- X h gives G <- h G h (h commutes with G), so
    X_T = X_0 h_0 h_1 ... h_{T-1} costs two (m, k) products whatever the number of steps.
    """
    x = y / y.norm(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(y.dtype).tiny)
    wide = x.to(torch.float64)
    gram = wide.mT @ wide  # (..., k, k)
    eye = torch.eye(y.shape[-1], dtype=torch.float64, device=y.device)
    total = eye
    for a, b, c in schedule:
        h = a * eye + gram @ (b * eye + c * gram)
        gram = h @ gram @ h
        total = total @ h
    return x @ total.to(y.dtype)


def top_subspace(
    factor: Tensor,
    slope: Tensor,
    k: int,
    iterations: int,
    schedule: Sequence[Step],
    generator: torch.Generator,
) -> Tensor:
    """Orthonormal bases (S, in, k) near the top-k right singular subspace of each site's
    M = factor diag(slope) (factor C (r, in), slope (S, in)), by Newton-Schulz subspace iteration.

    Warm start shared by all sites: U, the top-k left singular subspace of C itself, from
    `WARM_START` subspace iterations on C C^T (one small matrix). Per site: Q = NS(M^T U), then
    `iterations` times Q <- NS(M^T M Q).
    """
    start = torch.randn(factor.shape[0], k, generator=generator, dtype=slope.dtype,
                        device=slope.device)  # fmt: skip
    shared = orthonormalize(start, schedule)  # (r, k)
    for _ in range(WARM_START):
        shared = orthonormalize(factor @ (factor.mT @ shared), schedule)
    q = orthonormalize(slope[..., None] * (factor.mT @ shared), schedule)  # M^T U: (S, in, k)
    for _ in range(iterations):
        image = torch.einsum("ri,sik->srk", factor, slope[..., None] * q)  # M Q: (S, r, k)
        back = torch.einsum("ri,srk->sik", factor, image)  # C^T M Q: (S, in, k)
        q = orthonormalize(slope[..., None] * back, schedule)  # M^T M Q, orthonormalised
    return q


def overlap(basis: Tensor, exact: Tensor) -> Tensor:
    """Mean squared cosine of the principal angles, ||exact^T basis||_F^2 / k, per site."""
    return (exact.mT @ basis).pow(2).sum((-2, -1)) / exact.shape[-1]
