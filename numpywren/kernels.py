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
from numbers import Real

import numpy as np

from blocks.kernels import ALIASES, KINDS, tile_flops
from numpywren import jobs, linalg, protocol
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
    """
    kind = _check_kind(kind)
    symmetric = Y is None
    Y = X if symmetric else Y
    _check_data(X, Y)
    gamma = _check_params(kind, gamma, degree, coef0, n_features=X.shape[1])
    executor, workers = jobs.executor_and_workers(executor, compute, options)
    dtype = np.result_type(X.dtype, Y.dtype)
    K = jobs.output_matrix(out, (X.shape[0], Y.shape[0]), (X.tile_shape[0], Y.tile_shape[0]), dtype, X.store,
                           symmetric=symmetric, inputs=(X, Y))
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
    plan = jobs.Plan(dag, [jobs.Output(K, "kernel", (X, Y), recorded)], scratch, desc, workers)
    return jobs.run_or_plan(plan, executor, [X, Y], check_finite, compute, options)


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
def ridge_solve(K: BigMatrix, y, alpha: float = 1.0, steps: int = 50, tol: float = 1e-8, executor=None,
                progress: bool | None = False) -> np.ndarray:
    """Dual coefficients c of kernel ridge regression, (K + alpha I) c = y, by conjugate gradients.

    Each step is one distributed ``K @ p`` (``numpywren.matmul`` with ``p`` stored
    as a column BigMatrix); vectors of length n stay on the driver. Stops after
    ``steps`` or when ||residual|| <= tol ||y||. Predictions for new points Z are
    ``kernel(Z, X) @ c``, as with scikit-learn's ``KernelRidge(alpha=...).dual_coef_``.
    """
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
        KV = linalg.matmul(K, V, f"{prefix}/Kp", executor, progress=progress)
        return KV.to_numpy()[:, 0].astype(np.float64) + alpha * v

    coef = np.zeros(n)
    residual = y.copy()
    direction = residual.copy()
    rr = residual @ residual
    try:
        for _ in range(steps):
            if math.sqrt(rr) <= tol * np.linalg.norm(y):
                break
            k_dir = k_times(direction)
            step = rr / (direction @ k_dir)
            coef += step * direction
            residual -= step * k_dir
            rr, rr_old = residual @ residual, rr
            direction = residual + (rr / rr_old) * direction
    finally:
        K.store.delete_prefix(f"{prefix}/")
    return coef


# -- validation ------------------------------------------------------------------------------------
def _check_kind(kind) -> str:
    name = ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if name not in KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; use one of {', '.join(KINDS)} (or 'poly')")
    return name


def _check_data(X, Y) -> None:
    for name, M in (("X", X), ("Y", Y)):
        if not isinstance(M, BigMatrix):
            raise TypeError(f"kernel: {name} must be a BigMatrix, got {type(M).__name__} "
                            "(store it with BigMatrix.from_numpy first)")
        if M.dtype.name not in ("float32", "float64"):
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
