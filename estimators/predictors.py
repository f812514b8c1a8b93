"""Gradient predictors for `cv-predicted`: a cheap head-side signal in, a trunk gradient out.

The signal of a set of examples S is the exact gradient of the model's linear head over S,
flattened: z(S) = vec(mean_{i in S} e_i [h_i; 1]^T), where h_i are the head's input features
and e_i = dl_i/dlogits_i the output error (softmax - onehot for cross-entropy). It costs one
forward pass and no backward pass through the trunk (`HeadSignal`).

A `GradientPredictor` maps signals to predicted flat trunk gradients (every trainable parameter
outside the head, concatenated in `named_parameters` order). Its state changes only through
`observe` (queue a pair from a control micro-batch) and `refit` (absorb the queue, refit),
which the estimator calls from `update`; `predict` is read-only. Predictions must be linear in
the signal: then the prediction for a set is the mean of the per-example predictions (z(S) is a
mean over S), which the control variate's unbiasedness rests on, and g_pred(B) - g_pred(C) is
the prediction for z(B) - z(C).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from estimators.errors import EstimatorError


class HeadSignal:
    """Exact gradient of a model's final `head` from its input features and output errors.

    Parameters are named as in `model.named_parameters()`; the signal lays out the weight
    gradient (flattened) then the bias gradient.

    Supports an `nn.Linear` head on (B, F) features, and a 1x1 `nn.Conv2d` head whose output
    the model averages over positions (BagNet): its logits are W mean_s(h_s) + b, so the
    features are the head input averaged over positions. Any other head is refused.
    """

    def __init__(self, model: nn.Module) -> None:
        head = getattr(model, "head", None)
        conv = isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1)
        if not (isinstance(head, nn.Linear) or conv):
            raise EstimatorError(
                f"cv-predicted needs a final `head` module that is nn.Linear or a 1x1 nn.Conv2d "
                f"averaged over positions; got {type(head).__name__}"
            )
        self.head: nn.Module = head
        self.pooled = conv
        names = {id(p): n for n, p in model.named_parameters()}
        self.weight = names[id(head.weight)]
        self.bias = names[id(head.bias)] if head.bias is not None else None

    @property
    def names(self) -> tuple[str, ...]:
        """The head's parameter names, as in `model.named_parameters()`."""
        return (self.weight,) if self.bias is None else (self.weight, self.bias)

    @contextmanager
    def capture(self) -> Iterator[list[Tensor]]:
        """Within the block, each forward pass appends the head's input to the yielded list."""
        seen: list[Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
        try:
            yield seen
        finally:
            handle.remove()

    def features(self, head_input: Tensor) -> Tensor:
        """(B, F) features the head weight multiplies (position-averaged for a 1x1 conv)."""
        if self.pooled:
            return head_input.mean(dim=(2, 3))  # (B, F, H', W') -> (B, F)
        if head_input.dim() != 2:
            raise EstimatorError(f"linear head input must be (B, F), got {tuple(head_input.shape)}")
        return head_input

    def signal(self, features: Tensor, dlogits: Tensor) -> Tensor:
        """Flat head gradient (d_z,) of the mean loss: features (B, F), dlogits (B, classes).

        `dlogits` is d(mean_i l_i)/d logits, i.e. each example's output error divided by B.
        """
        weight = dlogits.T @ features  # (classes, F)
        if self.bias is None:
            return weight.reshape(-1)
        return torch.cat([weight.reshape(-1), dlogits.sum(dim=0)])

    def gradients(self, signal: Tensor) -> dict[str, Tensor]:
        """The head's gradients, shaped like its parameters, from a flat signal."""
        weight = self.head.weight
        grads = {self.weight: signal[: weight.numel()].view(weight.shape)}
        if self.bias is not None:
            grads[self.bias] = signal[weight.numel() :]
        return grads


class GradientPredictor(ABC):
    """Predicts flat trunk gradients from head signals; must be linear in the signal."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """Whether `predict` may be called (the predictor has been fitted)."""

    @abstractmethod
    def predict(self, signals: Tensor) -> Tensor:
        """Predicted trunk gradients (k, d_t) for signals (k, d_z); changes no state."""

    @abstractmethod
    def observe(self, signal: Tensor, grad: Tensor) -> None:
        """Queue one (signal (d_z,), true trunk gradient (d_t,)) pair for the next `refit`."""

    @abstractmethod
    def refit(self) -> None:
        """Absorb the queued pairs and refit."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of state the predictor holds (buffers, queue, factors)."""


class RidgePredictor(GradientPredictor):
    """Low-rank linear predictor from the last `size` control pairs, by kernel ridge regression.

    With the buffer's signals Z (m, d_z) and true gradients G (m, d_t),
        g_pred(z) = G^T (Z Z^T + lam I)^{-1} Z z,   lam = ridge * tr(Z Z^T) / m,
    i.e. ridge regression of gradients on signals in its dual (m x m) form: rank <= m, motivated
    by the low effective rank of the neural tangent kernel (Ciosek et al. 2025). `ridge` is
    relative to the mean squared signal norm, so it does not depend on the loss scale. Queued
    pairs enter the ring buffer only at `refit`, so predictions always use the factor of the
    buffer they were fitted on. Prediction costs k m (d_z + d_t) multiply-adds for k signals; a
    refit (Gram matrix and an m x m solve for the m x d_z factor) about 2 m^2 d_z + m^3. Ready
    once the buffer is full.
    """

    def __init__(self, size: int, ridge: float) -> None:
        self.size = size
        self.ridge = ridge
        self.count = 0  # pairs written into the ring buffer so far
        self.queue: list[tuple[Tensor, Tensor]] = []
        self.signals: Tensor | None = None  # Z (m, d_z)
        self.grads: Tensor | None = None  # G (m, d_t)
        self.factor: Tensor | None = None  # (Z Z^T + lam I)^{-1} Z  (m, d_z), set by refit

    @property
    def ready(self) -> bool:
        return self.factor is not None

    def predict(self, signals: Tensor) -> Tensor:
        if self.factor is None or self.grads is None:
            raise RuntimeError("RidgePredictor.predict before the buffer was filled and fitted")
        return (signals @ self.factor.T) @ self.grads  # (k, m) @ (m, d_t) -> (k, d_t)

    def observe(self, signal: Tensor, grad: Tensor) -> None:
        self.queue.append((signal, grad))

    def refit(self) -> None:
        for signal, grad in self.queue[-self.size :]:
            if self.signals is None or self.grads is None:
                self.signals = signal.new_zeros(self.size, signal.numel())
                self.grads = grad.new_zeros(self.size, grad.numel())
            self.signals[self.count % self.size] = signal
            self.grads[self.count % self.size] = grad
            self.count += 1
        self.queue.clear()
        if self.count >= self.size and self.signals is not None:
            gram = self.signals @ self.signals.T  # (m, m)
            lam = self.ridge * gram.diagonal().mean().clamp_min(torch.finfo(gram.dtype).tiny)
            eye = torch.eye(self.size, dtype=gram.dtype, device=gram.device)
            self.factor = torch.linalg.solve(gram + lam * eye, self.signals)

    @property
    def nbytes(self) -> int:
        held = [self.signals, self.grads, self.factor, *(t for pair in self.queue for t in pair)]
        return sum(t.numel() * t.element_size() for t in held if t is not None)
