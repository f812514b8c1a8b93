"""Gradient-quality statistics of R draws against the exact gradient, per layer and in total.

For draws g_1..g_R of an estimator and the exact batch gradient g (the protocol's definitions):
- cosine: mean_r cos(g_r, g), with a 95% Student-t interval (R - 1 degrees of freedom);
- relative variance: sum_r ||g_r - m||^2 / ((R - 1) ||g||^2), m = mean_r g_r;
- relative bias: sqrt(max(0, ||m - g||^2 - var_abs / R)) / ||g||, the finite-R noise floor
  var_abs / R removed (var_abs = sum_r ||g_r - m||^2 / (R - 1)); ||m - g||^2 - var_abs / R is the
  U-statistic mean_{r != s} <e_r, e_s> of the residuals e_r = g_r - g, unbiased for ||E g_r - g||^2;
- its standard error `rel_bias_se`: from the delete-one jackknife standard error s_U of that
  U-statistic (Efron and Tibshirani, An Introduction to the Bootstrap, 1993, §11.2), the rise
  (sqrt(U+ + s_U) - sqrt(U+)) / ||g|| one standard error gives, U+ = max(0, U): the delta method
  far from 0, and never 0 for a bias estimated as 0 from noisy draws; near 0 it is a scale only,
  so significance is read from the bias test, never from it;
- the bias test (`bias_stat`, `bias_p`) of H0 "E g_r = g" at level `ALPHA`: three tests of the
  residuals e_r = g_r - g, each at ALPHA / 3 (Bonferroni, valid whatever their dependence),
  `bias_p` = min(1, 3 min(p_along, p_across, p_spread)), NaN when R < 4:
  along g / ||g||, where shrinkage biases lie, Johnson's skewness-corrected t (N. J. Johnson,
  JASA 73:536-544, 1978; a forward gradient's projection on g is chi-square-like, and Student's t
  rejects 12% of unbiased fg-weight draws at R = 16);
  across, Hotelling's T^2 (Anderson, An Introduction to Multivariate Statistical Analysis, 3rd
  ed., §5.2) on q = min(2, R - 3, d - 1) unit directions drawn from a standard normal by a
  generator seeded `DIRECTION_SEED` (fixed, independent of the draws; more directions make
  Hotelling's level drift up on heavy-tailed draws: on sparse-vjp's first layer at R = 16 it
  alone rejected 2.8% of 400 repeats at q = 2, 13.8% at q = 4, 28.8% at q = 6);
  spread, the self-normalised U-statistic over all d coordinates (`spread_test`), one-sided,
  which finds a bias spread over many coordinates that few projections miss; `bias_stat` is its z,
  the squared-bias estimate in units of its null standard error.
  Projections or inner products below `RESOLUTION` ||g|| (float32 resolution: a deterministic
  estimator) count as exact, and a deterministic offset beyond it as a certain bias (p = 0). No
  test of a mean holds its level for every distribution at finite R (Bahadur and Savage, Ann.
  Math. Statist. 27:1115-1122, 1956): the level is checked on the estimators themselves;
- relative MSE: mean_r ||g_r - g||^2 / ||g||^2, with a 95% Student-t interval.
The scale-invariant error of draws against a target over several batches (`scaled_error`) is
the work-normalised MSE's numerator (`measurements.quality`).
A layer is a module: parameters named `a.b.weight` and `a.b.bias` form layer `a.b`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from scipy import stats
from torch import Tensor

ALPHA = 0.05  # the bias test's level; the intervals are 1 - ALPHA = 95%
BIAS_DIRECTIONS = 2  # q, the random directions of the bias test (besides g's own)
DIRECTION_SEED = 0
RESOLUTION = 1e-6  # relative spread or offset below which a projection counts as deterministic
SPREAD_UNITS = 64  # most units (draws or batch means of draws) of the spread test


def layer_of(param_name: str) -> str:
    """The module a parameter belongs to (`hidden.0.weight` -> `hidden.0`; `pos` -> `pos`)."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def layer_sums(per_param: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-parameter quantities (sums of squares, inner products) added up per layer and 'total'."""
    out: dict[str, Tensor] = {}
    for name, value in per_param.items():
        for key in (layer_of(name), "total"):
            out[key] = out[key] + value if key in out else value
    return out


def _flat(grads: dict[str, Tensor], names: list[str], lead: int) -> Tensor:
    return torch.cat(
        [grads[n].reshape(lead, -1) if lead else grads[n].reshape(-1) for n in names], -1
    )


def t_interval(samples: Tensor) -> tuple[float, float, float]:
    """Mean of n samples and its 95% Student-t interval, mean -+ t_{0.975, n-1} s / sqrt(n)."""
    n, mean = len(samples), samples.mean().item()
    if n < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * samples.std().item() / math.sqrt(n)
    return mean, mean - half, mean + half


def directions(q: int, d: int) -> Tensor:
    """q fixed unit vectors in R^d (float64, CPU): standard normal rows seeded `DIRECTION_SEED`."""
    gen = torch.Generator().manual_seed(DIRECTION_SEED)
    rows = torch.randn(q, d, generator=gen, dtype=torch.float64)
    return rows / rows.norm(dim=1, keepdim=True)


def johnson_t(y: Tensor, floor: float) -> tuple[float, float]:
    """Johnson's skewness-corrected t of "E y = 0" for R values and its two-sided p (t, R - 1 df):
    t_J = (ybar + mu3 / (6 s^2 R) + mu3 ybar^2 / (3 s^4)) / (s / sqrt(R)), mu3 = mean (y - ybar)^3.
    Values that vary by at most `floor` are deterministic: an offset beyond it is certain."""
    r, mean, sd = len(y), y.mean().item(), y.std().item()
    if sd <= floor:
        return (0.0, 1.0) if abs(mean) <= floor else (math.copysign(math.inf, mean), 0.0)
    mu3 = (y - mean).pow(3).mean().item()
    t = (mean + mu3 / (6 * sd**2 * r) + mu3 * mean**2 / (3 * sd**4)) / (sd / math.sqrt(r))
    return t, float(2 * stats.t.sf(abs(t), r - 1))


def hotelling(y: Tensor, floor: float) -> tuple[float, float]:
    """Hotelling's T^2 of "E y = 0" for R points in R^q and its p-value, from
    (R - p) / (p (R - 1)) T^2 ~ F(p, R - p). Axes of the sample covariance along which the points
    vary by at most `floor` are deterministic: left out of T^2 (p counts the others), and an offset
    of the mean beyond `floor` along one is certain (T^2 = inf, p-value 0)."""
    r, q = y.shape
    spread, axes = torch.linalg.eigh(torch.cov(y.T).reshape(q, q))
    offset = axes.T @ y.mean(0)
    varies = spread > floor**2
    if (offset[~varies].abs() > floor).any():
        return math.inf, 0.0
    p = int(varies.sum())
    if p == 0:
        return 0.0, 1.0
    t2 = r * (offset[varies].pow(2) / spread[varies]).sum().item()
    return t2, float(stats.f.sf((r - p) / (p * (r - 1)) * t2, p, r - p))


def spread_test(residuals: Tensor, floor: float) -> tuple[float, float]:
    """Self-normalised z of "E e = 0" over all d coordinates and its one-sided p (normal).

    The units are the residuals e_r, or `SPREAD_UNITS` batch means of them when R is larger (the
    cost is O(units^2 d)); h_rs = <e_r, e_s> over pairs r < s. Their sum is R(R-1)/2 times the
    U-statistic of ||E e||^2 (Chen and Qin, Ann. Statist. 38:808-835, 2010); under H0 the h_rs have
    mean 0 and are pairwise uncorrelated, so sum h_rs^2 is unbiased for the sum's variance and
    z = sum h_rs / sqrt(sum h_rs^2). Inner products below `floor`^2 are zero (exact draws)."""
    units = torch.stack(
        [c.mean(0) for c in residuals.tensor_split(min(len(residuals), SPREAD_UNITS))]
    )
    upper = torch.triu_indices(len(units), len(units), 1, device=units.device)
    h = (units @ units.T)[upper[0], upper[1]]
    if h.abs().max().item() <= floor**2:
        return 0.0, 1.0
    z = (h.sum() / h.pow(2).sum().sqrt()).item()
    return z, float(stats.norm.sf(z))


def bias_test(residuals: Tensor, exact: Tensor) -> tuple[float, float]:
    """(z of the spread test, Bonferroni p-value) of "E g_r = g", residuals g_r - g (R, d)."""
    r, d = residuals.shape
    q = min(BIAS_DIRECTIONS, r - 3, d - 1)
    scale = exact.norm().item()
    if q < 1 or scale == 0:
        return math.nan, math.nan
    floor = RESOLUTION * scale
    basis = torch.cat([exact[None] / scale, directions(q, d).to(exact.device)])
    y = (residuals @ basis.T).cpu()
    _, p_along = johnson_t(y[:, 0], floor)
    _, p_across = hotelling(y[:, 1:], floor)
    z, p_spread = spread_test(residuals, floor)
    return z, min(1.0, 3 * min(p_along, p_across, p_spread))


def rel_bias_se(residuals: Tensor, norm: float, u: float) -> float:
    """Standard error of the relative bias sqrt(max(0, U)) / ||g||, from the delete-one jackknife
    standard error s_U of the squared-bias U-statistic U: (sqrt(U+ + s_U) - sqrt(U+)) / ||g||,
    U+ = max(0, U), the rise one standard error of U gives (the delta method's s_U / (2 sqrt(U))
    when U >> s_U; sqrt(s_U) / ||g||, not 0, when U <= 0). Without draw i, U is
    (sum_{r != s} <e_r, e_s> - 2 c_i) / ((R - 1)(R - 2)), c_i = <e_i, sum_s e_s> - ||e_i||^2."""
    r = residuals.shape[0]
    if r < 3:
        return math.nan
    cross = residuals @ residuals.sum(0) - residuals.pow(2).sum(1)
    left_out = (cross.sum() - 2 * cross) / ((r - 1) * (r - 2))
    s_u = math.sqrt((r - 1) / r * (left_out - left_out.mean()).pow(2).sum().item())
    up = max(0.0, u)
    return (math.sqrt(up + s_u) - math.sqrt(up)) / norm


def statistics(draws: Tensor, exact: Tensor) -> dict[str, Any]:
    """Quality statistics of `draws` (R, d) against `exact` (d,), computed in float64."""
    draws, exact = draws.double(), exact.double()
    r = draws.shape[0]
    norm2 = exact.pow(2).sum()
    mean = draws.mean(dim=0)
    var_abs = (draws - mean).pow(2).sum() / (r - 1) if r > 1 else torch.tensor(math.nan)
    bias2 = (mean - exact).pow(2).sum() - var_abs / r
    cos = (draws @ exact) / (draws.norm(dim=1) * exact.norm()).clamp_min(1e-300)
    cosine, cos_lo, cos_hi = t_interval(cos)
    resid = draws - exact
    mse, mse_lo, mse_hi = t_interval(resid.pow(2).sum(dim=1) / norm2)
    stat, p = bias_test(resid, exact)
    return {
        "cosine": cosine,
        "cosine_lo": cos_lo,
        "cosine_hi": cos_hi,
        "rel_bias": math.sqrt(max(0.0, bias2.item())) / math.sqrt(norm2.item()),
        "rel_bias_se": rel_bias_se(resid, math.sqrt(norm2.item()), bias2.item()),
        "bias_stat": stat,
        "bias_p": p,
        "rel_variance": (var_abs / norm2).item(),
        "rel_mse": mse,
        "rel_mse_lo": mse_lo,
        "rel_mse_hi": mse_hi,
        "draws": r,
    }


def quality_by_layer(draws: dict[str, Tensor], exact: dict[str, Tensor]) -> dict[str, dict]:
    """Statistics per layer and for the whole vector (`total`), keyed by layer name."""
    names = list(exact)
    r = next(iter(draws.values())).shape[0]
    layers: dict[str, list[str]] = {}
    for name in names:
        layers.setdefault(layer_of(name), []).append(name)
    out = {
        layer: statistics(_flat(draws, members, r), _flat(exact, members, 0))
        for layer, members in layers.items()
    }
    out["total"] = statistics(_flat(draws, names, r), _flat(exact, names, 0))
    return out


def scaled_error(
    norm2: Sequence[Tensor], inner: Sequence[Tensor], target2: float
) -> tuple[float, float, float, float]:
    """Error of draws against a target G after their best common scale, over K batches.

    Batch k's draws g_hat have ||g_hat||^2 = `norm2[k]` and <g_hat, G> = `inner[k]` (one value a
    draw); every batch weighs 1/K. The scale is c* = E<g_hat, G> / E||g_hat||^2 (0 when the draws
    are 0), the least-squares scale a tuned learning rate applies, and each draw's error is
    ||c* g_hat - G||^2 = c*^2 ||g_hat||^2 - 2 c* <g_hat, G> + ||G||^2. Returns (c*, the mean error
    over batches, its 95% t-interval): draws on one batch share it, so the K batch means are the
    independent units (K - 1 degrees of freedom); c* is treated as fixed.
    """
    a = torch.stack([v.double().mean() for v in norm2]).mean().item()
    c = torch.stack([v.double().mean() for v in inner]).mean().item() / a if a > 0 else 0.0
    per_batch = torch.stack(
        [
            (c * c * n - 2 * c * i.double() + target2).mean()
            for n, i in zip(norm2, inner, strict=True)
        ]
    )
    return (c, *t_interval(per_batch))


def scaled_minibatch_error(mse: float, target2: float) -> float:
    """A backprop mini-batch's error about G at its best scale, exactly: g_B is unbiased for G
    with E||g_B - G||^2 = `mse`, so E<g_B, G> = ||G||^2 and E||g_B||^2 = ||G||^2 + mse, and
    min_c E||c g_B - G||^2 = mse ||G||^2 / (||G||^2 + mse), at c = ||G||^2 / (||G||^2 + mse)."""
    return mse * target2 / (target2 + mse) if target2 + mse > 0 else 0.0
