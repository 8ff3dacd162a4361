"""numpy's and scipy's call shapes on numpywren's linear-algebra functions: one decorator, ``scipy_call``.

What it adds to a function, before anything is stored or run:

- scipy's performance hints ``overwrite_a`` / ``overwrite_b`` are accepted (bools) and ignored: a BigMatrix
  is written once per generation and never changed in place (jobs that read it rely on that), so there is
  no input buffer to reuse; a numpy right-hand side is copied into the store anyway.
- ``lapack_driver``: numpywren has one algorithm per function. ``drivers=`` names the LAPACK drivers whose
  answer is the same as that algorithm's (svd: gesdd and gesvd give the same factorization; lstsq: gelsd,
  gelsy and gelss the same minimum-norm solution): those are accepted (passed on only to a function that
  takes ``lapack_driver``), any other is a ValueError naming the algorithm used.
- stacked (3-D and up) numpy inputs: a ValueError naming the alternative (one 2-D job per matrix),
  instead of an error about a shape deep inside.
- ``transposed=True`` (scipy.linalg.solve): solves ``A.T x = b`` through the transposed view (no copy).

And numpy 2's named results (``QRResult``, ``SVDResult``, ``EighResult``, ``SlogdetResult``): tuples whose
fields are also attributes, so ``Q, R = qr(A)`` and ``qr(A).Q`` both work.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple

import numpy as np


def scipy_call(name: str, *, algorithm: str, drivers: tuple = (), transposed: bool = False):
    """Decorate numpywren's ``name`` with scipy's keywords (see the module docstring)."""
    def decorate(fn):
        takes_driver = "lapack_driver" in inspect.signature(fn).parameters

        @functools.wraps(fn)
        def call(*args, overwrite_a: bool = False, overwrite_b: bool = False, lapack_driver=None, **kwargs):
            for keyword, value in (("overwrite_a", overwrite_a), ("overwrite_b", overwrite_b)):
                if not isinstance(value, (bool, np.bool_)):
                    raise TypeError(f"{name}: {keyword} must be a bool, got {value!r}")
            if lapack_driver is not None and not isinstance(lapack_driver, str):
                raise TypeError(f"{name}: lapack_driver must be a str or None, got {lapack_driver!r}")
            if lapack_driver is not None and lapack_driver not in drivers:
                offered = f"one of {', '.join(map(repr, drivers))} or None" if drivers else "None"
                raise ValueError(f"{name}: lapack_driver={lapack_driver!r} has no numpywren equivalent ({name} runs "
                                 f"{algorithm}); pass {offered}")
            if lapack_driver is not None and takes_driver:
                kwargs["lapack_driver"] = lapack_driver
            check_not_stacked(name, *args, *kwargs.values())
            if transposed and kwargs.pop("transposed", False):
                args = (args[0].T, *args[1:])
            return fn(*args, **kwargs)
        return call
    return decorate


def check_not_stacked(name: str, *values) -> None:
    """A stacked (N-D, N > 2) array among ``values`` is a ValueError naming what to do instead."""
    for value in values:
        if isinstance(value, np.ndarray) and value.ndim > 2:
            raise ValueError(f"{name}: stacked inputs (an array of shape {value.shape}) are not supported: numpywren "
                             "works on one 2-D matrix per job; loop over the stack, e.g. "
                             f"[numpywren.{name}(A_i, ...) for A_i in ...], each A_i a BigMatrix")


class QRResult(NamedTuple):
    """``qr``'s result, as numpy 2's ``numpy.linalg.QRResult`` (Q may be a BigMatrix)."""
    Q: Any
    R: Any


class SVDResult(NamedTuple):
    """As numpy 2's ``numpy.linalg.SVDResult``."""
    U: Any
    S: Any
    Vh: Any


class EighResult(NamedTuple):
    """As numpy 2's ``numpy.linalg.EighResult``."""
    eigenvalues: Any
    eigenvectors: Any


class SlogdetResult(NamedTuple):
    """As numpy 2's ``numpy.linalg.SlogdetResult``."""
    sign: Any
    logabsdet: Any
