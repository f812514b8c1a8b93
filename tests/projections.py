"""The projection z-test of "the draws' mean is the exact gradient", shared by the tests of
unbiased estimators: per layer, the draws projected on the exact gradient and on two random
directions (seeded 11), each a z statistic of the projected mean against the exact projection;
the largest |z| is compared with the two-sided normal quantile at alpha, Bonferroni-corrected
over layers x directions."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def bias_z(draws: dict[str, Tensor], exact: dict[str, Tensor], alpha: float) -> tuple[float, float]:
    """(max |z| over layers x directions, its Bonferroni critical value at `alpha`)."""
    layers: dict[str, list[str]] = {}
    for name in exact:
        layers.setdefault(name.rsplit(".", 1)[0], []).append(name)
    gen = torch.Generator().manual_seed(11)
    zs = []
    for members in layers.values():
        g = torch.cat([exact[n].reshape(-1) for n in members])  # (d,)
        d = torch.cat([draws[n].reshape(len(draws[n]), -1) for n in members], dim=1)  # (N, d)
        for direction in (g, *torch.randn(2, g.numel(), generator=gen, dtype=g.dtype)):
            s = d @ direction  # (N,)
            se = s.std() / math.sqrt(len(s))
            zs.append(((s.mean() - g @ direction) / se.clamp_min(1e-300)).abs().item())
    crit = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - alpha / (2 * len(zs))))
    return max(zs), crit.item()
