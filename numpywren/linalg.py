"""``numpywren.linalg``: numpy.linalg's names, for what numpywren computes on tiled matrices.

The same names, arguments and results as ``numpy.linalg`` where an operation exists (each also takes the run
options of every numpywren operation: ``executor``, ``workers``, ``compute=False``, ``retries``, ...); the
operations themselves live in the modules named for them (``gemm``, ``factor``, ``decomp_lu``, ``qr``). scipy's
names (``solve_triangular``, ``cho_solve``) stay at the top level, as in ``scipy.linalg``; the LU ones
(``lu_factor``, ``lu_solve``, ``lu``) are here too, beside numpy's ``solve``, ``inv``, ``det``, ``slogdet``.
"""
from __future__ import annotations

from numpywren.decomp_lu import det, inv, lu, lu_factor, lu_solve, slogdet
from numpywren.decomp_lu import solve as _solve
from numpywren.factor import cholesky as _cholesky
from numpywren.gemm import matmul
from numpywren.matrix import BigMatrix
from numpywren.decomp_qr import lstsq, qr

__all__ = ["matmul", "cholesky", "solve", "inv", "det", "slogdet", "lu_factor", "lu_solve", "lu", "qr", "lstsq",
           "norm"]


def cholesky(a: BigMatrix, *, upper: bool = False, **options):
    """The lower Cholesky factor L with a = L L^T, as ``numpy.linalg.cholesky`` (``upper=True``: U = L^T)."""
    return _cholesky(a, lower=not upper, **options)


def solve(a: BigMatrix, b, **options):
    """x with a x = b, as ``numpy.linalg.solve``: LU with partial pivoting for any square ``a``
    (numpywren.solve with ``assume_a="gen"``); a singular ``a`` raises numpy.linalg.LinAlgError naming the block."""
    return _solve(a, b, assume_a="gen", **options)


def norm(x: BigMatrix, ord=None, axis=None, keepdims: bool = False, **options):
    """The Frobenius norm of a BigMatrix, as ``numpy.linalg.norm(x)`` (``ord`` None or ``"fro"``)."""
    if not isinstance(x, BigMatrix):
        raise TypeError(f"norm takes a BigMatrix, got {type(x).__name__}")
    if ord not in (None, "fro") or axis is not None or keepdims:
        raise NotImplementedError("numpywren.linalg.norm computes the Frobenius norm of the whole matrix only "
                                  f"(ord=None or 'fro', axis=None), got ord={ord!r}, axis={axis!r}")
    from numpywren.elementwise import total

    return total(x, "norm", **options)
