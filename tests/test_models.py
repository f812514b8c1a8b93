"""The three model families differentiate correctly in forward mode and in reverse mode.

Forward mode: `torch.func.jvp` along a random parameter tangent (and an input tangent) must match
central finite differences, relative error < 1e-4 in float64 (step 1e-6; the truncation error is
O(1e-12), so a wrong JVP rule shows up as an O(1) error).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from estimators import make_estimator, trainable_parameters
from tasks.models import MLP, BagNet, ViT
from tasks.task import cross_entropy
from tests.conftest import devices

FAMILIES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: MLP(40, 10, width=16, depth=3), (40,)),
    "mlp-gelu": (lambda: MLP(12, 3, width=8, depth=2, act="gelu"), (12,)),
    "bagnet": (lambda: BagNet(1, 10, width=8, receptive_field=5), (1, 8, 8)),
    "bagnet-groupnorm": (lambda: BagNet(3, 4, width=8, receptive_field=3, groups=2), (3, 6, 6)),
    "vit": (lambda: ViT(8, 2, 1, 10, dim=16, depth=2, heads=4), (1, 8, 8)),
}


def _model_and_input(family: str, device: str, batch: int = 5) -> tuple[nn.Module, Tensor]:
    factory, shape = FAMILIES[family]
    torch.manual_seed(0)
    model = factory().double().to(device)
    return model, torch.randn(batch, *shape, dtype=torch.float64, device=device)


def _relative_error(a: Tensor, b: Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("family", list(FAMILIES))
def test_parameter_jvp_matches_finite_differences(family: str, device: str) -> None:
    model, x = _model_and_input(family, device)
    params = {n: p.detach() for n, p in model.named_parameters()}
    gen = torch.Generator(device=device).manual_seed(1)
    tangent = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype, device=device)
               for n, p in params.items()}  # fmt: skip

    def f(p: dict[str, Tensor]) -> Tensor:
        return functional_call(model, p, (x,))

    _, forward = jvp(f, (params,), (tangent,))
    eps = 1e-6
    plus = f({n: p + eps * tangent[n] for n, p in params.items()})
    minus = f({n: p - eps * tangent[n] for n, p in params.items()})
    assert _relative_error(forward, (plus - minus) / (2 * eps)) < 1e-4


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("family", list(FAMILIES))
def test_input_jvp_matches_finite_differences(family: str, device: str) -> None:
    model, x = _model_and_input(family, device)
    v = torch.randn(
        x.shape, dtype=x.dtype, device=device, generator=torch.Generator(device).manual_seed(2)
    )
    _, forward = jvp(model, (x,), (v,))
    eps = 1e-6
    central = (model(x + eps * v) - model(x - eps * v)) / (2 * eps)
    assert _relative_error(forward, central) < 1e-4


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("family", list(FAMILIES))
def test_backprop_equals_autograd_and_leaves_no_grad(family: str, device: str) -> None:
    model, x = _model_and_input(family, device)
    classes = model(x[:1]).shape[1]
    y = torch.arange(len(x), device=device) % classes
    params = trainable_parameters(model)
    expected = torch.autograd.grad(cross_entropy(model(x), y).mean(), list(params.values()))
    est = make_estimator("backprop").bind(model, cross_entropy)
    estimate = est.estimate((x, y), torch.Generator(device=device))
    assert list(estimate.grads) == list(params)
    for name, want in zip(params, expected, strict=True):
        torch.testing.assert_close(estimate.grads[name], want, rtol=0, atol=0)
    torch.testing.assert_close(estimate.loss, cross_entropy(model(x), y).mean())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_backprop_agrees_with_forward_mode(family: str) -> None:
    """<g, v> from reverse mode equals the directional derivative from forward mode."""
    model, x = _model_and_input(family, "cpu")
    classes = model(x[:1]).shape[1]
    y = torch.arange(len(x)) % classes
    params = {n: p.detach() for n, p in trainable_parameters(model).items()}
    tangent = {n: torch.randn_like(p) for n, p in params.items()}
    _, directional = jvp(
        lambda p: cross_entropy(functional_call(model, p, (x,)), y).mean(), (params,), (tangent,)
    )
    grads = (
        make_estimator("backprop")
        .bind(model, cross_entropy)
        .estimate((x, y), torch.Generator())
        .grads
    )
    dot = sum((grads[n] * tangent[n]).sum() for n in params)
    torch.testing.assert_close(dot, directional, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", ["mlp", "bagnet", "vit"])
def test_consumer_links_name_real_layers(family: str) -> None:
    model, _ = _model_and_input(family, "cpu")
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    links = model.consumer_links()
    assert links
    for link in links:
        producer = modules[link.producer]
        consumer = params[link.consumer]
        assert consumer.shape[1] == producer.weight.shape[0]  # the consumer reads what it makes


def test_bagnet_positions_see_only_their_patch() -> None:
    """Changing a pixel changes only the logits of positions whose receptive field holds it."""
    model = BagNet(1, 3, width=4, receptive_field=5, pointwise=1).double()
    x = torch.randn(1, 1, 10, 10, dtype=torch.float64)
    features = lambda inp: model.head(_trunk(model, inp))  # noqa: E731
    y = x.clone()
    y[0, 0, 0, 0] += 1.0
    changed = (features(x) - features(y)).abs().sum(dim=1)[0] > 0  # (6, 6) positions
    assert changed[0, 0] and changed.sum() == 1


def _trunk(model: BagNet, x: Tensor) -> Tensor:
    for conv, norm in zip(model.convs, model.norms, strict=True):
        x = model.act(norm(conv(x)))
    return x


def test_model_options_are_checked() -> None:
    with pytest.raises(ValueError, match="receptive_field must be odd"):
        BagNet(1, 10, receptive_field=4)
    with pytest.raises(ValueError, match="not divisible by heads"):
        ViT(8, 2, 1, 10, dim=10, heads=4)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLP(4, 2, act="swish")
