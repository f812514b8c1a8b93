"""The quality statistics recover known bias and variance from synthetic draws.

Draws g_r = g + b + s * eps_r with eps_r ~ N(0, I_d) (seed 0) have relative bias ||b|| / ||g||,
relative variance s^2 d / ||g||^2 and relative MSE their sum; with R = 4000 draws in d = 50, the
sample variance's relative standard error is sqrt(2 / (R d)) = 0.3%, so 2% tolerances fail only on
a wrong formula.
"""

from __future__ import annotations

import math

import pytest
import torch

from measurements.gradient_stats import layer_of, quality_by_layer, statistics


def _synthetic(bias_scale: float, noise: float, r: int = 4000, d: int = 50):
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(d, generator=gen, dtype=torch.float64)
    b = bias_scale * torch.randn(d, generator=gen, dtype=torch.float64)
    draws = g + b + noise * torch.randn(r, d, generator=gen, dtype=torch.float64)
    return draws, g, b


def test_bias_variance_and_mse_are_recovered() -> None:
    draws, g, b = _synthetic(bias_scale=0.3, noise=0.5)
    s = statistics(draws, g)
    norm2 = g.pow(2).sum().item()
    assert s["rel_variance"] == pytest.approx(0.25 * 50 / norm2, rel=0.02)
    assert s["rel_bias"] == pytest.approx(b.norm().item() / math.sqrt(norm2), rel=0.02)
    assert s["rel_mse"] == pytest.approx(s["rel_variance"] + s["rel_bias"] ** 2, rel=0.02)
    assert s["cosine_lo"] < s["cosine"] < s["cosine_hi"]
    assert s["rel_mse_lo"] < s["rel_mse"] < s["rel_mse_hi"] and s["draws"] == 4000


def test_noise_floor_is_removed_from_the_bias() -> None:
    """Unbiased draws: ||m - g||^2 alone reads as bias ~ sqrt(var / R); the floor removes it."""
    draws, g, _ = _synthetic(bias_scale=0.0, noise=1.0, r=64)
    s = statistics(draws, g)
    naive = (draws.mean(0) - g).norm().item() / g.norm().item()
    assert naive > 0.05 and s["rel_bias"] < naive / 2


def test_exact_draws_are_perfect() -> None:
    g = torch.randn(10, dtype=torch.float64)
    s = statistics(g.expand(5, 10), g)
    assert s["cosine"] == pytest.approx(1.0) and s["rel_mse"] == 0.0
    assert s["rel_bias"] < 1e-12 and s["rel_variance"] < 1e-24


def test_layers_group_weights_with_their_biases() -> None:
    exact = {"a.0.weight": torch.ones(2, 3), "a.0.bias": torch.ones(2), "pos": torch.ones(4)}
    draws = {n: t.expand(3, *t.shape) * 2 for n, t in exact.items()}
    out = quality_by_layer(draws, exact)
    assert set(out) == {"a.0", "pos", "total"}
    assert out["a.0"]["rel_bias"] == pytest.approx(1.0) and out["total"]["cosine"] == pytest.approx(
        1
    )
    assert layer_of("blocks.1.attn.qkv.weight") == "blocks.1.attn.qkv"


def test_fg_weight_relative_variance_is_n_plus_1_through_the_protocol() -> None:
    """The issue's end-to-end check of the arithmetic: fg-weight draws on mlp-mnist1d's model.

    For v ~ N(0, I_n), E||(g.v) v - g||^2 = (n + 1)||g||^2, so `quality_by_layer`'s total relative
    variance must be n + 1 (n = 39,562). Statistic: that relative variance over R = 2000 draws
    (seed 0), whose relative standard error is about sqrt(2 / R) = 3.2% ((g.v)^2 / ||g||^2 is
    chi-square with 1 degree of freedom); asserted within 10% of n + 1 (alpha about 2e-3). A
    per-layer mean instead of the total, or a norm of the draws' mean in place of the exact
    gradient's, misses by orders of magnitude.
    """
    from estimators import make_estimator
    from tasks import get_task

    task = get_task("mlp-mnist1d")
    torch.manual_seed(0)
    model = task.model()
    data = task.load()
    batch = data.x_train[:128], data.y_train[:128]
    exact = make_estimator("backprop").bind(model, task.loss).estimate(batch, torch.Generator())
    est = make_estimator("fg-weight").bind(model, task.loss)
    draws = est.estimate_draws(batch, 2000, torch.Generator().manual_seed(0))
    n = sum(g.numel() for g in exact.grads.values())
    total = quality_by_layer(draws.grads, exact.grads)["total"]
    assert total["rel_variance"] == pytest.approx(n + 1, rel=0.1)
