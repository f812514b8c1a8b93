"""Low-rank weight gradients against plain backprop for one first layer, across layer sizes.

    python -m benchmarks.lowrank_layer [--batch 1024] [--repeats 50] [--threads 1]

For each (in, out, k): a Linear layer whose input needs no gradient (a model's first layer) runs
forward and backward to its weight and bias, once plainly and once through
`estimators.lowrank_grad` with a random orthonormal basis (in, k). The table gives the FLOP ratio
(`runners.flops.count_flops`, forward included) and the ratio of median times, the two ways
timed alternately after a warm-up in this run. It shows at what size the saving in FLOPs
becomes a saving in time on this machine.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from tabulate import tabulate
from torch import nn

from estimators.lowrank_grad import lowrank_weight_grads
from runners.flops import count_flops
from runners.timing import timed

SIZES = [(10, 10), (64, 10), (784, 128), (3072, 128), (1024, 1024)]
RANKS = [2, 8]
CPU = torch.device("cpu")


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


def compare(fan_in: int, out: int, k: int, batch: int, repeats: int) -> list[object]:
    """One table row: sizes, FLOP ratio, median seconds of both ways and their ratio."""
    torch.manual_seed(0)
    layer = nn.Linear(fan_in, out)
    x = torch.randn(batch, fan_in)
    basis = torch.linalg.qr(torch.randn(fan_in, k))[0]  # (in, k), orthonormal columns
    ways = _ways(layer, x, basis)
    flops = {name: count_flops(way) for name, way in ways.items()}
    for way in ways.values():
        for _ in range(5):
            way()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for i in range(repeats):
        for name in ("plain", "lowrank") if i % 2 == 0 else ("lowrank", "plain"):
            seconds[name].append(timed(ways[name], CPU))
    median = {name: statistics.median(v) for name, v in seconds.items()}
    return [fan_in, out, k, flops["lowrank"] / flops["plain"], 1e6 * median["plain"],
            1e6 * median["lowrank"], median["lowrank"] / median["plain"]]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lowrank_layer", description=__doc__)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [
        compare(fan_in, out, k, args.batch, args.repeats)
        for fan_in, out in SIZES
        for k in RANKS
        if k < fan_in
    ]
    print(f"first layer forward + weight/bias backward, batch {args.batch}, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved repeats")  # fmt: skip
    headers = ["in", "out", "k", "FLOPs x", "plain µs", "lowrank µs", "time x"]
    print(tabulate(rows, headers=headers, floatfmt=".3g"))


if __name__ == "__main__":
    main()
