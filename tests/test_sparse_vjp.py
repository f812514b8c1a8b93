"""sparse-vjp: unbiased for every sketch and axis and for the shared example subset, gathers equal
to the dense sketch (the shared one to dense backprop of the weighted loss), real savings.

The unbiasedness statistic (`tests.projections.bias_z`): for each sketched model and each layer
(weight and bias together) project N draws on three fixed directions (the layer's exact gradient
and two seeded Gaussian directions) and z-test the mean projection against the exact one, z = (mean
- exact) / (sd / sqrt(N)). A case passes when max |z| is below the two-sided Bonferroni bound for
alpha = 1e-3 over all its directions. Draw noise comes from torch.Generator seed 7, directions from
seed 11, models and batches from torch.manual_seed(0); float64 throughout."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn
from torch.func import vmap

import estimators.sketches as sketches
import estimators.sparse_layers as sparse_layers
from estimators import EstimatorError, make_estimator
from estimators.sketches import Sketch, keep_minvar, keep_uniform, minvar_probabilities
from estimators.sparse_layers import Plan, sketched
from estimators.sparse_vjp import SparseVJP, example_weights
from measurements.flops import count_flops
from tasks.task import cross_entropy
from tests.projections import FAMILIES, bias_z, tiny

COMBOS = [(s, a) for s in ("uniform", "minvar", "rank") for a in ("element", "row", "unit")
          if not (s == "rank" and a == "element")] + [("outer", "row")]  # fmt: skip
SHARED = ["uniform", "minvar", "outer"]
ALPHA = 1e-3
DRAWS = 2000


def _setup(family: str, batch: int = 6) -> tuple[nn.Module, tuple[Tensor, Tensor]]:
    return tiny(family, batch)


def _exact(model: nn.Module, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    backprop = make_estimator("backprop").bind(model, cross_entropy)
    return backprop.estimate(batch, torch.Generator()).grads


def _draws(family: str, spec: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    model, batch = _setup(family)
    est = make_estimator(spec).bind(model, cross_entropy)
    draws = est.estimate_draws(batch, DRAWS, torch.Generator().manual_seed(7)).grads
    return draws, _exact(model, batch)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(("sketch", "axis"), COMBOS)
def test_mean_of_draws_matches_exact_gradient(family: str, sketch: str, axis: str) -> None:
    """Unbiased: z-test of the mean of 2000 draws (module docstring), keep 0.5."""
    draws, exact = _draws(family, f"sparse-vjp:sketch={sketch},axis={axis},share=false,keep=0.5")
    z, crit = bias_z(draws, exact, ALPHA)
    assert z < crit, f"max |z| = {z:.2f} >= {crit:.2f}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_unscaled_mask_is_rejected(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same statistic rejects a uniform row mask that forgets the 1/p scale."""

    def unscaled(n: int, budget: int, noise: Tensor) -> sketches.Kept:
        kept = keep_uniform(n, budget, noise)
        return sketches.Kept(kept.index, torch.ones_like(kept.scale))

    monkeypatch.setattr(sketches, "keep_uniform", unscaled)
    draws, exact = _draws(family, "sparse-vjp:sketch=uniform,axis=row,share=false,keep=0.5")
    z, crit = bias_z(draws, exact, ALPHA)
    assert z > crit


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("sketch", SHARED)
def test_shared_subset_is_unbiased(family: str, sketch: str) -> None:
    """One example subset per step for every layer, scaled once at the loss: the same z-test
    (module docstring), keep 0.5."""
    draws, exact = _draws(family, f"sparse-vjp:sketch={sketch},share=true,keep=0.5")
    z, crit = bias_z(draws, exact, ALPHA)
    assert z < crit, f"max |z| = {z:.2f} >= {crit:.2f}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shared_subset_scaled_at_every_layer_is_rejected(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same statistic rejects the naive shared form: the subset's 1/p scale applied again
    by every layer (row i then carries (1/p)^L), not once."""

    def rescaled(mags: Tensor, budget: int) -> sketches.Kept:
        kept = sketches.keep_support(mags, budget)
        return sketches.Kept(kept.index, kept.scale * 2)  # 1 / p at keep 0.5

    monkeypatch.setattr(sparse_layers, "keep_support", rescaled)
    draws, exact = _draws(family, "sparse-vjp:sketch=uniform,share=true,keep=0.5")
    z, crit = bias_z(draws, exact, ALPHA)
    assert z > crit


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("sketch", SHARED)
def test_shared_subset_is_exact_backprop_of_the_weighted_loss(family: str, sketch: str) -> None:
    """The gathered shared backward equals plain dense backprop of sum_i w_i l_i with the
    step's example weights w (replayed from the same generator, seed 4): every layer keeps all
    the rows that carry gradient, and only those, at keep 0.25 (ViT: all tokens of the kept
    examples)."""
    model, (x, y) = _setup(family, batch=8)
    est = make_estimator(f"sparse-vjp:sketch={sketch},share=true,keep=0.25").bind(
        model, cross_entropy
    )
    assert isinstance(est, SparseVJP)
    got = est.estimate((x, y), torch.Generator().manual_seed(4)).grads
    gen = torch.Generator().manual_seed(4)
    for _ in est.sketched_names:  # the layers' empty draws, as in the estimate's forward
        torch.rand((0,), generator=gen, dtype=torch.float64)
    noise = torch.rand(est._plan.sketch.noise_shape(8), generator=gen, dtype=torch.float64)
    weights = example_weights(est._plan.sketch, est._shared_magnitudes(x, y), noise)
    assert int((weights > 0).sum()) <= 2 and weights.sum() > 0
    params = dict(model.named_parameters())
    want = torch.autograd.grad((cross_entropy(model(x), y) * weights).sum(), list(params.values()))
    for name, g in zip(params, want, strict=True):
        torch.testing.assert_close(got[name], g, rtol=1e-10, atol=1e-13)


LAYER_CASES = {
    "linear": (lambda: nn.Linear(7, 5), (9, 7)),
    "linear-tokens": (lambda: nn.Linear(7, 5), (3, 4, 7)),
    "conv": (lambda: nn.Conv2d(3, 6, 3, stride=2, padding=1), (5, 3, 7, 7)),
    "conv-dilated": (lambda: nn.Conv2d(2, 4, (3, 2), dilation=(2, 1)), (4, 2, 8, 6)),
}


@pytest.mark.parametrize("layer", list(LAYER_CASES))
@pytest.mark.parametrize(("sketch", "axis"), COMBOS)
def test_gathered_vjp_equals_dense_sketch(layer: str, sketch: str, axis: str) -> None:
    """The gathered products give exactly the VJP of the dense sketched gradient S g."""
    factory, shape = LAYER_CASES[layer]
    torch.manual_seed(0)
    module = factory().double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    inputs = [x, module.weight, module.bias]
    plan = Plan(Sketch(sketch, 0.4), axis)
    noises: list[Tensor] = []

    def draw(s: tuple[int, ...]) -> Tensor:
        noises.append(torch.rand(s, dtype=torch.float64))
        return noises[-1]

    with sketched({"layer": module}, plan, draw):
        out = module(x)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, g)
    linear = isinstance(module, nn.Linear)
    canonical = g.reshape(-1, g.shape[-1]) if linear else g
    rows_x = x.detach().reshape(-1, x.shape[-1]) if linear else x.detach()
    sg = plan.sketch.apply(canonical, plan.dim, noises[0], rows_x).reshape(g.shape)
    want = torch.autograd.grad(module(x), inputs, sg)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(
    "spec",
    [
        f"sketch={s},axis={a},share=false"
        for s in ("uniform", "minvar")
        for a in ("element", "row", "unit")
    ]
    + ["sketch=outer,axis=row,share=false", *(f"sketch={s},share=true" for s in SHARED)],
)
def test_keep_one_is_backprop(family: str, spec: str) -> None:
    model, batch = _setup(family)
    est = make_estimator(f"sparse-vjp:{spec},keep=1").bind(model, cross_entropy)
    got = est.estimate(batch, torch.Generator().manual_seed(0)).grads
    for name, g in _exact(model, batch).items():
        torch.testing.assert_close(got[name], g, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(
    "spec", ["sketch=minvar,axis=row,share=false", "sketch=rank,axis=unit,share=false",
             "sketch=outer,axis=row,share=false", "sketch=outer,share=true"],
)  # fmt: skip
def test_draws_match_single_estimates(family: str, spec: str) -> None:
    """estimate_draws(R=1) with a generator state equals estimate with the same state."""
    model, batch = _setup(family)
    est = make_estimator(f"sparse-vjp:{spec},keep=0.4").bind(model, cross_entropy)
    one = est.estimate(batch, torch.Generator().manual_seed(3))
    many = est.estimate_draws(batch, 1, torch.Generator().manual_seed(3))
    for name, g in one.grads.items():
        torch.testing.assert_close(many.grads[name][0], g, rtol=1e-10, atol=1e-13)
    assert many.loss == one.loss


def _output_gradients(family: str) -> list[Tensor]:
    """Each sketched layer's output gradient in one exact backward pass (canonical shape)."""
    model, (x, y) = _setup(family, batch=16)
    grads: list[Tensor] = []

    def keep_gradient(module: nn.Module, args: object, out: Tensor) -> None:
        out.register_hook(grads.append)

    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.register_forward_hook(keep_gradient)
    cross_entropy(model(x), y).mean().backward()
    return [g.reshape(-1, g.shape[-1]) if g.dim() == 3 else g for g in grads]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("keep", [0.1, 0.25, 0.5])
def test_minvar_variance_at_most_uniform(family: str, keep: float) -> None:
    """E||S v - v||^2 = sum_i (1/p_i - 1) |v_i|^2 is no larger for minvar than for uniform at
    the same budget K, on the real output gradients of every layer and axis; minvar's p obey
    the water-filling (KKT) conditions: sum = min(K, non-zeros), p <= 1, p proportional to |v|
    where below 1, and saturated coordinates are the largest."""
    for g in _output_gradients(family):
        for dim in (None, 0, 1):
            mags = sketches.magnitudes(g, dim)
            n = mags.numel()
            budget = Sketch("minvar", keep).budget(n)
            p = minvar_probabilities(mags, budget)
            live = mags > 0
            torch.testing.assert_close(
                p.sum(), torch.tensor(float(min(budget, int(live.sum())))).double()
            )
            assert (p <= 1 + 1e-12).all() and (p[~live] == 0).all()
            free = live & (p < 1 - 1e-12)
            if free.any():
                ratio = p[free] / mags[free]
                torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio))
                saturated = mags[live & ~free]
                assert saturated.numel() == 0 or saturated.min() >= mags[free].max()
            var_minvar = ((1 / p[live] - 1) * mags[live] ** 2).sum()
            var_uniform = ((n / budget - 1) * mags**2).sum()
            assert var_minvar <= var_uniform * (1 + 1e-12)


@pytest.mark.parametrize("kind", ["uniform", "minvar"])
def test_sampler_inclusion_probabilities(kind: str) -> None:
    """Each draw keeps exactly K distinct coordinates scaled 1/p_i, and the kept frequency of
    every coordinate over 20000 draws matches p_i: per-coordinate z-test, Bonferroni over
    coordinates at alpha = 1e-3, noise seed 5. Magnitudes include zeros and saturating ones."""
    mags = torch.tensor([0.0, 5.0, 0.1, 0.1, 1.0, 2.0, 0.0, 0.3, 9.0, 0.5], dtype=torch.float64)
    n, budget, m = mags.numel(), 4, 20000
    sketch = Sketch(kind, budget / n)
    p = (
        minvar_probabilities(mags, budget)
        if kind == "minvar"
        else torch.full((n,), budget / n).double()
    )
    noise = torch.rand((m, *sketch.noise_shape(n)), generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64)  # fmt: skip

    def one(u: Tensor) -> tuple[Tensor, Tensor]:
        kept = keep_minvar(mags, budget, u) if kind == "minvar" else keep_uniform(n, budget, u)
        return kept.index, kept.scale

    index, scale = vmap(one)(noise)
    assert index.shape == (m, budget)
    assert (index.sort(dim=1).values.diff(dim=1) > 0).all()  # distinct
    kept = torch.zeros(m, n, dtype=torch.float64).scatter(1, index, (scale > 0).double())
    torch.testing.assert_close(scale[scale > 0], (1 / p)[index][scale > 0])
    freq = kept.mean(0)
    se = (p * (1 - p) / m).sqrt()
    z = ((freq - p) / se.clamp_min(1e-300)).abs()
    crit = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - 1e-3 / (2 * n)))
    assert (z[(p > 0) & (p < 1)] < crit).all()
    assert (freq[p == 0] == 0).all() and (freq[p == 1] == 1).all()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_backward_flops_fall_with_keep(family: str) -> None:
    """FLOPs counted by FlopCounterMode: with row or unit sparsity at keep 0.25 the estimate
    costs the forward plus about a quarter of the dense backward (exactly, for MLP/BagNet rows;
    the ViT's attention score products stay dense)."""
    model, batch = _setup(family, batch=8)
    x, y = batch

    def forward() -> None:
        with torch.no_grad():
            cross_entropy(model(x), y).mean()

    fwd = count_flops(forward)
    dense_bwd = count_flops(lambda: _exact(model, batch)) - fwd
    for spec in ("sketch=uniform,axis=row,share=false", "sketch=uniform,axis=unit,share=false",
                 "sketch=outer,axis=row,share=false", "sketch=outer,share=true"):  # fmt: skip
        est = make_estimator(f"sparse-vjp:{spec},keep=0.25").bind(model, cross_entropy)
        bwd = count_flops(lambda e=est: e.estimate(batch, torch.Generator().manual_seed(0))) - fwd
        ratio = bwd / dense_bwd
        if family == "vit":
            assert ratio < 0.45
        elif "unit" not in spec:
            assert ratio == pytest.approx(0.25)
        else:
            assert ratio < 0.4  # round(0.25 * 3 classes) = 1 of the head's 3 units is kept


def test_layers_restored_no_grad_left_and_plain_training_unchanged() -> None:
    model, batch = _setup("vit")
    twin = copy.deepcopy(model)
    est = make_estimator("sparse-vjp:sketch=minvar").bind(model, cross_entropy)
    est.estimate(batch, torch.Generator().manual_seed(0))
    est.estimate_draws(batch, 3, torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in model.parameters())
    assert all("forward" not in m.__dict__ for m in model.modules())
    for net in (model, twin):  # three Adam steps of plain backprop on each: identical results
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            cross_entropy(net(batch[0]), batch[1]).mean().backward()
            opt.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_layers_restored_after_an_exception() -> None:
    model, batch = _setup("bagnet")

    def failing_loss(logits: Tensor, y: Tensor) -> Tensor:
        raise ValueError("boom")

    est = make_estimator("sparse-vjp").bind(model, failing_loss)
    with pytest.raises(ValueError, match="boom"):
        est.estimate(batch, torch.Generator().manual_seed(0))
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_layer_choice_and_invalid_settings() -> None:
    model, _ = _setup("vit")
    everything = make_estimator("sparse-vjp").bind(model, cross_entropy).sketched_names
    hidden = make_estimator("sparse-vjp:layers=hidden").bind(model, cross_entropy).sketched_names
    assert "blocks.0.attn.qkv" in everything and "blocks.0.mlp.fc1" in everything
    assert set(everything) - set(hidden) == {"head"}
    with pytest.raises(EstimatorError, match="axis=element is undefined"):
        make_estimator("sparse-vjp:sketch=rank,axis=element")
    with pytest.raises(EstimatorError, match="outer sketch scores rows"):
        make_estimator("sparse-vjp:sketch=outer,axis=unit")
    for spec in ("sketch=rank,share=true", "sketch=uniform,axis=unit,share=true"):
        with pytest.raises(EstimatorError, match="shared sketch keeps whole examples"):
            make_estimator(f"sparse-vjp:{spec}")
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(EstimatorError, match="plain Linear/Conv2d only: grouped convolution"):
        SparseVJP().bind(grouped, cross_entropy)
