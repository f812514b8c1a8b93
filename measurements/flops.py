"""Counting the work a call does: FLOPs of matmuls, convolutions and linear algebra, and
elementwise operations, each counted once per output element.

`FlopCounterMode` counts matmuls and convolutions (forward and backward, 2 FLOPs per
multiply-add) and nothing for the LAPACK-backed decompositions, which on the small batched
matrices of fg-wperp, svd-subspace and cv-predicted can dominate a step. `LINALG` registers their
standard operation counts (2 FLOPs per multiply-add as well, batched shapes multiplied out):
- Golub and Van Loan, Matrix Computations, 4th ed. (GvL): §4.2 Cholesky n³/3; §3.2 LU with
  partial pivoting 2n³/3; §3.1 triangular solves n² per right-hand side; §5.2 Householder QR
  2n²(m - n/3) for m >= n; §8.3 symmetric eigenvalues by tridiagonalisation 4n³/3, about 9n³
  with eigenvectors; §8.6 the Golub-Kahan-Reinsch SVD (m >= n): singular values only
  4mn² - 4n³/3, thin U and V 14mn² + 8n³, full U and V 4m²n + 8mn² + 9n³.
- LAPACK Working Note 41 (operation counts of the LAPACK routines): DORGQR (forming k columns
  of Q from k reflectors on m rows) 4mk² - 2(m + k)k² + 4k³/3 = 2mk² - 2k³/3, DGETRI (inverse
  from LU) 4n³/3, DORMQR (applying Qᵀ of k reflectors to an m x r block) 4mkr - 2k²r.
Wide matrices (m < n) are counted as their transposes. Counts are of the algorithm's leading
terms, not of the iterations a particular LAPACK driver happens to take.

Elementwise work (`Work.elementwise`) is a convention: one operation per element of the output
of every other operator that computes values (activations, normalisations, softmax, random
draws, reductions, copies); views, allocations without fill and error checks count nothing.
Forward-mode estimators on elementwise-bound models (GELU, LayerNorm, softmax) are thereby not
flattered by a matmul-only count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten
Shape = Sequence[int]


@dataclass(frozen=True)
class Work:
    """What one call did: FLOPs (matmul, convolution, linear algebra) and elementwise ops."""

    flops: int
    elementwise: int


def _batch(shape: Shape) -> int:
    return math.prod(shape[:-2])


def _tall(shape: Shape) -> tuple[int, int]:
    """(m, n) with m >= n: a wide matrix is counted as its transpose."""
    m, n = shape[-2], shape[-1]
    return (m, n) if m >= n else (n, m)


def _qr_r(m: int, n: int) -> float:
    """Householder QR of a tall m x n matrix, R only (GvL §5.2)."""
    return 2 * n * n * (m - n / 3)


def _form_q(m: int, k: int, columns: int) -> float:
    """`columns` columns of Q (m rows) from k reflectors (LAWN 41, DORGQR)."""
    return 4 * m * columns * k - 2 * (m + columns) * k * k + 4 * k**3 / 3


def svd_flops(shape: Shape, full_matrices: bool = True, compute_uv: bool = True) -> int:
    """`torch.linalg.svd` / `svdvals` (GvL §8.6, Golub-Kahan-Reinsch)."""
    m, n = _tall(shape)
    if not compute_uv:
        per = 4 * m * n * n - 4 * n**3 / 3
    elif full_matrices:
        per = 4 * m * m * n + 8 * m * n * n + 9 * n**3
    else:
        per = 14 * m * n * n + 8 * n**3
    return int(_batch(shape) * per)


def eigh_flops(shape: Shape, compute_v: bool = True) -> int:
    """`torch.linalg.eigh` / `eigvalsh` of symmetric n x n matrices (GvL §8.3)."""
    n = shape[-1]
    return int(_batch(shape) * (9 * n**3 if compute_v else 4 * n**3 / 3))


def qr_flops(shape: Shape, mode: str = "reduced") -> int:
    """`torch.linalg.qr`: Householder R (GvL §5.2), plus Q when asked (LAWN 41, DORGQR)."""
    rows, cols = shape[-2], shape[-1]
    m, n = _tall(shape)
    per = _qr_r(m, n)
    k = min(rows, cols)
    if mode == "reduced":
        per += _form_q(rows, k, k)
    elif mode == "complete":
        per += _form_q(rows, k, rows)
    return int(_batch(shape) * per)


def lu_solve_flops(a: Shape, b: Shape) -> int:
    """`torch.linalg.solve`: LU with partial pivoting 2n³/3 (GvL §3.2), then two triangular
    solves of n² each per right-hand side (GvL §3.1)."""
    n = a[-1]
    rhs = b[-1] if len(b) == len(a) else 1
    return int(math.prod(b[:-2] if len(b) == len(a) else b[:-1]) * (2 * n**3 / 3 + 2 * n * n * rhs))


def cholesky_flops(shape: Shape) -> int:
    """`torch.linalg.cholesky` (GvL §4.2): n³/3."""
    return int(_batch(shape) * shape[-1] ** 3 / 3)


def triangular_solve_flops(a: Shape, b: Shape) -> int:
    """`torch.linalg.solve_triangular` and `cholesky_solve` (one or two): n² per right-hand side."""
    n = a[-1]
    return int(math.prod(b[:-2]) * n * n * (b[-1] if b[-2] == n else b[-2]))


def inverse_flops(shape: Shape) -> int:
    """`torch.linalg.inv`: LU 2n³/3 (GvL §3.2) + inverse from LU 4n³/3 (LAWN 41, DGETRI)."""
    return int(_batch(shape) * 2 * shape[-1] ** 3)


def lstsq_flops(a: Shape, b: Shape) -> int:
    """`torch.linalg.lstsq` by QR: R (GvL §5.2), Qᵀb (LAWN 41, DORMQR), one triangular solve."""
    m, n = a[-2], a[-1]
    r = b[-1] if len(b) == len(a) else 1
    k = min(m, n)
    m_t, n_t = _tall(a)
    return int(_batch(a) * (_qr_r(m_t, n_t) + 4 * m * k * r - 2 * k * k * r + k * k * r))


def _numel(shape: Shape) -> int:
    return math.prod(shape)


# FlopCounterMode calls a formula with tensors as shapes, arguments left at their defaults
# dropped, and `out_shape`: the outputs' shapes, which tell which factors were computed.
def _svd(a: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    u, _s, vh = out_shape
    m, n = a[-2], a[-1]
    full = m != n and u[-1] == m and vh[-2] == n
    return svd_flops(a, full_matrices=full, compute_uv=_numel(u) > 0)


def _eigh(a: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    return eigh_flops(a, compute_v=_numel(out_shape[1]) > 0)


def _qr(a: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    q = out_shape[0]
    m, n = a[-2], a[-1]
    mode = "r" if _numel(q) == 0 else "complete" if m > n and q[-1] == m else "reduced"
    return qr_flops(a, mode)


def _solve(a: Shape, b: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    return lu_solve_flops(a, b)


def _cholesky(a: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    return cholesky_flops(a)


def _triangular(a: Shape, b: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    return triangular_solve_flops(a, b)


def _cholesky_solve(b: Shape, factor: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    return 2 * triangular_solve_flops(factor, b)


def _inverse(a: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    return inverse_flops(a)


def _lstsq(a: Shape, b: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    return lstsq_flops(a, b)


def _pinv(a: Shape, *_: Any, out_shape: Any, **__: Any) -> int:
    k = min(a[-2], a[-1])
    return svd_flops(a, full_matrices=False) + 2 * _batch(a) * a[-2] * a[-1] * k


LINALG: dict[Any, Callable[..., int]] = {
    aten._linalg_svd: _svd,
    aten._linalg_eigh: _eigh,
    aten.linalg_qr: _qr,
    aten._linalg_solve_ex: _solve,
    aten.linalg_cholesky_ex: _cholesky,
    aten.linalg_solve_triangular: _triangular,
    aten.cholesky_solve: _cholesky_solve,
    aten.linalg_inv_ex: _inverse,
    aten.linalg_lstsq: _lstsq,
    aten.linalg_pinv: _pinv,
}
# Operators that compute nothing per element: allocation without fill, error checks, scalars.
_FREE = {
    aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty, aten.new_empty_strided,
    aten._linalg_check_errors, aten._local_scalar_dense, aten.detach, aten.lift_fresh,
    aten.set_, aten.resize_,
}  # fmt: skip


class _ElementwiseCounter(TorchDispatchMode):
    """Adds the output elements of every value-computing operator not counted as FLOPs."""

    def __init__(self, counted: set[Any]) -> None:
        super().__init__()
        self.counted, self.total = counted, 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        if packet not in self.counted and packet not in _FREE and not func.is_view:
            leaves = tree_flatten(out)[0]
            self.total += sum(t.numel() for t in leaves if isinstance(t, torch.Tensor))
        return out


def count_work(fn: Callable[[], object]) -> Work:
    """FLOPs and elementwise operations of everything `fn` runs (forward and backward)."""
    counter = FlopCounterMode(display=False, custom_mapping=LINALG)
    with counter, _ElementwiseCounter(set(counter.flop_registry)) as elementwise:
        fn()
    return Work(int(counter.get_total_flops()), elementwise.total)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls, convolutions and linear algebra `fn` runs."""
    return count_work(fn).flops
