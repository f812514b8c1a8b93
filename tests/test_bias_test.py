"""The bias test (`measurements.gradient_stats.bias_test`) holds its level on unbiased estimators
and rejects a biased one.

H0: the draws' mean is the exact batch gradient g. `bias_p` is the Bonferroni combination of
Johnson's skewness-corrected t along g, Hotelling's T^2 on two fixed random directions and the
self-normalised U-statistic over all coordinates, at alpha = `ALPHA` = 0.05. On real estimators
(mlp-mnist1d's model at width 64, seeded initialisation 0, one fixed batch of 128, repeats drawn
with noise seeds 1000 + i) the rejections of the whole gradient's test (`quality_by_layer`'s
`total` row) are counted over the repeats and the count checked by a two-sided binomial test
against alpha at level 0.01.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binomtest

from estimators import make_estimator
from measurements.gradient_stats import ALPHA, bias_test, quality_by_layer
from tasks import get_task

REPEATS = 60


@pytest.fixture(scope="module")
def setting() -> tuple:
    task = get_task("mlp-mnist1d:width=64")
    torch.manual_seed(0)
    model = task.model()
    data = task.load()
    batch = data.x_train[:128], data.y_train[:128]
    exact = make_estimator("backprop").bind(model, task.loss).estimate(batch, torch.Generator())
    return task, model, batch, exact.grads


def _rejections(setting: tuple, spec: str, draws: int) -> int:
    task, model, batch, exact = setting
    est = make_estimator(spec).bind(model, task.loss)
    gens = [torch.Generator().manual_seed(1000 + i) for i in range(REPEATS)]
    p = [quality_by_layer(est.estimate_draws(batch, draws, gen).grads, exact)["total"]["bias_p"]
         for gen in gens]  # fmt: skip
    return sum(v < ALPHA for v in p)


@pytest.mark.parametrize("spec", ["fg-weight", "sparse-vjp"])
def test_unbiased_estimators_are_rejected_at_the_rate_alpha(setting: tuple, spec: str) -> None:
    """60 repeats of R = 16 draws: rejections consistent with alpha (binomial test, level 0.01).
    With Student's t along g instead of Johnson's, fg-weight is rejected about 12% of the time."""
    count = _rejections(setting, spec, 16)
    assert binomtest(count, REPEATS, ALPHA).pvalue > 0.01, f"{spec}: {count}/{REPEATS} rejected"


def test_a_biased_estimator_is_rejected(setting: tuple) -> None:
    """fg-wt (biased: its mean falls short of g along g) at R = 64: rejected in >= 90% of 60."""
    count = _rejections(setting, "fg-wt", 64)
    assert count >= 0.9 * REPEATS, f"fg-wt: only {count}/{REPEATS} rejected"


def test_level_is_exact_for_gaussian_draws() -> None:
    """Statistic: rejections of `bias_test` over 2000 sets of R = 8 Gaussian draws about g (d = 30,
    seed 0). The projected parts are exact for Gaussian data (Johnson's correction vanishes with
    the skewness) and the spread test nearly so; the Bonferroni level is at most alpha; binomial
    test of 0.05 at level 0.01."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(30, generator=gen, dtype=torch.float64)
    noise = torch.randn(2000, 8, 30, generator=gen, dtype=torch.float64)
    count = sum(bias_test(e, g)[1] < ALPHA for e in noise)
    assert binomtest(count, 2000, ALPHA).pvalue > 0.01, f"{count}/2000 rejected"


def test_bias_across_g_is_found_by_the_random_directions() -> None:
    """A bias orthogonal to g (relative size 1, noise relative 0.5 a coordinate) is invisible
    along g and found by the other parts: p < 1e-3 (R = 16, d = 30, seed 0)."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(30, generator=gen, dtype=torch.float64)
    b = torch.randn(30, generator=gen, dtype=torch.float64)
    b = b - (b @ g) / (g @ g) * g
    b *= g.norm() / b.norm()
    noise = 0.5 * g.norm() / math.sqrt(30) * torch.randn(16, 30, generator=gen, dtype=torch.float64)
    _, p = bias_test(b + noise, g)
    assert p < 1e-3


def test_deterministic_draws() -> None:
    """Exact draws: no bias (stat 0, p 1); a fixed shrinkage to g / 2: certain bias (p 0); too
    few draws (R = 3): no test (NaN)."""
    g = torch.randn(40, dtype=torch.float64)
    assert bias_test(torch.zeros(6, 40, dtype=torch.float64), g) == (0.0, 1.0)
    assert bias_test((-g / 2).expand(6, 40), g)[1] == 0.0
    assert all(math.isnan(v) for v in bias_test(torch.zeros(3, 40, dtype=torch.float64), g))
