"""Plain layers and routing their forward, written once for every estimator that needs them.

The sketched backward (`sparse_layers`), the low-rank weight gradient (`lowrank_grad`) and the
activity perturbation (`forward_mode`) handle `nn.Linear` and `nn.Conv2d` with groups=1 and
numeric zero padding only ("plain" layers). The first two stand in for such a layer's forward
while a block runs: an instance-level `forward` is set, and removed on exit, exceptions included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from torch import nn

from estimators.errors import EstimatorError

PLAIN = (nn.Linear, nn.Conv2d)


def unsupported_reason(module: nn.Module) -> str | None:
    """Why `module` is not a plain layer, or None when it is one."""
    if isinstance(module, nn.Linear):
        return None
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups})"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return (
                f"padding {module.padding!r} with mode {module.padding_mode!r} (numeric zero "
                "padding only)"
            )
        return None
    return f"{type(module).__name__} is neither Linear nor Conv2d"


def check_plain(name: str, module: nn.Module, what: str) -> None:
    """Raise `EstimatorError` naming the layer when `what` cannot handle it."""
    reason = unsupported_reason(module)
    if reason is not None:
        raise EstimatorError(f"layer {name}: {what} handles plain Linear/Conv2d only: {reason}")


@contextmanager
def routed(forwards: Mapping[nn.Module, Callable[..., object]]) -> Iterator[None]:
    """While the block runs, each module's calls go to its given forward; nesting is refused."""
    for module in forwards:
        if "forward" in module.__dict__:
            raise RuntimeError(f"{type(module).__name__} is already routed (nested routing?)")
    patched: list[nn.Module] = []
    try:
        for module, forward in forwards.items():
            module.forward = forward
            patched.append(module)
        yield
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)
