"""Random sketches S with E[S] = I that act on one axis of a gradient tensor.

A sketch sees a tensor v and an axis: every index along the axis (a row, a unit, a channel) is
one coordinate whose magnitude is the norm of its slice; with no axis every element is one.

- `uniform`: K = round(keep * n) coordinates drawn uniformly without replacement, each scaled
  by n / K; every coordinate is kept with probability p = K / n.
- `minvar`: p_i = min(1, c |v_i|) with c set so that sum_i p_i = K, which minimises
  E ||S v - v||^2 = sum_i (1 / p_i - 1) |v_i|^2 over diagonal sketches with an expected budget
  of K (Bakong et al., section on minimal-variance sparse estimates). Exactly K coordinates are
  drawn by systematic sampling over a random order, so coordinate i is kept with probability
  exactly p_i; kept ones are scaled by 1 / p_i. When fewer than K coordinates are non-zero,
  the spare slots hold other coordinates with scale 0.
- `outer`: `minvar`'s sampler with magnitudes m_i = ||v_i|| sqrt(||x_i||^2 + 1) for the rows
  of an output gradient v and of the layer's input x: the norm of row i's term v_i [x_i; 1]^T of
  the weight-and-bias gradient (a Linear's exactly; a Conv2d row's by Cauchy-Schwarz, an upper
  bound), so the kept rows are the ones whose weight-gradient terms are large (VCAS's weight
  sampling, Liu et al. 2024, scores rows by ||delta_i|| ||a_i|| the same way). The + 1 (the
  bias column) keeps p_i > 0 wherever v_i != 0 even when x_i = 0, which the input gradient
  (S v) W needs to stay unbiased. Rows only.
- `rank`: v -> R R^T v along the axis, R (n, r) with i.i.d. entries +-1/sqrt(r), r = round(keep
  * n), so E[R R^T] = I.

Diagonal sketches are returned as `Kept` (indices and scales) so callers gather the kept slices
into smaller dense products; the number kept is exactly K on every draw, so a step's FLOPs do
not vary. Randomness comes only from a `noise` tensor of uniforms (`noise_shape`) drawn by the
caller, and every function here is a pure tensor function without data-dependent Python control
flow, so it runs unchanged under `torch.func.vmap` with one noise tensor per draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SKETCHES = ("uniform", "minvar", "outer", "rank")
DIAGONAL = ("uniform", "minvar", "outer")


@dataclass(frozen=True)
class Kept:
    """The kept coordinates of a diagonal sketch: S v = sum_k scale[k] e_index[k] v[index[k]].

    index: (K,) distinct positions along the axis.
    scale: (K,) the factor applied to each kept slice (1 / inclusion probability; 0 for a
        padding slot of `minvar` when fewer than K coordinates are non-zero).
    """

    index: Tensor
    scale: Tensor


@dataclass(frozen=True)
class Sketch:
    """One sketch kind at one keep fraction (diagonal: kept fraction; `rank`: rank fraction)."""

    kind: str
    keep: float

    def __post_init__(self) -> None:
        if self.kind not in SKETCHES:
            raise ValueError(f"unknown sketch {self.kind!r}; valid: {', '.join(SKETCHES)}")
        if not 0 < self.keep <= 1:
            raise ValueError(f"sketch keep must be in (0, 1], got {self.keep}")

    def budget(self, n: int) -> int:
        """K (diagonal) or r (rank) for an axis of size n: round(keep * n), between 1 and n."""
        return min(n, max(1, round(self.keep * n)))

    def noise_shape(self, n: int) -> tuple[int, ...]:
        """Shape of the uniforms one draw of this sketch consumes on an axis of size n."""
        if self.kind == "uniform":
            return (n,)
        if self.kind in ("minvar", "outer"):
            return (n + 1,)  # a random order of the n coordinates, then the systematic offset
        return (n, self.budget(n))

    def kept(self, v: Tensor, dim: int | None, noise: Tensor, x: Tensor | None = None) -> Kept:
        """The kept coordinates of a diagonal sketch of v along `dim` (None: every element);
        `outer` also needs the layer input x, its rows along dim 0 matching v's."""
        if self.kind == "outer":
            if dim != 0 or x is None:
                raise ValueError("the outer sketch scores rows (dim 0) and needs the layer input")
            return self.select(outer_magnitudes(v, x), noise)
        return self.select(magnitudes(v, dim), noise)

    def select(self, mags: Tensor, noise: Tensor) -> Kept:
        """The kept coordinates for magnitudes (n,): uniform ignores them, minvar and outer
        keep coordinate i with probability `minvar_probabilities` of them."""
        budget = self.budget(mags.shape[0])
        if self.kind == "uniform":
            return keep_uniform(mags.shape[0], budget, noise)
        if self.kind in ("minvar", "outer"):
            return keep_minvar(mags, budget, noise)
        raise ValueError("the rank sketch is a projection, not a set of kept coordinates")

    def projection(self, noise: Tensor) -> Tensor:
        """R (n, r) of the rank sketch: Rademacher entries +-1/sqrt(r) from uniforms (n, r)."""
        signs = torch.where(noise < 0.5, -1.0, 1.0).to(noise.dtype)
        return signs / noise.shape[1] ** 0.5

    def apply(self, v: Tensor, dim: int | None, noise: Tensor, x: Tensor | None = None) -> Tensor:
        """S v as a dense tensor shaped like v (the reference the gathered products equal)."""
        if self.kind == "rank":
            if dim is None:
                raise ValueError("the rank sketch acts on an axis, not on single elements")
            r = self.projection(noise)  # (n, r)
            low = torch.tensordot(r, v, dims=([0], [dim]))  # (r, rest...)
            return torch.tensordot(r, low, dims=([1], [0])).movedim(0, dim)
        kept = self.kept(v, dim, noise, x)
        n = v.numel() if dim is None else v.shape[dim]
        factor = put(kept.scale.to(v.dtype), kept.index, n)  # (n,): 1/p_i where kept, else 0
        if dim is None:
            return v * factor.reshape(v.shape)
        shape = [1] * v.dim()
        shape[dim] = n
        return v * factor.reshape(shape)


def magnitudes(v: Tensor, dim: int | None) -> Tensor:
    """|v_i| per coordinate: the norm of each slice along `dim`, or |v| per element (flat)."""
    if dim is None:
        return v.abs().reshape(-1)
    others = [d for d in range(v.dim()) if d != dim]
    return torch.linalg.vector_norm(v, dim=others) if others else v.abs()


def outer_magnitudes(v: Tensor, x: Tensor) -> Tensor:
    """m_i = ||v_i|| sqrt(||x_i||^2 + 1) per row (dim 0) of an output gradient v and input x."""
    return magnitudes(v, 0) * (magnitudes(x, 0).square() + 1).sqrt()


def keep_support(mags: Tensor, budget: int) -> Kept:
    """The `budget` coordinates of largest magnitude, scale 1: S v = v exactly whenever at most
    `budget` coordinates of v are non-zero (they are all among the kept ones)."""
    index = mags.topk(budget).indices
    return Kept(index, torch.ones(budget, dtype=mags.dtype, device=mags.device))


def keep_uniform(n: int, budget: int, noise: Tensor) -> Kept:
    """K = budget of n coordinates uniformly without replacement, scaled n / K."""
    index = noise.topk(budget).indices  # the K largest of n i.i.d. uniforms: a uniform subset
    return Kept(index, torch.full((budget,), n / budget, dtype=noise.dtype, device=noise.device))


def minvar_probabilities(mags: Tensor, budget: int) -> Tensor:
    """p_i = min(1, c m_i) with sum_i p_i = min(budget, number of non-zero m_i).

    Water-filling: the t largest coordinates saturate at 1 for the smallest t with
    (K - t) m_(t) <= sum_{i >= t} m_(i) (m sorted decreasingly); then c = (K - t) / that sum.
    """
    n = mags.shape[0]
    desc, order = mags.sort(descending=True)  # (n,)
    tail = desc.flip(0).cumsum(0).flip(0)  # (n,): tail[t] = sum_{i >= t} desc[i]
    ranks = torch.arange(n, device=mags.device)
    fits = (budget - ranks) * desc <= tail
    saturated = fits.int().argmax().reshape(1)  # the first t that fits (argmax: first maximum)
    rest = tail.gather(0, saturated)  # (1,)
    c = (budget - saturated) / torch.where(rest > 0, rest, torch.ones_like(rest))
    p_sorted = torch.where(ranks < saturated, torch.ones_like(desc), (c * desc).clamp(max=1))
    return torch.zeros_like(mags).scatter(0, order, p_sorted)


def keep_minvar(mags: Tensor, budget: int, noise: Tensor) -> Kept:
    """`budget` distinct coordinates, coordinate i kept with probability `minvar_probabilities`.

    Systematic sampling: lay the p_i end to end in a random order (from noise[:n]); the points
    u, u + 1, ..., u + K - 1 (u = noise[n]) hit the intervals of the kept coordinates, and an
    interval of length p_i <= 1 holds a point with probability exactly p_i. When the total
    mass is below K (fewer than K non-zero coordinates) the remaining slots hold unkept
    coordinates with scale 0, so the K indices are always distinct.
    """
    n = mags.shape[0]
    p = minvar_probabilities(mags, budget)  # (n,)
    order = noise[:n].argsort()  # (n,) a uniformly random order
    p_ord = p[order]
    ends = p_ord.cumsum(0)  # (n,) interval j is [ends[j - 1], ends[j])
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])
    u = noise[n]
    hit = _points_below(ends, u, budget) > _points_below(starts, u, budget)  # (n,)
    first = (~hit).to(torch.int8).argsort(stable=True)[:budget]  # the hit positions first
    hit_first = hit[first]
    p_first = torch.where(hit_first, p_ord[first], torch.ones_like(p_ord[first]))
    return Kept(order[first], torch.where(hit_first, 1 / p_first, torch.zeros_like(p_first)))


def _points_below(t: Tensor, u: Tensor, budget: int) -> Tensor:
    """How many of the points u + k, k = 0..budget-1, lie below each t."""
    return (t - u).ceil().clamp(0, budget)


def take(v: Tensor, dim: int, index: Tensor) -> Tensor:
    """The slices `index` (K,) of v along `dim` (a gather that `vmap` batches without a loop)."""
    if dim == 0 and v.dim() == 2:
        return torch.embedding(v, index)  # (K, cols)
    moved = v.movedim(dim, 0)
    rest = moved.shape[1:]
    rows = torch.embedding(moved.reshape(moved.shape[0], -1), index)  # (K, prod(rest))
    return rows.reshape(index.shape[0], *rest).movedim(0, dim)


def put(part: Tensor, index: Tensor, n: int) -> Tensor:
    """A tensor of n rows, zero except rows `index` (K distinct), which hold `part` (K, ...)."""
    return part.new_zeros((n, *part.shape[1:])).index_put((index,), part)
