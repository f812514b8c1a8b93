"""Low-rank weight gradients against plain backprop for one first layer, across layer sizes.

    python -m runners.study lowrank-layer[:batch=1024,repeats=50,ranks=2+8]

For each (in, out, k): a Linear layer whose input needs no gradient (a model's first layer) runs
forward and backward to its weight and bias, once plainly and once through
`estimators.lowrank_grad` with a random orthonormal basis (in, k). Rows (`lowrank_layer.csv`)
give the FLOP ratio (`measurements.flops.count_flops`, forward included) and the ratio of median
times, the two ways timed by `measurements.timing.interleaved` in this run. They show at what
size the saving in FLOPs becomes a saving in time on this machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from estimators.lowrank_grad import lowrank_weight_grads
from measurements.flops import count_flops
from measurements.study import Rows, Study
from measurements.timing import interleaved

FILE = "lowrank_layer.csv"


@dataclass(frozen=True)
class Settings:
    """Layer sizes as `in+out` pairs flattened: sizes=10+10+64+10 is (10, 10), (64, 10)."""

    sizes: tuple[int, ...] = (10, 10, 64, 10, 784, 128, 3072, 128, 1024, 1024)
    ranks: tuple[int, ...] = (2, 8)
    batch: int = 1024
    repeats: int = 50
    warmup: int = 5


def _ways(
    layer: nn.Linear, x: torch.Tensor, basis: torch.Tensor
) -> dict[str, Callable[[], object]]:
    seed = torch.randn(x.shape[0], layer.out_features)  # (B, out): a fixed upstream gradient

    def plain() -> object:
        return torch.autograd.grad((layer(x) * seed).sum(), [layer.weight, layer.bias])

    def lowrank() -> object:
        with lowrank_weight_grads({layer: basis}):
            return plain()

    return {"plain": plain, "lowrank": lowrank}


def _row(fan_in: int, out: int, k: int, s: Settings, device: torch.device) -> dict[str, object]:
    torch.manual_seed(0)
    layer = nn.Linear(fan_in, out).to(device)
    x = torch.randn(s.batch, fan_in, device=device)
    basis = torch.linalg.qr(torch.randn(fan_in, k, device=device))[0]  # (in, k), orthonormal
    ways = _ways(layer, x, basis)
    flops = {name: count_flops(way) for name, way in ways.items()}
    times = interleaved(ways, device, warmup=s.warmup, repeats=s.repeats, min_repeats=s.repeats)
    return {
        "fan_in": fan_in, "fan_out": out, "k": k, "batch": s.batch,
        "threads": torch.get_num_threads(), "device": str(device),
        "flop_ratio": flops["lowrank"] / flops["plain"],
        "plain_us": 1e6 * times.median("plain"), "lowrank_us": 1e6 * times.median("lowrank"),
        "time_ratio": times.ratio("lowrank", "plain"), "repeats": times.rounds,
    }  # fmt: skip


def measure(s: Settings, device: torch.device) -> Rows:
    pairs = list(zip(s.sizes[::2], s.sizes[1::2], strict=True))
    rows = [_row(i, o, k, s, device) for i, o in pairs for k in s.ranks if k < i]
    return {FILE: rows}


STUDY = Study(
    name="lowrank-layer",
    summary="first-layer low-rank weight gradient against the full one, FLOPs and time by size",
    files=(FILE,),
    settings=Settings,
    smoke=Settings(sizes=(10, 10, 64, 10), ranks=(2,), batch=16, repeats=2, warmup=1),
    measure=measure,
)
