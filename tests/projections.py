"""Shared by the tests of unbiased estimators: tiny float64 models of each family with a batch, and
the projection z-test of "the draws' mean is the exact gradient": per layer, the draws projected
on the exact gradient and on two random directions (seeded 11), each a z statistic of the
projected mean against the exact projection; the largest |z| is compared with the two-sided
normal quantile at alpha, Bonferroni-corrected over layers x directions."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tasks.models import MLP, BagNet, ViT

FAMILIES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: MLP(12, 3, width=8, depth=2), (12,)),
    "bagnet": (lambda: BagNet(1, 3, width=4, receptive_field=3, pointwise=1), (1, 6, 6)),
    "vit": (lambda: ViT(4, 2, 1, 3, dim=8, depth=1, heads=2, mlp_ratio=2), (1, 4, 4)),
}


def tiny(family: str, batch: int) -> tuple[nn.Module, tuple[Tensor, Tensor]]:
    """A seeded float64 model of `family` (3 classes) and a random batch of `batch` examples."""
    factory, shape = FAMILIES[family]
    torch.manual_seed(0)
    model = factory().double()
    x = torch.randn(batch, *shape, dtype=torch.float64)
    return model, (x, torch.randint(0, 3, (batch,)))


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
