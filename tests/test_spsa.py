"""spsa: its cosine to the gradient follows the Beta law, it restores the parameters, it costs
2 x pairs forward passes and the memory of inference.

The statistical test (`test_cosine_and_projection_follow_the_gaussian_law`): mlp-mnist1d in
float64 (model seeded with torch.manual_seed(0), the first 128 training examples) at eps = 1e-6,
where the central difference matches g . z to 1e-9 (median; 1e-3 at worst in 30 draws), so the
exact-derivative law applies; N = 480 / P draws from torch.Generator seed 7 + P for each of
the 8 noise x pairs cases. Two statistics per case, each a z-score over the N draws:
- the mean total cosine between g_hat and backprop's g. With exact directional derivatives and
  Gaussian z, g_hat is proportional to Z Z^T g (Z: n x P) and cos^2 ~ Beta(P/2, (n - 1)/2), so
  E cos = Gamma((P + 1)/2) Gamma((n + P - 1)/2) / (Gamma(P/2) Gamma((n + P)/2)), exactly, for
  every P (E cos^2 = P / (n + P - 1): the sqrt(P / (n + P)) order is its large-n form).
  z = (|mean - E| - allowance)+ / (sd / sqrt(N)). Gaussian z: no allowance. Random signs have no
  closed form: they are tested against the same E with an allowance of E * sum_i w_i^4
  (w = g / ||g||), 12 times the first Edgeworth correction of E|g . z| for P = 1 (0.6% of E
  here; the standard error is about 3.4% of E in every case);
- the mean projection g_hat . g / ||g||^2, whose expectation is exactly 1 (E z z^T = I):
  z = (mean - 1) / (sd / sqrt(N)).
A case passes when both |z| are below the two-sided Bonferroni bound for alpha = 1e-3 over the
16 statistics (8 cases x 2), 4.0.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from estimators import make_estimator, registry
from estimators.spsa import SPSA
from measurements.flops import count_flops
from measurements.memory import peak_bytes
from tasks import get_task
from tasks.data import DataSource
from tasks.models import MLP

ALPHA = 1e-3
STATISTICS = 16  # 8 cases x (cosine, projection)
PAIR_DRAWS = 240  # draws x pairs per case: N = 240, 120, 80, 60 for P = 1..4
U = 2.0**-24  # unit roundoff of float32


def _task_setup(dtype: torch.dtype) -> tuple[nn.Module, tuple[Tensor, Tensor], Callable]:
    task = get_task("mlp-mnist1d")
    torch.manual_seed(0)
    model = task.model().to(dtype)
    data = task.load(DataSource(None, False))
    return model, (data.x_train[:128].to(dtype), data.y_train[:128]), task.loss


def _flat(grads: dict[str, Tensor]) -> Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()]).double()


def _expected_cosine(n: int, pairs: int) -> float:
    """E cos(Z Z^T g, g) for Z (n x pairs) of N(0, 1) entries: E sqrt(Beta(P/2, (n - 1)/2))."""
    p = pairs
    return math.exp(
        math.lgamma((p + 1) / 2)
        + math.lgamma((n + p - 1) / 2)
        - math.lgamma(p / 2)
        - math.lgamma((n + p) / 2)
    )


def test_declared_defaults_and_claims() -> None:
    assert registry.get("spsa") is SPSA and SPSA.unbiased is False
    assert make_estimator("spsa").config == {"pairs": 1, "eps": 1e-3, "noise": "rademacher"}


@pytest.mark.parametrize("pairs", [1, 2, 3, 4])
@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_cosine_and_projection_follow_the_gaussian_law(noise: str, pairs: int) -> None:
    model, batch, loss = _task_setup(torch.float64)
    g = _flat(make_estimator("backprop").bind(model, loss).estimate(batch, torch.Generator()).grads)
    est = make_estimator(f"spsa:pairs={pairs},eps=1e-6,noise={noise}").bind(model, loss)
    generator = torch.Generator().manual_seed(7 + pairs)
    count = PAIR_DRAWS // pairs
    draws = torch.stack([_flat(est.estimate(batch, generator).grads) for _ in range(count)])
    cos = draws @ g / (draws.norm(dim=1) * g.norm())
    proj = draws @ g / (g @ g)
    n = g.numel()
    expected = _expected_cosine(n, pairs)
    allowance = expected * (g / g.norm()).pow(4).sum().item() if noise == "rademacher" else 0.0
    excess = max(0.0, abs(cos.mean().item() - expected) - allowance)
    z_cos = excess / (cos.std().item() / math.sqrt(count))
    z_proj = (proj.mean().item() - 1) / (proj.std().item() / math.sqrt(count))
    crit = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - ALPHA / (2 * STATISTICS)))
    print(
        f"{noise} pairs={pairs}: mean cos {cos.mean():.5f} vs {expected:.5f} "
        f"({cos.mean().item() / expected - 1:+.1%}; sqrt(P/(n+P)) "
        f"{math.sqrt(pairs / (n + pairs)):.5f}), z {z_cos:.2f}; "
        f"mean projection {proj.mean():.3f} vs 1, z {z_proj:.2f}; bound {crit:.2f}"
    )
    assert abs(z_cos) < crit and abs(z_proj) < crit


def _restore_bound(before: list[Tensor], eps: float, zmax: float, pairs: int) -> list[Tensor]:
    """Per entry, pairs x 2^-24 (3 |theta| + 2 eps |z|): three round-to-nearest adds a pair."""
    return [pairs * U * (3 * b.abs() + 2 * eps * zmax) * (1 + 1e-6) for b in before]


@pytest.mark.parametrize(("noise", "zmax"), [("rademacher", 1.0), ("gaussian", 8.0)])
def test_parameters_are_restored_within_the_stated_rounding(noise: str, zmax: float) -> None:
    """float32 at the default eps; Gaussian |z| <= 8 fails with probability 1e-15 an entry."""
    model, batch, loss = _task_setup(torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    est = make_estimator(f"spsa:pairs=3,noise={noise}").bind(model, loss)
    est.estimate(batch, torch.Generator().manual_seed(5))
    moved = sum(int((p != b).sum()) for p, b in zip(model.parameters(), before, strict=True))
    print(f"{noise}: {moved / sum(b.numel() for b in before):.1%} of the entries moved")
    for p, b, bound in zip(model.parameters(), before, _restore_bound(before, 1e-3, zmax, 3),
                           strict=True):  # fmt: skip
        assert ((p.detach() - b).abs() <= bound).all()
        assert p.grad is None


def test_a_failing_forward_still_restores_the_parameters() -> None:
    model, batch, loss = _task_setup(torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    calls = []

    def failing(logits: Tensor, targets: Tensor) -> Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("second forward fails")
        return loss(logits, targets)

    est = make_estimator("spsa").bind(model, failing)
    with pytest.raises(RuntimeError, match="second forward fails"):
        est.estimate(batch, torch.Generator().manual_seed(5))
    for p, b, bound in zip(model.parameters(), before, _restore_bound(before, 1e-3, 1.0, 1),
                           strict=True):  # fmt: skip
        assert ((p.detach() - b).abs() <= bound).all()


def test_loss_is_the_loss_at_theta_to_second_order() -> None:
    """float64, eps = 1e-4: (L+ + L-)/2 - L is O(eps^2), measured below 1e-6 in 50 draws; L+
    alone would be off by eps |g . z|, about 1.7e-5 |N(0, 1)| here."""
    model, batch, loss = _task_setup(torch.float64)
    with torch.no_grad():
        exact = loss(model(batch[0]), batch[1]).mean().item()
    est = make_estimator("spsa:eps=1e-4").bind(model, loss)
    generator = torch.Generator().manual_seed(3)
    gaps = [abs(est.estimate(batch, generator).loss.item() - exact) for _ in range(20)]
    assert max(gaps) < 5e-6, max(gaps)


@pytest.mark.parametrize("pairs", [1, 3])
def test_flops_are_two_forward_passes_a_pair(pairs: int) -> None:
    model, batch, loss = _task_setup(torch.float32)
    forward = count_flops(lambda: loss(model(batch[0]), batch[1]).mean())
    est = make_estimator(f"spsa:pairs={pairs}").bind(model, loss)
    flops = count_flops(lambda: est.estimate(batch, torch.Generator().manual_seed(0)))
    assert flops == 2 * pairs * forward


def test_same_generator_state_gives_the_same_estimate() -> None:
    model, batch, loss = _task_setup(torch.float32)
    twin = copy.deepcopy(model)
    spec = "spsa:pairs=2,noise=gaussian"
    a = make_estimator(spec).bind(model, loss).estimate(batch, torch.Generator().manual_seed(9))
    b = make_estimator(spec).bind(twin, loss).estimate(batch, torch.Generator().manual_seed(9))
    assert all(torch.equal(a.grads[k], b.grads[k]) for k in a.grads)


@pytest.mark.parametrize("pairs", [1, 4])
def test_peak_memory_is_a_forward_plus_one_parameter_buffer(pairs: int) -> None:
    """MLP 40-1024x4-10 (3.2M parameters), batch 128: the estimate's peak is at most 1.1 x (a
    no-grad forward's peak + the parameters' bytes), i.e. no activation kept, no parameter copy."""
    torch.manual_seed(0)
    model = MLP(40, 10, width=1024, depth=4)
    x, y = torch.randn(128, 40), torch.randint(0, 10, (128,))
    loss = get_task("mlp-mnist1d").loss
    cpu = torch.device("cpu")

    def forward() -> None:
        with torch.no_grad():
            loss(model(x), y).mean()

    inference = peak_bytes(forward, cpu)
    buffer = sum(p.numel() * p.element_size() for p in model.parameters())
    est = make_estimator(f"spsa:pairs={pairs}").bind(model, loss)
    peak = peak_bytes(lambda: est.estimate((x, y), torch.Generator().manual_seed(0)), cpu)
    ratio = peak / (inference + buffer)
    print(f"pairs={pairs}: peak {peak / 2**20:.2f} MiB, forward {inference / 2**20:.2f} MiB, "
          f"parameters {buffer / 2**20:.2f} MiB, ratio {ratio:.3f}")  # fmt: skip
    assert ratio <= 1.1
