"""numpy's and scipy's answers for empty (0 x n, m x 0, 0 x 0) matrices and right-hand sides.

An empty matrix has no tiles, so there is nothing to distribute: each operation's answer follows from the
shapes and dtypes alone (``det`` of 0 x 0 is 1.0, ``svd`` of an m x 0 matrix has no singular values and
an identity U, ...). Every answer is still a :class:`numpywren.jobs.Plan`, so an operation behaves the
same for every shape: it runs the plan and returns its value, or (``compute=False``) returns the plan,
whose value is the answer once ``numpywren.run(plan)`` ran it. The plans have no task, except those that
write an identity matrix (``qr(mode="complete")``'s Q, ``svd``'s full U or Vh); their empty output
matrices are created by the run (a meta.json, no tile), as any output.
"""
from __future__ import annotations

import numpy as np

from numpywren import jobs
from numpywren.compat import QRResult
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix

SVDResult = np.linalg._linalg.SVDResult
EighResult = np.linalg._linalg.EighResult
SlogdetResult = np.linalg._linalg.SlogdetResult


def answer(opts: jobs.RunOptions, desc: str, value, outputs=(), dag: DAG | None = None):
    """``value()`` after a run of ``dag`` (default: no task) writing ``outputs``, or (``compute=False``)
    that plan. Nothing is checked for finiteness: an empty matrix holds no value."""
    plan = jobs.Plan(dag if dag is not None else DAG(), list(outputs), {}, f"{desc} (empty)", opts.workers,
                     finish=value)
    return opts.submit(plan)


def dtype_of(*dtypes) -> np.dtype:
    """The dtype numpy.linalg computes in: at least float32, complex kept."""
    return np.result_type(*dtypes, np.float32)


def real(dtype) -> np.dtype:
    return np.finfo(dtype).dtype


def matrix(out, shape, dtype, like: BigMatrix, tile: int | None = None) -> BigMatrix:
    """An output matrix of ``shape`` in ``like``'s store, tiles ``tile`` (default ``like``'s rows) squared,
    clipped to at least 1."""
    t = max(1, tile or like.tile_shape[0])
    return jobs.output_matrix(out, tuple(shape), (t, t), dtype, like.store, inputs=(like,))


def identity(dag: DAG, M: BigMatrix) -> jobs.Output:
    """Tasks writing M as the identity (diagonal tiles made on the worker, constant zero tiles elsewhere)."""
    for i, j in M.block_indices():
        h, w = M.block_shape(i, j)
        if i == j:
            dag.add(Task(f"{M.key}/I{i}_{j}", "caqr_take", (M, i, j), (), {"segments": [["eye", h, w, 0, h, True]]}))
        else:
            dag.add(Task(f"{M.key}/Z{i}_{j}", "zeros", (M, i, j)))
    return jobs.Output(M, "identity", ())


def zeros(dag: DAG, M: BigMatrix, op: str, inputs=()) -> jobs.Output:
    """Tasks writing M as zeros (constant tiles)."""
    for i, j in M.block_indices():
        dag.add(Task(f"{M.key}/Z{i}_{j}", "zeros", (M, i, j)))
    return jobs.Output(M, op, tuple(inputs))


# -- the operations ---------------------------------------------------------------------------------------------
def qr(A: BigMatrix, mode: str, out, opts):
    """numpy's qr of an empty m x n A: ``reduced`` Q m x 0 and R 0 x n, ``r`` R 0 x n (numpy arrays);
    ``complete`` Q the m x m identity and R m x n (both BigMatrix, as CAQR's complete mode)."""
    m, n = A.shape
    dtype = dtype_of(A.dtype)
    if mode == "r":
        return answer(opts, f"qr {A.shape}", lambda: np.zeros((0, n), dtype))
    if mode == "reduced":
        Q = matrix(out, (m, 0), dtype, A)
        return answer(opts, f"qr {A.shape}", lambda: QRResult(Q, np.zeros((0, n), dtype)),
                      [jobs.Output(Q, "qr", (A,), {"mode": mode})])
    dag = DAG()
    Q, R = matrix(out, (m, m), dtype, A), matrix(None, (m, n), dtype, A)
    return answer(opts, f"qr {A.shape}", lambda: QRResult(Q, R),
                  [identity(dag, Q), jobs.Output(R, "qr", (A,), {"mode": mode})], dag)


def svd(A: BigMatrix, full_matrices: bool, compute_uv: bool, out_u, out_vh, opts):
    """numpy's svd of an empty m x n A: no singular values; U and Vh m x m and n x n identities
    (``full_matrices``) or m x 0 and 0 x n (BigMatrix)."""
    m, n = A.shape
    dtype = dtype_of(A.dtype)
    s = np.zeros(0, real(dtype))
    if not compute_uv:
        return answer(opts, f"svd {A.shape}", lambda: s)
    dag = DAG()
    if full_matrices:
        U, Vh = matrix(out_u, (m, m), dtype, A), matrix(out_vh, (n, n), dtype, A, A.tile_shape[1])
        outputs = [identity(dag, U), identity(dag, Vh)]
    else:
        U, Vh = matrix(out_u, (m, 0), dtype, A), matrix(out_vh, (0, n), dtype, A, A.tile_shape[1])
        outputs = [jobs.Output(U, "svd_u", (A,)), jobs.Output(Vh, "svd_v", (A,))]
    return answer(opts, f"svd {A.shape}", lambda: SVDResult(U, s, Vh), outputs, dag)


def eigh(A: BigMatrix, vectors: bool, out, opts):
    """numpy's eigh of a 0 x 0 A: no eigenvalues (real), 0 x 0 eigenvectors."""
    dtype = dtype_of(A.dtype)
    w = np.zeros(0, real(dtype))
    if not vectors:
        return answer(opts, "eigvalsh (0, 0)", lambda: w)
    V = matrix(out, (0, 0), dtype, A)
    return answer(opts, "eigh (0, 0)", lambda: EighResult(w, V), [jobs.Output(V, "eigh", (A,))])


def inv(A: BigMatrix, out, opts):
    """numpy's inv of 0 x 0: 0 x 0."""
    X = matrix(out, (0, 0), dtype_of(A.dtype), A)
    return answer(opts, "inv (0, 0)", lambda: X, [jobs.Output(X, "inv", (A,))])


def slogdet(A: BigMatrix, opts):
    """numpy's slogdet of 0 x 0: (1, 0): the empty product."""
    dtype = dtype_of(A.dtype)
    return answer(opts, "slogdet (0, 0)", lambda: SlogdetResult(dtype.type(1.0), real(dtype).type(0.0)))


def lu_factor(A: BigMatrix, out, opts):
    """scipy's lu_factor of an empty m x n A: ``lu`` m x n, no pivots (int32)."""
    LU = matrix(out, A.shape, dtype_of(A.dtype), A)
    return answer(opts, f"lu_factor {A.shape}", lambda: (LU, np.zeros(0, np.int32)),
                  [jobs.Output(LU, "lu_factor", (A,))])


def lu(A: BigMatrix, permute_l: bool, p_indices: bool, opts):
    """scipy's lu of an empty m x n A (k = min(m, n) = 0): L m x k and U k x n; P 0 x 0 (scipy's, whatever m),
    or no row indices."""
    m, n = A.shape
    dtype = dtype_of(A.dtype)
    L, U = matrix(None, (m, 0), dtype, A), matrix(None, (0, n), dtype, A)
    outputs = [jobs.Output(L, "lu", (A,), {"part": "PL" if permute_l else "L"}), jobs.Output(U, "lu", (A,),
                                                                                           {"part": "U"})]
    if permute_l:
        return answer(opts, f"lu {A.shape}", lambda: (L, U), outputs)
    if p_indices:
        return answer(opts, f"lu {A.shape}", lambda: (np.zeros(0, np.int32), L, U), outputs)
    P = matrix(None, (0, 0), real(dtype), A)
    return answer(opts, f"lu {A.shape}", lambda: (P, L, U), [jobs.Output(P, "lu", (A,), {"part": "P"}), *outputs])


def lstsq(A: BigMatrix, b, rcond, opts):
    """numpy's lstsq of an m x 0 or 0 x n A: x zeros, residuals b's squared column norms, rank 0, no singular
    values (numpy computes them from b, read into memory: with no column in A nothing is distributed)."""
    shape = b.shape if isinstance(b, BigMatrix) else np.shape(b)
    if len(shape) not in (1, 2) or shape[0] != A.shape[0]:
        raise ValueError(f"lstsq: b must be a vector or matrix with A's {A.shape[0]} rows, got shape {shape}")
    array = None if isinstance(b, BigMatrix) else np.array(b)   # a copy: the plan may run later

    def value():
        rhs = b.to_numpy() if array is None else array
        dtype = dtype_of(A.dtype, rhs.dtype)
        return np.linalg.lstsq(np.zeros(A.shape, dtype), rhs.astype(dtype, copy=False), rcond=rcond)
    return answer(opts, f"lstsq {A.shape}", value)


def qr_multiply(A: BigMatrix, c: BigMatrix, mode: str, out, opts):
    """scipy's qr_multiply of an empty m x n A, whose Q is m x 0: ``Q @ c`` (c 0 x p) is m x p zeros,
    ``c @ Q`` (c p x m) is p x 0; R is 0 x n (BigMatrix). scipy gives c's shape for the first when m > 0."""
    m, n = A.shape
    dtype = dtype_of(A.dtype, c.dtype)
    dag = DAG()
    R = matrix(None, (0, n), dtype, A)
    if mode == "left":
        Y = matrix(out, (m, c.shape[1]), dtype, A)
        product = zeros(dag, Y, "qr_multiply", (A, c))
    else:
        Y = matrix(out, (c.shape[0], 0), dtype, A)
        product = jobs.Output(Y, "qr_multiply", (A, c))
    return answer(opts, f"qr_multiply {A.shape} {c.shape}", lambda: (Y, R),
                  [jobs.Output(R, "qr_r", (A,)), product], dag)


def solution(shape, dtype, opts, desc: str):
    """The empty solution of a system with no unknowns or no right-hand sides (numpy in, numpy out)."""
    return answer(opts, desc, lambda: np.zeros(shape, dtype))

