"""backprop-subbatch and backprop-checkpoint: the compute-matched and the memory baselines.

The unbiasedness statistic (`tests.projections.bias_z`): project N = 2000 draws of backprop-
subbatch on three fixed directions per layer (weight and bias together: the layer's exact batch
gradient and two Gaussian directions) and z-test the mean projection against the exact one, z =
(mean - exact) / (sd / sqrt(N)). A case passes when max |z| is below the two-sided Bonferroni bound
for alpha = 1e-3 over all its directions. Draws come from torch.Generator seed 7, directions from
seed 11, models and batches from torch.manual_seed(0); float64."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

import estimators.backprop_subbatch as subbatch
from estimators import EstimatorError, make_estimator
from estimators.backprop_checkpoint import BackpropCheckpoint
from measurements.flops import count_flops
from measurements.memory import peak_bytes
from tasks import get_task
from tasks.data import DataSource
from tasks.models import MLP, BagNet, ViT
from tasks.task import cross_entropy
from tests.projections import FAMILIES, bias_z, tiny
from tests.threads import one_thread

ALPHA = 1e-3
DRAWS = 2000
BATCH = 8  # fraction 0.25 keeps 2 of them: C(8, 2) = 28 possible sub-batches


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    with one_thread():
        yield


def _setup(family: str, batch: int = BATCH) -> tuple[nn.Module, tuple[Tensor, Tensor]]:
    return tiny(family, batch)


def _exact(model: nn.Module, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    return (
        make_estimator("backprop")
        .bind(model, cross_entropy)
        .estimate(batch, torch.Generator())
        .grads
    )


def _step(spec: str, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Callable[[], object]:
    """One estimate of `spec` on `batch`, as a call."""
    est = make_estimator(spec).bind(model, cross_entropy)
    return lambda: est.estimate(batch, torch.Generator())


def _flops(spec: str, model: nn.Module, batch: tuple[Tensor, Tensor]) -> int:
    return count_flops(_step(spec, model, batch))


def _subbatch_z(family: str) -> tuple[float, float]:
    model, batch = _setup(family)
    est = make_estimator("backprop-subbatch:fraction=0.25").bind(model, cross_entropy)
    draws = est.estimate_draws(batch, DRAWS, torch.Generator().manual_seed(7)).grads
    return bias_z(draws, _exact(model, batch), ALPHA)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_subbatch_at_fraction_one_is_backprop_exactly(family: str) -> None:
    model, batch = _setup(family)
    exact = make_estimator("backprop").bind(model, cross_entropy).estimate(batch, torch.Generator())
    est = make_estimator("backprop-subbatch:fraction=1").bind(model, cross_entropy)
    got = est.estimate(batch, torch.Generator().manual_seed(3))
    assert torch.equal(got.loss, exact.loss)
    assert all(torch.equal(got.grads[n], g) for n, g in exact.grads.items())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_subbatch_mean_of_draws_matches_batch_gradient(family: str) -> None:
    """Unbiased for the batch gradient: z-test of the mean of 2000 draws (module docstring)."""
    z, crit = _subbatch_z(family)
    assert z < crit, f"max |z| = {z:.2f} >= {crit:.2f}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_subbatch_that_never_draws_the_last_example_is_rejected(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same statistic rejects a sub-batch drawn from all examples but the last."""

    def biased(batch: int, size: int, generator: torch.Generator) -> Tensor:
        return torch.randperm(batch - 1, generator=generator)[:size]

    monkeypatch.setattr(subbatch, "draw_subset", biased)
    z, crit = _subbatch_z(family)
    assert z > crit, f"max |z| = {z:.2f} <= {crit:.2f}"


def test_subbatch_draws_distinct_examples_and_at_least_one() -> None:
    assert subbatch.subset_size(8, 0.01) == 1
    assert subbatch.subset_size(128, 0.25) == 32
    assert subbatch.subset_size(10, 1.0) == 10
    kept = subbatch.draw_subset(10, 4, torch.Generator().manual_seed(0))
    assert len(set(kept.tolist())) == 4 and kept.min() >= 0 and kept.max() < 10


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_subbatch_flops_are_fraction_of_backprop(fraction: float) -> None:
    """FLOPs on an MLP at batch B = 128: exactly K / B of backprop's (every matmul scales with
    the rows), so within 1 / (2B) of the fraction, the rounding of K = round(f B)."""
    torch.manual_seed(0)
    model = MLP(40, 10, width=64, depth=3)
    batch = (torch.randn(128, 40), torch.randint(0, 10, (128,)))
    spec = f"backprop-subbatch:fraction={fraction}"
    ratio = _flops(spec, model, batch) / _flops("backprop", model, batch)
    assert abs(ratio - fraction) <= 0.5 / 128, ratio


@pytest.mark.parametrize("task_name", ["mlp-mnist1d", "bagnet-digits", "vit-digits"])
@pytest.mark.parametrize("segments", [0, 1, 3])
def test_checkpoint_gradient_equals_backprop(task_name: str, segments: int) -> None:
    """Within 1e-5 relative, per parameter, on each model family's embedded task."""
    task = get_task(task_name)
    data = task.load(DataSource(None, False))
    batch = (data.x_train[:64], data.y_train[:64])
    torch.manual_seed(0)
    model = task.model()
    exact = make_estimator("backprop").bind(model, task.loss).estimate(batch, torch.Generator())
    est = make_estimator(f"backprop-checkpoint:segments={segments}").bind(model, task.loss)
    got = est.estimate(batch, torch.Generator())
    assert torch.allclose(got.loss, exact.loss, rtol=1e-6, atol=0)
    for name, g in exact.grads.items():
        rel = ((got.grads[name] - g).norm() / g.norm().clamp_min(1e-30)).item()
        assert rel <= 1e-5, f"{name}: relative error {rel:.2e}"
    assert "forward" not in model.__dict__
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("factory", "segments", "expected"),
    [
        (lambda: MLP(12, 3, width=8, depth=3), 0, [["hidden.0", "hidden.1"], ["hidden.2"]]),
        (lambda: MLP(12, 3, width=8, depth=2), 0, [["hidden.0", "hidden.1"]]),  # sqrt 2 -> 1
        (lambda: ViT(4, 2, 1, 3, dim=8, depth=4, heads=2, mlp_ratio=2), 0,
         [["blocks.0", "blocks.1"], ["blocks.2", "blocks.3"]]),
        (lambda: BagNet(1, 3, width=4, receptive_field=3, pointwise=1), 9,
         [["convs.0"], ["convs.1"]]),  # more segments than blocks counts as one per block
    ],
)  # fmt: skip
def test_checkpoint_segments_split_the_stack(
    factory: Callable[[], nn.Module], segments: int, expected: list[list[str]]
) -> None:
    est = make_estimator(f"backprop-checkpoint:segments={segments}").bind(factory(), cross_entropy)
    assert isinstance(est, BackpropCheckpoint)
    assert est.segment_blocks == expected


def test_checkpoint_recomputes_the_forward() -> None:
    """The checkpointed step does more FLOPs than backprop (the segments' forward, again)."""
    torch.manual_seed(0)
    model = MLP(40, 10, width=64, depth=4)
    batch = (torch.randn(128, 40), torch.randint(0, 10, (128,)))
    exact, checkpointed = (_flops(s, model, batch) for s in ("backprop", "backprop-checkpoint"))
    assert exact < checkpointed < 4 / 3 * exact


def test_checkpoint_lowers_peak_memory_on_a_deep_mlp() -> None:
    """A memory (not a speed) assertion, CPU storage tracker: 16 layers of 64 units at batch 1024,
    where activations (16 x 0.25 MiB under backprop) outweigh the weights and their gradients;
    4 segments keep 4 boundaries plus one segment's 4 layers. Measured 0.49; bound 0.6."""
    torch.manual_seed(0)
    model = MLP(32, 10, width=64, depth=16)
    batch = (torch.randn(1024, 32), torch.randint(0, 10, (1024,)))
    peaks = {}
    for spec in ("backprop", "backprop-checkpoint"):
        peaks[spec] = peak_bytes(_step(spec, model, batch), torch.device("cpu"))
    ratio = peaks["backprop-checkpoint"] / peaks["backprop"]
    assert ratio < 0.6, f"peak memory ratio checkpoint / backprop: {ratio:.3f}"


def test_checkpoint_refuses_a_model_without_a_block_stack() -> None:
    with pytest.raises(EstimatorError, match=r"Linear has no nn\.ModuleList or nn\.Sequential"):
        make_estimator("backprop-checkpoint").bind(nn.Linear(3, 2), cross_entropy)


class _Branching(nn.Module):
    """A forward that branches on data: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(3, 3) for _ in range(2))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x) if x.sum() > 0 else -layer(x)
        return x


def test_checkpoint_refuses_a_model_it_cannot_trace() -> None:
    with pytest.raises(EstimatorError, match="cannot trace _Branching"):
        make_estimator("backprop-checkpoint").bind(_Branching(), cross_entropy)
