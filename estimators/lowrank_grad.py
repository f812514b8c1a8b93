"""Weight gradients computed directly in a k-dimensional input subspace, inside the backward.

For a Linear layer y = x W^T + b the weight gradient is G = delta^T X, and its projection onto
the input-side subspace spanned by the orthonormal columns of P (in, k) is

    G P P^T = (delta^T (X P)) P^T.

Computing the right-hand side costs B k (in + out) multiply-adds per step for X P and
delta^T (X P), plus out k in once per step to expand the factor A = delta^T (X P) (out, k) into
the dense (out, in) gradient the optimizer needs, instead of B in out for delta^T X. The forward
saves X P, not X, so the layer's activation memory shrinks from in to k per example. The input
gradient delta W stays exact and is skipped altogether when the input needs none (the first
layer). A Conv2d works the same way on its kernel reshaped to (out, in kh kw): X P is then a
convolution of the input with the k basis vectors as kernels.

Limits: Linear layers, and Conv2d layers with groups=1, zero padding given as numbers; the
functions here support first-order reverse-mode gradients only (no double backward, no
forward-mode AD).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estimators.routing import check_plain, routed


class LowRankLinearFn(torch.autograd.Function):
    """y = x W^T + b; backward gives the weight gradient (delta^T (x P)) P^T."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, basis: Tensor) -> Tensor:
        return F.linear(x, weight, bias)  # (..., out)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight, _, basis = inputs
        needs_x, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        xp = x.reshape(-1, x.shape[-1]) @ basis if needs_w else None  # (N, k), N = prod(lead)
        ctx.save_for_backward(xp, weight if needs_x else None, basis)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        xp, weight, basis = ctx.saved_tensors
        needs_x, needs_w, needs_b, _ = ctx.needs_input_grad
        delta = grad_out.reshape(-1, grad_out.shape[-1])  # (N, out)
        grad_x = grad_out @ weight if needs_x else None  # (..., in)
        grad_w = (delta.T @ xp) @ basis.T if needs_w else None  # (out, k) @ (k, in)
        grad_b = delta.sum(0) if needs_b else None  # (out,)
        return grad_x, grad_w, grad_b, None


class LowRankConv2dFn(torch.autograd.Function):
    """Conv2d whose backward gives the kernel gradient (delta^T (X P)) P^T.

    The kernel is viewed as (out, in kh kw); X P is the convolution of the input with the k basis
    vectors reshaped to kernels (k, in, kh, kw), with the layer's stride, padding and dilation.
    """

    @staticmethod
    def forward(
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        basis: Tensor,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
    ) -> Tensor:
        return F.conv2d(x, weight, bias, stride, padding, dilation)  # (B, out, H', W')

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight, _, basis, stride, padding, dilation = inputs
        needs_x, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        xp = None
        if needs_w:
            kernels = basis.T.reshape(basis.shape[1], *weight.shape[1:])  # (k, in, kh, kw)
            xp = F.conv2d(x, kernels, None, stride, padding, dilation)  # (B, k, H', W')
        ctx.save_for_backward(xp, weight if needs_x else None, basis)
        ctx.geometry = (x.shape, weight.shape, stride, padding, dilation)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        xp, weight, basis = ctx.saved_tensors
        x_shape, w_shape, stride, padding, dilation = ctx.geometry
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if needs_x:
            grad_x = torch.nn.grad.conv2d_input(
                x_shape, weight, grad_out, stride, padding, dilation
            )
        if needs_w:
            factor = torch.einsum("bohw,bkhw->ok", grad_out, xp)  # (out, k)
            grad_w = (factor @ basis.T).reshape(w_shape)  # (out, in, kh, kw)
        if needs_b:
            grad_b = grad_out.sum(dim=(0, 2, 3))  # (out,)
        return grad_x, grad_w, grad_b, None, None, None, None


def _linear_forward(module: nn.Linear, basis: Tensor, x: Tensor) -> Tensor:
    return LowRankLinearFn.apply(x, module.weight, module.bias, basis)


def _conv_forward(module: nn.Conv2d, basis: Tensor, x: Tensor) -> Tensor:
    return LowRankConv2dFn.apply(
        x, module.weight, module.bias, basis, module.stride, module.padding, module.dilation
    )


@contextmanager
def lowrank_weight_grads(bases: Mapping[nn.Module, Tensor]) -> Iterator[None]:
    """While active, each module's weight gradient is computed projected onto its basis (in, k).

    The modules keep their class and parameters: an instance-level `forward` routes the call
    through the low-rank Function and is removed on exit, exceptions included.
    """
    for module in bases:
        check_plain(type(module).__name__, module, "the low-rank weight gradient")
    forwards = {
        module: partial(
            _linear_forward if isinstance(module, nn.Linear) else _conv_forward, module, basis
        )
        for module, basis in bases.items()
    }
    with routed(forwards):
        yield
