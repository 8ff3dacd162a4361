"""Kernel matrices K(X, Y) of tiled data (rbf, linear, polynomial, laplacian), and a kernel ridge solve.

``kernel`` follows scikit-learn's ``pairwise_kernels`` (same kinds, parameter
names and defaults; ``gamma=None`` means 1 / n_features), so a result can be
checked against it on a sample. X (n x d) and Y (m x d) are BigMatrices with
the same column tiling; K is n x m with tiles (X's row tile, Y's row tile).

The job is a DAG: for rbf a first stage writes the squared row norms of every
row block of X and Y (small column tiles under the job's prefix, deleted on
success), then one task per K tile streams the column blocks of its two row
blocks, accumulates x . y with BLAS and applies the kernel once (see
``blocks.kernels``). With ``Y=None`` only the tiles with i >= j are computed
and K is stored as a symmetric matrix (the other triangle reads as the
transpose), exactly as ``syrk`` stores X @ X.T.
"""
from __future__ import annotations

import math
import warnings
from numbers import Real

import numpy as np

from blocks.kernels import ALIASES, KINDS, tile_flops
from numpywren import gemm, jobs, protocol
from numpywren.api import get_executor
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix

#: the parameters each kind uses (the others are ignored, as by scikit-learn's pairwise_kernels)
PARAMS = {"rbf": ("gamma",), "linear": (), "polynomial": ("gamma", "degree", "coef0"),
          "laplacian": ("gamma",)}


def kernel(X: BigMatrix, Y: BigMatrix | None = None, kind: str = "rbf", gamma: float | None = None,
           degree: float = 3, coef0: float = 1, out: BigMatrix | str | None = None, executor=None, *,
           check_finite: bool = False, use_numexpr: bool = True, compute: bool = True,
           **options) -> "BigMatrix | jobs.Plan":
    """K[a, b] = k(X[a], Y[b]) as a tiled n x m matrix; ``Y=None`` computes K(X, X), one triangle.

    ``kind`` is ``"rbf"`` exp(-gamma ||x-y||^2), ``"linear"`` x.y, ``"polynomial"``
    (or ``"poly"``) (gamma x.y + coef0)^degree, or ``"laplacian"`` exp(-gamma ||x-y||_1).
    ``out``, ``check_finite``, ``compute`` and the run options (``retries``,
    ``backoff``, ``lease_seconds``, ``progress``, ``resume``) work as in
    :func:`numpywren.matmul`; ``use_numexpr=False`` runs the tiles'
    element-wise step in plain numpy. The run's report is attached as
    ``K.report``. As in scikit-learn, float32 rbf distances are computed in
    float64 and the tile is stored in float32.

    Complex X and Y (complex64/complex128) have the linear kernel only: K = X Y^H, the Gram matrix of
    the complex inner product <x, y> = sum x_k conj(y_k), so K(X) = X X^H is Hermitian positive
    semidefinite (``herk(X)``'s result, stored as one triangle whose mirror is conjugated). scikit-learn
    refuses complex data; X Y^T would be neither Hermitian nor a Gram matrix. rbf, polynomial and
    laplacian of complex data raise TypeError.

    Parameters
    ----------
    X : BigMatrix
        Data points as rows (n x d), all features in one tile column.
    Y : BigMatrix, optional
        Second set of points (m x d); ``None`` computes the symmetric K(X, X).
    kind : str, default "rbf"
        ``"rbf"``, ``"linear"``, ``"polynomial"`` (``"poly"``) or ``"laplacian"``.
    gamma : float, optional
        Kernel coefficient; ``None`` means 1 / n_features, as scikit-learn.
    degree : float, default 3
        Degree of the polynomial kernel.
    coef0 : float, default 1
        Constant term of the polynomial kernel.
    out : BigMatrix or str, optional
        The result's key (or an existing BigMatrix, replaced by a new generation); default a new key.
    executor : Executor, optional
        Where the tasks run; default :func:`numpywren.get_executor`.
    check_finite : bool, default False
        Scan the inputs on the workers first and name the blocks holding NaN or inf.
    use_numexpr : bool, default True
        ``False`` runs the tiles' element-wise step in plain numpy.
    compute : bool, default True
        ``False`` returns the :class:`~numpywren.Plan` without touching the store.
    **options
        The run options every operation takes (``numpywren.jobs.RUN_OPTIONS``: ``retries``, ``backoff``,
        ``lease_seconds``, ``progress``, ``resume``, ``backups``, ``silence_seconds``, ``max_cost``; see
        :func:`numpywren.jobs.run`), and ``workers`` (with ``compute=False``).

    Returns
    -------
    BigMatrix or Plan
        K (n x m), with ``K.report``; the plan with ``compute=False``.

    Raises
    ------
    TypeError
        X or Y is not a float32 or float64 BigMatrix (complex64/complex128 for ``kind="linear"``).
    ValueError
        An unknown ``kind``, invalid parameters, or X and Y with different features or tiles.
    """
    kind = _check_kind(kind)
    symmetric = Y is None
    Y = X if symmetric else Y
    _check_data(X, Y, kind)
    if X.shape[1] == 0:   # scikit-learn's check_array refuses 0 features too
        raise ValueError(f"kernel: X has 0 features (shape {X.shape}); a minimum of 1 is required, as scikit-learn")
    gamma = _check_params(kind, gamma, degree, coef0, n_features=X.shape[1])
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    dtype = np.result_type(X.dtype, Y.dtype)
    K = jobs.output_matrix(out, (X.shape[0], Y.shape[0]), (X.tile_shape[0], Y.tile_shape[0]), dtype, X.store,
                           symmetric=symmetric, hermitian=symmetric and dtype.kind == "c", inputs=(X, Y))
    params = {"kind": kind, "use_numexpr": bool(use_numexpr),
              **{name: value for name, value in (("gamma", gamma), ("degree", degree), ("coef0", coef0))
                 if name in PARAMS[kind]}}
    dag, scratch = DAG(), {}
    norms = _add_row_norms(dag, scratch, X, Y, np.result_type(dtype, np.float64)) if kind == "rbf" else None
    same = X == Y
    blocks = K.stored_blocks() if symmetric else K.block_indices()
    for i, j in blocks:
        task_params = dict(params, same_rows=same and i == j)
        deps = ()
        if norms is not None:
            (nx, tx), (ny, ty) = norms["X"], norms["Y"]
            task_params["norms"] = ((nx, i, 0), (ny, j, 0))
            deps = tuple(dict.fromkeys((tx[i], ty[j])))
        rows, cols = K.block_shape(i, j)
        pairs = tuple(((X, i, k), (Y, j, k)) for k in range(X.grid[1]))
        dag.add(Task(f"{K.key}/K{i}_{j}", "kernel", (K, i, j), pairs, task_params, deps=deps,
                     flops=tile_flops(kind, rows, cols, X.shape[1])))
    desc = f"{kind} kernel {X.shape[0]}x{Y.shape[0]}" + (" (symmetric)" if symmetric else "")
    recorded = {k: v for k, v in params.items() if k != "use_numexpr"}
    plan = jobs.Plan(dag, [jobs.Output(K, "kernel", (X, Y), recorded)], scratch, desc, opts.workers)
    return opts.submit(plan, [X, Y])


def _add_row_norms(dag: DAG, scratch: dict, X: BigMatrix, Y: BigMatrix, dtype) -> dict:
    """First stage: one task per row block writes its squared row norms (an (rows x 1) tile, in ``dtype``)."""
    out = {}
    for name, M in (("X", X), ("Y", Y)):
        if name == "Y" and M == X:
            out["Y"] = out["X"]   # K(X, X): the norms of X serve both sides
            continue
        norms = jobs.scratch_matrix(scratch, f"norms{name}", X, (M.shape[0], 1), (M.tile_shape[0], 1), dtype)
        ids = []
        for i in range(M.grid[0]):
            refs = tuple((M, i, k) for k in range(M.grid[1]))
            rows = M.block_shape(i, 0)[0]
            ids.append(dag.add(Task(f"norms{name}/{i}", "row_norms", (norms, i, 0), refs,
                                    flops=2.0 * rows * M.shape[1])).id)
        out[name] = (norms, ids)
    return out


# -- kernel ridge regression with distributed K @ v ----------------------------------------------
class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at its step limit before reaching its tolerance (scikit-learn's
    ``ConvergenceWarning`` role): the result is approximate."""


def ridge_solve(K: BigMatrix, y, alpha: float = 1.0, steps: int = 50, tol: float = 1e-8, executor=None,
                progress: bool | None = False, return_n_iter: bool = False):
    """Dual coefficients c of kernel ridge regression, (K + alpha I) c = y, by conjugate gradients.

    Each step is one distributed ``K @ p`` (``numpywren.matmul`` with ``p`` stored
    as a column BigMatrix); vectors of length n stay on the driver. Stops after
    ``steps`` or when ||residual|| <= tol ||y||; stopping at ``steps`` first warns
    (:class:`ConvergenceWarning`, naming the residual reached). ``return_n_iter``
    returns ``(c, steps taken)``. Predictions for new points Z are
    ``kernel(Z, X) @ c``, as with scikit-learn's ``KernelRidge(alpha=...).dual_coef_``.
    """
    if not isinstance(K, BigMatrix) or K.dtype.kind != "f":
        raise TypeError(f"ridge_solve needs a real float32/float64 BigMatrix K, got {getattr(K, 'dtype', K)!r}")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = K.shape[0]
    if K.shape != (n, n) or y.shape != (n,):
        raise ValueError(f"ridge_solve needs a square K and a y of its length; got K {K.shape}, y {y.shape}")
    if not (isinstance(alpha, Real) and alpha >= 0):
        raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
    executor = get_executor(executor)
    prefix = protocol.scratch_key(protocol.new_id("ridge"), "cg")
    column = (K.tile_shape[1], 1)

    def k_times(v: np.ndarray) -> np.ndarray:
        V = BigMatrix.from_numpy(v.astype(K.dtype), column, K.store, f"{prefix}/p", overwrite=True)
        KV = gemm.matmul(K, V, f"{prefix}/Kp", executor, progress=progress)
        return KV.to_numpy()[:, 0].astype(np.float64) + alpha * v

    coef = np.zeros(n)
    residual = y.copy()
    direction = residual.copy()
    rr = residual @ residual
    target = tol * np.linalg.norm(y)
    n_iter = 0
    try:
        while math.sqrt(rr) > target and n_iter < steps:
            n_iter += 1
            k_dir = k_times(direction)
            step = rr / (direction @ k_dir)
            coef += step * direction
            residual -= step * k_dir
            rr, rr_old = residual @ residual, rr
            direction = residual + (rr / rr_old) * direction
    finally:
        K.store.delete_prefix(f"{prefix}/")
    if math.sqrt(rr) > target:
        warnings.warn(f"ridge_solve: conjugate gradients did not converge in {steps} steps (relative residual "
                      f"{math.sqrt(rr) / (np.linalg.norm(y) or 1.0):.3g} > tol {tol:g}); the coefficients are "
                      "approximate: raise max_iter (steps) or alpha, or use solver='cholesky'",
                      ConvergenceWarning, stacklevel=2)
    return (coef, n_iter) if return_n_iter else coef


# -- validation ------------------------------------------------------------------------------------
def _check_kind(kind) -> str:
    name = ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if name not in KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; use one of {', '.join(KINDS)} (or 'poly')")
    return name


def _check_data(X, Y, kind: str = "rbf") -> None:
    for name, M in (("X", X), ("Y", Y)):
        if not isinstance(M, BigMatrix):
            raise TypeError(f"kernel: {name} must be a BigMatrix, got {type(M).__name__} "
                            "(store it with BigMatrix.from_numpy first)")
        if M.dtype.kind == "c" and kind != "linear":
            raise TypeError(f"kernel: {name} has dtype {M.dtype}; complex data has only kind='linear' "
                            f"(K = X Y^H), not {kind!r}")
        if M.dtype.name not in ("float32", "float64", "complex64", "complex128"):
            raise TypeError(f"kernel: {name} has dtype {M.dtype}; use float32 or float64")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"kernel: X has {X.shape[1]} features (columns) but Y has {Y.shape[1]}")
    if X.tile_shape[1] != Y.tile_shape[1]:
        raise ValueError(f"kernel: X and Y must tile their columns alike; X's tiles are {X.tile_shape} "
                         f"and Y's {Y.tile_shape} (re-tile one so the second numbers match)")


def _check_params(kind: str, gamma, degree, coef0, n_features: int) -> float | None:
    """Validate as scikit-learn does; return the effective gamma (None means 1 / n_features)."""
    if "gamma" in PARAMS[kind]:
        if gamma is None:
            gamma = 1.0 / n_features
        if not _finite(gamma) or not (gamma > 0 if kind == "laplacian" else gamma >= 0):
            bound = "> 0" if kind == "laplacian" else ">= 0"
            raise ValueError(f"kernel: gamma must be a finite number {bound} for {kind}, got {gamma!r}")
        gamma = float(gamma)
    if kind == "polynomial":
        if not _finite(degree) or degree < 1:
            raise ValueError(f"kernel: degree must be a finite number >= 1, got {degree!r}")
        if not _finite(coef0):
            raise ValueError(f"kernel: coef0 must be a finite number, got {coef0!r}")
    return gamma


def _finite(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


# -- exact kernel ridge regression (scikit-learn estimator) ---------------------------------------
class _Params:
    """get_params/set_params from the constructor's signature: scikit-learn's convention, for when it is
    not installed (with it, KernelRidge derives from sklearn.base.BaseEstimator instead)."""

    def get_params(self, deep: bool = True) -> dict:
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params):
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid: {sorted(valid)}")
            setattr(self, name, value)
        return self

    def score(self, X, y, sample_weight=None) -> float:
        """R^2 of the predictions (as sklearn.base.RegressorMixin.score)."""
        y = np.asarray(y, dtype=np.float64)
        residual = np.average((y - self.predict(X)) ** 2, axis=0, weights=sample_weight)
        spread = np.average((y - np.average(y, axis=0, weights=sample_weight)) ** 2, axis=0, weights=sample_weight)
        return float(np.mean(1 - residual / spread))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def _estimator_bases() -> tuple:
    try:
        from sklearn.base import BaseEstimator, RegressorMixin
    except ImportError:
        return (_Params,)
    return (RegressorMixin, BaseEstimator)


def _make_kernel_ridge():
    class KernelRidge(*_estimator_bases()):
        """Kernel ridge regression solved exactly: (K + alpha I) c = y by the tiled Cholesky factorization.

        scikit-learn's estimator conventions (``fit``, ``predict``, ``score``,
        ``get_params``/``set_params``: ``sklearn.base.clone`` and ``GridSearchCV``
        work) and its ``KernelRidge`` parameters, with ``kernel`` one of
        :data:`KINDS`. ``solver="cg"`` uses :func:`ridge_solve` (conjugate
        gradients on distributed ``K @ p``) instead of a factorization.
        ``tile_size`` is the rows per tile of X and K (None, the default: chosen for the executor and the
        kernel's work, numpywren.tiling.choose_tile). The executor (and its
        store) is a ``fit`` argument, not a parameter, so that cloning an
        estimator never copies worker processes; ``predict`` uses fit's.

        ``fit`` stores a numpy X in the executor's store (the previous one of
        this estimator is deleted on refit); K is deleted once solved.
        ``dual_coef_`` is numpy; predictions are kernel(Z, X) @ dual_coef_,
        both distributed. ``n_iter_``: conjugate-gradient steps per target
        (``solver="cg"``; None for Cholesky); stopping at ``max_iter`` before
        ``tol`` warns (:class:`ConvergenceWarning`).
        """

        def __init__(self, alpha=1.0, kernel="rbf", gamma=None, degree=3, coef0=1, solver="cholesky",
                     tile_size=None, max_iter=200, tol=1e-10):
            self.alpha, self.kernel, self.gamma, self.degree, self.coef0 = alpha, kernel, gamma, degree, coef0
            self.solver, self.tile_size, self.max_iter, self.tol = solver, tile_size, max_iter, tol

        def fit(self, X, y, executor=None):
            if self.solver not in ("cholesky", "cg"):
                raise ValueError(f"solver must be 'cholesky' or 'cg', got {self.solver!r}")
            if not (isinstance(self.alpha, Real) and self.alpha >= 0):
                raise ValueError(f"alpha must be a number >= 0, got {self.alpha!r}")
            ex = get_executor(executor)
            self._forget_owned()
            X_m, owned = self._as_matrix(X, ex.store, None, ex)
            y = np.asarray(y, dtype=np.float64)
            if y.shape[:1] != (X_m.shape[0],) or y.ndim > 2:
                raise ValueError(f"y must have {X_m.shape[0]} rows (one per sample of X), got shape {y.shape}")
            K = kernel(X_m, None, self.kernel, self.gamma, self.degree, self.coef0, executor=ex, progress=False)
            try:
                if self.solver == "cholesky":
                    from numpywren.decomp_lu import solve

                    coef = solve(K, y, assume_a="pos", shift=float(self.alpha), executor=ex, progress=False)
                    self.n_iter_ = None
                else:
                    columns = y.reshape(len(y), -1).T
                    solved = [ridge_solve(K, col, self.alpha, self.max_iter, self.tol, executor=ex,
                                          return_n_iter=True) for col in columns]
                    coef = np.stack([c for c, _ in solved], axis=1).reshape(y.shape)
                    self.n_iter_ = np.array([n for _, n in solved])
            except BaseException:
                if owned:
                    X_m.delete()
                raise
            finally:
                K.delete()
            self.X_fit_, self._owned_X, self.executor_ = X_m, owned, ex
            self.dual_coef_ = coef
            self.n_features_in_ = X_m.shape[1]
            return self

        def predict(self, X):
            if not hasattr(self, "dual_coef_"):
                raise ValueError("this KernelRidge is not fitted yet; call fit(X, y) first")
            ex = getattr(self, "executor_", None) or get_executor()
            Z, owned = self._as_matrix(X, ex.store, self.X_fit_.tile_shape[1], ex, self.X_fit_.tile_shape[0])
            coef = self.dual_coef_.reshape(self.X_fit_.shape[0], -1)
            made = []
            try:
                Kz = kernel(Z, self.X_fit_, self.kernel, self.gamma, self.degree, self.coef0, executor=ex,
                            progress=False)
                made.append(Kz)
                C = BigMatrix.from_numpy(coef.astype(Kz.dtype), (self.X_fit_.tile_shape[0], coef.shape[1]),
                                         ex.store, f"matrices/{protocol.new_id('krr-coef')}")
                made.append(C)
                P = gemm.matmul(Kz, C, executor=ex, progress=False)
                made.append(P)
                pred = P.to_numpy().astype(np.float64)
            finally:
                for M in made + ([Z] if owned else []):
                    M.delete()
            return pred.reshape(-1) if self.dual_coef_.ndim == 1 else pred

        def _as_matrix(self, X, store, column_tile, executor=None, row_tile=None):
            """(BigMatrix, owned): a BigMatrix as is, a numpy array stored under a new key."""
            if isinstance(X, BigMatrix):
                return X, False
            x = np.asarray(X)
            if x.ndim != 2:
                raise ValueError(f"X must be 2-D (samples x features), got shape {x.shape}")
            x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
            if x.dtype not in (np.float32, np.float64):
                x = x.astype(np.float64)
            if self.tile_size is None and row_tile is not None:  # predict: X's rows per tile, as fit chose
                rows = max(1, min(row_tile, x.shape[0]))
            elif self.tile_size is None:
                from numpywren.tiling import for_executor

                rows = for_executor(x.shape, x.dtype, executor, operation="kernel")[0]
            else:
                rows = max(1, min(int(self.tile_size), x.shape[0]))
            key = f"matrices/{protocol.new_id('krr-X')}"
            return BigMatrix.from_numpy(x, (rows, column_tile or x.shape[1]), store, key), True

        def _forget_owned(self):
            if getattr(self, "_owned_X", False):
                self.X_fit_.delete()
                self._owned_X = False

        def __getstate__(self):  # the executor stays behind (worker processes do not pickle)
            return {k: v for k, v in self.__dict__.items() if k != "executor_"}

    KernelRidge.__module__, KernelRidge.__qualname__ = __name__, "KernelRidge"   # pickles by name
    return KernelRidge


def __getattr__(name):
    """``KernelRidge`` is built on first use: it imports scikit-learn (if installed) only then."""
    if name == "KernelRidge":
        globals()["KernelRidge"] = cls = _make_kernel_ridge()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
