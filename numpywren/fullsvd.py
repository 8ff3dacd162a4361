"""Full SVD of a tiled matrix of any shape: ``svd``, as ``numpy.linalg.svd``.

For m >= n (a wide A is factored as A.T, with U and V swapped):

1. **Reduction to upper band form by tile tasks**, alternating panels: a QR
   step factors tile column k from tile row k down (TSQR, ``numpywren.caqr.Trees``)
   and updates the columns to its right with Q^T; its R is the band's diagonal
   tile (k, k). An LQ step factors tile row k right of the diagonal (TSQR of
   its transpose) and updates the rows below from the right; its L is the
   band's tile (k, k + 1). Tiles that an update needs transposed are stored once
   as scratch (one ``caqr_take`` each).
2. **The band problem on one worker** (``band_svd``): singular values of the
   band held in band storage (``blocks.band``: LAPACK's ``?gbbrd`` to bidiagonal,
   then ``?bdsqr``; O(n^2 b) flops, ``(b + 1) x n`` numbers; a band wide for its
   order goes through a dense SVD, ``blocks.band.prefer_dense``); with vectors, LAPACK's divide and conquer SVD of the
   band matrix (dense on that worker), its vectors written as two scratch
   matrices with U's and V's tiles (``params["writes"]``), so each step-3 leaf
   reads one tile. Its memory (n x n arrays) is declared (``numpywren.memory``):
   an order that does not fit a worker is refused before the plan runs.
3. **U and V by tile tasks**: the band's vectors multiplied by the stored
   reflectors, ``U = Q_0 (Q_1 (... [U_B; 0]))``, ``V = P_0 (P_1 (... V_B))``.

One tile column with ``compute_uv=False`` or ``full_matrices=False`` takes the
tall-and-skinny path instead: TSQR, then the SVD of the small R (and
``U = Q @ U_R`` by a tiled product).
"""
from __future__ import annotations

import numpy as np

from blocks.band import values_flops as band_values_flops
from numpywren import empty_shapes, jobs
from numpywren.compat import scipy_call
from numpywren.gemm import matmul
from numpywren.caqr import Seg, Trees, encode_tiles
from numpywren.dag import Task
from numpywren.factor import _linalg_errors
from numpywren.matrix import BigMatrix
from numpywren.decomp_qr import lstsq as tsqr_lstsq
from numpywren.decomp_qr import qr as tsqr

SVDResult = np.linalg._linalg.SVDResult  # numpy's own named result: (U, S, Vh)
#: a full U (or V) with more elements than this many times A's is refused (hint: full_matrices=False)
MAX_FULL_RATIO = 8


def _transpose(segments: list) -> list:
    """The transpose of a virtual tile that is one segment of a stored tile (``w x h`` from ``h x w``)."""
    (seg,) = segments
    if seg.kind != "tile" or seg.cols:
        raise AssertionError(f"cannot transpose the virtual tile {segments}")
    width = seg.ref[0].block_shape(seg.ref[1], seg.ref[2])[1]
    return [Seg("tilet", seg.ref, 0, width, seg.dep, cols=(seg.lo, seg.hi))]


class SVDPlanner:
    """Builds the DAG of steps 1-3 for m >= n (see the module docstring)."""

    def __init__(self, A: BigMatrix, full: bool, vectors: bool, out_u, out_vh, fan_in: int, workers: int):
        self.A, self.full, self.vectors, self.workers = A, full, vectors, workers
        m, n = A.shape
        self.m, self.n = m, n
        self.p, self.q = A.grid
        br, bc = A.tile_shape
        self.dtype = np.result_type(A.dtype, np.float32)
        # U's starting matrix blockdiag(U_B, I): the band task writes its top-left urows x ucols block
        self.urows = min(m, -(-n // br) * br)
        self.ucols = self.urows if full else n
        self.E = jobs.output_matrix(None, (1, n), (1, n), self.dtype, A.store, inputs=(A,))  # singular values
        self.U = self.V = None
        self.trees = Trees(A, self.dtype, self.E.key, fan_in)
        if vectors:
            self.U = jobs.output_matrix(out_u, (m, m if full else n), (br, br), self.dtype, A.store, inputs=(A,))
            self.V = jobs.output_matrix(out_vh, (n, n), (bc, bc), self.dtype, A.store, inputs=(A,))
            # the band task's vectors, with U's and V's tiles: U's starting block blockdiag(U_B, I), and V_B
            scratch = self.trees.scratch
            self.ZU = jobs.scratch_matrix(scratch, "svd-zu", A, (self.urows, self.ucols), (br, br), self.dtype)
            self.ZV = jobs.scratch_matrix(scratch, "svd-zv", A, (n, n), (bc, bc), self.dtype)

    def _h(self, i: int) -> int:
        return self.A.block_shape(i, 0)[0]

    def _w(self, j: int) -> int:
        return self.A.block_shape(0, j)[1]

    def build(self) -> jobs.Plan:
        A, trees, p, q, m, n = self.A, self.trees, self.p, self.q, self.m, self.n
        b = A.tile_shape[1]
        X = {(i, j): [Seg("tile", (A, i, j), 0, self._h(i))] for i in range(p) for j in range(q)}
        diagonal, super_r, qr_panels, lq_panels = [], [], [], []
        for k in range(q):
            rows = range(k, p)
            panel = trees.factor(f"q{k}", [X[(i, k)] for i in rows], [self._h(i) for i in rows], self._w(k))
            qr_panels.append(panel)
            diagonal.append(panel.r())
            for j in range(k + 1, q):
                for i, tile in zip(rows, trees.update(f"q{k}", panel, [X[(i, j)] for i in rows], j, self._w(j),
                                                      (n, b))):
                    X[(i, j)] = tile
            if k == q - 1:
                break
            cols = range(k + 1, q)
            panel = trees.factor(f"l{k}", [_transpose(X[(k, j)]) for j in cols], [self._w(j) for j in cols],
                                 self._h(k))
            lq_panels.append(panel)
            super_r.append(panel.r())
            # the rows below, from the right: Q^T applied to the transposed tile columns X[i, k+1:]^T
            stored = jobs.scratch_matrix(trees.scratch, f"svd-x{k}", A, (m, n), (b, b), self.dtype)
            written = jobs.scratch_matrix(trees.scratch, f"svd-y{k}", A, (n, m), (b, b), self.dtype)
            for i in range(k + 1, p):
                leaves = []
                for j in cols:
                    task = trees.take(f"x{k}/{i}_{j}", (stored, i, j), X[(i, j)])
                    leaves.append([Seg("tilet", (stored, i, j), 0, self._w(j), task.id)])
                for j, tile in zip(cols, trees.update(f"l{k}", panel, leaves, i, self._h(i), (m, b))):
                    task = trees.take(f"y{k}/{j}_{i}", (written, j, i), tile)
                    X[(i, j)] = [Seg("tilet", (written, j, i), 0, self._h(i), task.id)]
        band = self._band_task(diagonal, super_r, b if q > 1 else max(n - 1, 0))
        outputs = [jobs.Output(self.E, "svd_band", (A,), {"vectors": self.vectors, "full": self.full})]
        if self.vectors:
            self._left(qr_panels, band)
            self._right(lq_panels, band)
            outputs += [jobs.Output(self.U, "svd_u", (A,), {"full": self.full}), jobs.Output(self.V, "svd_v", (A,))]
        band.params["alone"] = trees.dag.alone(band.id)   # then it may use the idle workers' cores
        return jobs.Plan(trees.dag, outputs, trees.scratch, f"svd {m}x{n}", self.workers)

    def _band_task(self, diagonal: list, super_r: list, bandwidth: int) -> Task:
        inputs, deps, tiles = encode_tiles(diagonal + super_r)
        n = self.n
        params = {"tiles": tiles, "diagonal_tiles": len(diagonal), "bandwidth": bandwidth, "vectors": self.vectors}
        if self.vectors:
            params["writes"] = [(self.ZU, 0, 0), (self.ZV, 0, 0)]
        flops = 22.0 * n ** 3 if self.vectors else band_values_flops(n, bandwidth)
        return self.trees.dag.add(Task(f"{self.E.key}/band", "band_svd", (self.E, 0, 0), tuple(inputs), params,
                                       deps=tuple(deps), flops=flops))

    def _left(self, panels: list, band: Task) -> None:
        """U = Q_0 (Q_1 (... blockdiag(U_B, I)[:, :columns])), every panel on every tile column."""
        U, trees = self.U, self.trees
        def start(i, j):  # urows and ucols end at tile boundaries (or at U's edge)
            rows, cols = U.block_slices(i, j)
            if rows.stop <= self.urows and cols.stop <= self.ucols:
                return [Seg("tile", (self.ZU, i, j), 0, rows.stop - rows.start, band.id)]
            h, w = U.block_shape(i, j)
            return [Seg("eye", lo=0, hi=h, shape=(h, w), diagonal=i == j)]

        X = {(i, j): start(i, j) for i in range(U.grid[0]) for j in range(U.grid[1])}
        for k in range(len(panels) - 1, -1, -1):
            rows = range(k, self.p)
            for j in range(U.grid[1]):
                tiles = trees.accumulate(f"q{k}", panels[k], [X[(i, j)] for i in rows], j, U.block_shape(0, j)[1],
                                         (U.shape[1], U.tile_shape[1]), U if k == 0 else None)
                for i, tile in zip(rows, tiles):
                    X[(i, j)] = tile

    def _right(self, panels: list, band: Task) -> None:
        """V = P_0 (P_1 (... V_B)); tile row 0 of V is V_B's."""
        V, trees = self.V, self.trees
        X = {(i, j): [Seg("tile", (self.ZV, i, j), 0, V.block_shape(i, j)[0], band.id)] for i in range(self.q)
             for j in range(self.q)}
        for j in range(self.q):
            for i in range(self.q if not panels else 1):
                trees.take(f"V{i}_{j}", (V, i, j), X[(i, j)])
        for k in range(len(panels) - 1, -1, -1):
            rows = range(k + 1, self.q)
            for j in range(self.q):
                tiles = trees.accumulate(f"l{k}", panels[k], [X[(i, j)] for i in rows], j, V.block_shape(0, j)[1],
                                         (self.n, V.tile_shape[1]), V if k == 0 else None, offset=1)
                for i, tile in zip(rows, tiles):
                    X[(i, j)] = tile


@scipy_call("svd", algorithm="a band reduction by tiled QR/LQ, then LAPACK on the band",
            drivers=("gesdd", "gesvd"))
def svd(A: BigMatrix, full_matrices: bool = True, compute_uv: bool = True, executor=None, *, hermitian: bool = False,
        out_u=None, out_vh=None, fan_in: int = 4, check_finite: bool = False, compute: bool = True, **options):
    """Singular value decomposition of a BigMatrix of any shape, as ``numpy.linalg.svd``.

    Returns ``SVDResult(U, S, Vh)`` (U and Vh BigMatrix, S a numpy array,
    descending), or S alone with ``compute_uv=False``. ``full_matrices=True``
    (numpy's default) gives the square U (m x m) and Vh (n x n); one that would
    hold more than ``MAX_FULL_RATIO`` times A's elements is refused: pass
    ``full_matrices=False``. LAPACK's failure to converge raises
    ``numpy.linalg.LinAlgError``. For several column tiles A's tiles must be square. Complex A: complex U
    and Vh, real S. ``hermitian=True`` (numpy's hint that A is Hermitian, for a faster method) is accepted;
    the general SVD computed instead is the same factorization for a Hermitian A.
    """
    if isinstance(A, BigMatrix) and A.size == 0:   # numpy's answer from the shape alone (numpywren.empty_shapes)
        opts = jobs.run_options(executor, compute=compute, **options)
        return empty_shapes.svd(A, full_matrices, compute_uv, out_u, out_vh, opts)
    _check(A, full_matrices, compute_uv, fan_in)
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    if opts.run.pop("resume", False):
        raise ValueError("resume=True is not supported by svd (rerun instead)")
    m, n = A.shape
    wide = m < n
    if A.grid[1 if not wide else 0] == 1 and not (compute_uv and full_matrices) and compute:
        return _tall_skinny(_adjoint(A) if wide else A, compute_uv, wide, opts.executor, out_u, out_vh, fan_in,
                            check_finite, opts.run)
    _check_band_layout(A, wide)
    if wide:   # A^H = U' S V'^H, so A = V' S U'^H
        planner = SVDPlanner(_adjoint(A), full_matrices, compute_uv, out_vh, out_u, fan_in, opts.workers)
    else:
        planner = SVDPlanner(A, full_matrices, compute_uv, out_u, out_vh, fan_in, opts.workers)
    plan = planner.build()
    E = plan.outputs[0].matrix

    def finish():  # the singular values from the band task's tile, which then goes
        try:   # real, as numpy's (a complex band task stores them in the real parts)
            s = np.array(E.get_block(0, 0)[0, :min(m, n)].real, dtype=np.finfo(planner.dtype).dtype)
        finally:
            E.delete()
        if not compute_uv:
            return s
        U, V = planner.U, planner.V
        return SVDResult(V, s, _adjoint(U)) if wide else SVDResult(U, s, _adjoint(V))

    plan.finish = finish
    if not compute:
        return plan
    try:
        return _linalg_errors(opts.submit, plan, [A])
    finally:
        E.delete()  # also when the run failed


def _tall_skinny(A, compute_uv, wide, executor, out_u, out_vh, fan_in, check_finite, options):
    """One tile column: TSQR, the SVD of R in memory, ``U = Q @ U_R`` (reduced) by a tiled product."""
    if not compute_uv:
        r = tsqr(A, mode="r", executor=executor, fan_in=fan_in, check_finite=check_finite, **options)
        return np.linalg.svd(r, compute_uv=False)
    store = A.store
    Q, r = tsqr(A, executor=executor, fan_in=fan_in, check_finite=check_finite, **options)
    try:
        u_r, s, vh = np.linalg.svd(r)
        k = u_r.shape[1]
        Ur = BigMatrix.from_numpy(np.ascontiguousarray(u_r), (k, k), store)
        try:
            U = matmul(Q, Ur, out_vh if wide else out_u, executor=executor, **options)
        finally:
            Ur.delete()
    finally:
        Q.delete()
    V = BigMatrix.from_numpy(np.ascontiguousarray(vh.conj().T if not wide else vh), (k, k), store,
                             out_u if wide else out_vh)
    return SVDResult(_adjoint(V), s, _adjoint(U)) if wide else SVDResult(U, s, _adjoint(V))


def _adjoint(M: BigMatrix) -> BigMatrix:
    """The conjugate transpose view of M (its transpose for real M)."""
    return M.H if M.dtype.kind == "c" else M.T


def _check_band_layout(A, wide: bool) -> None:
    """The band reduction factors A (A^H if wide) by tile panels: one tile row of several non-square tiles
    is a layout it does not take (a clear error instead of a failure while planning)."""
    rows, cols = (A.grid[1], A.grid[0]) if wide else A.grid
    br, bc = A.tile_shape
    if rows == 1 and cols > 1 and br != bc:
        t = min(br, bc)
        raise ValueError(f"svd: A ({A.shape[0]}x{A.shape[1]}) in {br}x{bc} tiles is one {'column' if wide else 'row'} "
                         f"of {cols} non-square tiles, a layout the band reduction does not take; store A again "
                         f"with square tiles (tile_shape=({t}, {t}))")


def _check(A, full_matrices, compute_uv, fan_in) -> None:
    if not isinstance(A, BigMatrix):
        raise TypeError(f"svd takes a BigMatrix, got {type(A).__name__} (store it with BigMatrix.from_numpy)")
    if not isinstance(fan_in, int) or isinstance(fan_in, bool) or fan_in < 2:
        raise ValueError(f"fan_in must be an int >= 2, got {fan_in!r}")
    if not np.issubdtype(A.dtype, np.inexact):
        raise TypeError(f"svd: A must hold float32, float64, complex64 or complex128 values, got {A.dtype}")
    m, n = A.shape
    br, bc = A.tile_shape
    if A.grid[0] > 1 and A.grid[1] > 1 and br != bc:
        raise ValueError(f"svd: A's tiles are {br}x{bc}; several row and column tiles need square tiles "
                         f"(store A again with tile_shape=({bc}, {bc}))")
    big = max(m, n)
    if compute_uv and full_matrices and big * big > MAX_FULL_RATIO * m * n:
        raise ValueError(f"svd: a full {'U' if m >= n else 'Vh'} of A ({m}x{n}) would be {big}x{big}, "
                         f"{big * big / (m * n):.0f} times A's size; pass full_matrices=False for the reduced "
                         "factors (numpy's default is full_matrices=True)")
    jobs.check_complete(A)


@scipy_call("lstsq", algorithm="TSQR of [A | b] or the tiled SVD; numpy's minimum-norm solution",
            drivers=("gelsd", "gelsy", "gelss"))
def lstsq(A: BigMatrix, b, rcond: float | None = None, executor=None, *, fan_in: int = 4,
          check_finite: bool = False, lapack_driver: str | None = None, **options):
    """Least squares of any A as ``numpy.linalg.lstsq`` (``numpywren.lstsq``): ``(x, residuals, rank, s)``.

    A tall A with one tile column goes to TSQR (``numpywren.decomp_qr.lstsq``); any other A through the SVD:
    numpy's minimum-norm solution ``x = V diag(1/s_i, s_i > rcond s_max) U^H b``;
    ``U^H b``, ``V y`` and (full rank, m > n) the residuals ``b - A x`` are tiled
    products. b is a numpy vector/matrix or a BigMatrix with A's rows.

    scipy's ``lapack_driver`` ``"gelsd"``, ``"gelss"`` (SVD-based) and ``"gelsy"`` (complete orthogonal
    factorization) all give this minimum-norm solution, so each is accepted; with ``"gelsy"`` s is None,
    as scipy returns it.
    """
    result = _lstsq(A, b, rcond, executor, fan_in, check_finite, options)
    if lapack_driver != "gelsy" or not isinstance(result, tuple):   # compute=False: the plan
        return result
    return (*result[:3], None)


def _lstsq(A, b, rcond, executor, fan_in, check_finite, options):
    if isinstance(A, BigMatrix) and A.grid[1] == 1 and A.shape[0] >= A.shape[1]:
        return tsqr_lstsq(A, b, rcond, executor, fan_in=fan_in, check_finite=check_finite, **options)
    if isinstance(A, BigMatrix) and A.size == 0:   # numpy's answer for an empty A (no job to distribute)
        return empty_shapes.lstsq(A, b, rcond, jobs.run_options(executor, check_finite=check_finite, **options))
    _check(A, False, True, fan_in)
    m, n = A.shape
    array = b.to_numpy() if isinstance(b, BigMatrix) else np.asarray(b)
    if array.ndim not in (1, 2) or array.shape[0] != m:
        raise np.linalg.LinAlgError(f"lstsq: Incompatible dimensions: b must be a vector or matrix with A's {m} "
                                        f"rows, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"lstsq: b must hold numbers, got dtype {array.dtype}")
    vector = array.ndim == 1
    dtype = np.result_type(A.dtype, array.dtype, np.float32)
    rhs = array.reshape(m, -1).astype(dtype, copy=False)
    if rcond is None:
        rcond = np.finfo(dtype).eps * max(m, n)
    run = dict(executor=executor, **options)
    U, s, Vh = svd(A, full_matrices=False, executor=executor, fan_in=fan_in, check_finite=check_finite, **options)
    V = _adjoint(Vh)
    temporaries = [U, V]
    try:
        rank = int(np.count_nonzero(s > rcond * s[0])) if s.size and s[0] > 0 else 0
        B = _stored(rhs, (U.tile_shape[0], rhs.shape[1]), A.store, temporaries)
        utb = matmul(_adjoint(U), B, **run)
        temporaries.append(utb)
        y = np.zeros((s.size, rhs.shape[1]), dtype)
        y[:rank] = utb.to_numpy()[:rank] / s[:rank, None]
        Y = _stored(y, (Vh.tile_shape[0], rhs.shape[1]), A.store, temporaries)
        X = matmul(V, Y, **run)
        temporaries.append(X)
        x = X.to_numpy()
        residuals = np.empty((0,), s.dtype)
        if rank == n and m > n:
            X2 = _stored(x, (A.tile_shape[1], rhs.shape[1]), A.store, temporaries)
            AX = matmul(A, X2, **run)
            temporaries.append(AX)
            residuals = np.sum(np.abs(AX.to_numpy() - rhs) ** 2, axis=0).astype(s.dtype)
    finally:
        for M in temporaries:
            M.delete()
    return (x[:, 0] if vector else x), residuals, rank, s


def _stored(array: np.ndarray, tile_shape, store, temporaries: list) -> BigMatrix:
    M = BigMatrix.from_numpy(np.ascontiguousarray(array), tile_shape, store)
    temporaries.append(M)
    return M
