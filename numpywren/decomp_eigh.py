"""Symmetric eigendecomposition of a tiled matrix: ``eigh`` and ``eigvalsh``, as numpy's.

Three steps (the first stage of successive band reduction, Bischof et al.):

1. **Reduction to band form by tile tasks.** For each tile column k, the
   panel below the diagonal (tile rows k+1..) is factored by TSQR
   (``numpywren.caqr.Trees``); its R is the band's sub-diagonal tile (k+1, k).
   The trailing matrix T is updated from both sides, ``Q^T T Q``: Q^T is applied
   to T's tile columns (W = Q^T T, stored), then to W^T's (``Q^T W^T = Q^T T Q``,
   since T is symmetric), each with the panel's tree, one tile per task.
2. **The band problem on one worker** (``band_eigh``, ``blocks.eigen.eigh_band``): the values by
   LAPACK's symmetric band eigensolver on the n x (b + 1) band (narrowed first) or the dense ``?syevd``,
   the vectors by the dense ``?syevd``; nothing else can run meanwhile, so it uses the idle workers'
   cores (``numpywren.worker.lone``).
3. **Back-transformation by tile tasks** (``eigh``): the band's eigenvectors Z
   become A's, ``V = Q_0 (Q_1 (... Z))``, with each panel's tree.

Only A's lower triangle is read (numpy's default ``UPLO="L"``), so a matrix
stored as one triangle (``kernel``, ``syrk``) works as it is.

A complex A is Hermitian: every transpose above is the conjugate transpose (``Q^H T Q``, W^H), the band
problem is LAPACK's Hermitian band solver (``hbevd``), and the eigenvalues are real, as numpy's.

Step 2 writes the eigenvalues as its output tile (one row) and the band's
eigenvectors Z as a scratch matrix with V's tiles (``params["writes"]``),
so each step-3 leaf reads the one tile of Z it multiplies. Its memory, n x n
arrays whatever the tiles, is declared (``numpywren.memory``): a plan whose
order does not fit a worker is refused before it runs.
"""
from __future__ import annotations

import numpy as np

from blocks.eigen import band_flops
from numpywren import empty_shapes, jobs
from numpywren.caqr import Seg, Trees, encode_tiles
from numpywren.compat import scipy_call
from numpywren.dag import Task
from numpywren.factor import _linalg_errors
from numpywren.matrix import BigMatrix

EighResult = np.linalg._linalg.EighResult  # numpy's own named result: (eigenvalues, eigenvectors)


class EighPlanner:
    """Builds the DAG of steps 1-3 (see the module docstring)."""

    def __init__(self, A: BigMatrix, vectors: bool, out, fan_in: int, workers: int):
        self.A, self.vectors, self.workers = A, vectors, workers
        n, b = A.shape[0], A.tile_shape[0]
        self.n, self.p = n, A.grid[0]
        self.dtype = np.result_type(A.dtype, np.float32)
        self.E = jobs.output_matrix(None, (1, n), (1, n), self.dtype, A.store, inputs=(A,))  # the eigenvalues
        self.V = jobs.output_matrix(out, (n, n), (b, b), self.dtype, A.store, inputs=(A,)) if vectors else None
        self.trees = Trees(A, self.dtype, self.E.key, fan_in)
        # the band's eigenvectors, written by the band task with V's tiles
        self.Z = jobs.scratch_matrix(self.trees.scratch, "eigh-z", A, (n, n), (b, b), self.dtype) if vectors else None

    def _h(self, i: int) -> int:
        return self.A.block_shape(i, 0)[0]

    def _lower(self, i: int, j: int) -> list:
        """Tile (i, j) of the symmetric matrix given by A's lower triangle."""
        A = self.A
        if i > j:
            return [Seg("tile", (A, i, j), 0, self._h(i))]
        if i < j:   # the mirror of tile (j, i): transposed, conjugated if complex (a "tilet" segment)
            return [Seg("tilet", (A, j, i), 0, self._h(i))]
        return [Seg("sym", (A, i, i), 0, self._h(i))]

    def build(self) -> jobs.Plan:
        A, trees, p, n = self.A, self.trees, self.p, self.n
        b = A.tile_shape[0]
        T = {(i, j): self._lower(i, j) for i in range(p) for j in range(p)}
        diagonal, sub, panels = [T[(0, 0)]], [], []
        for k in range(p - 1):
            below = range(k + 1, p)
            panel = trees.factor(f"k{k}", [T[(i, k)] for i in below], [self._h(i) for i in below], b)
            panels.append(panel)
            sub.append(panel.r())
            W = jobs.scratch_matrix(trees.scratch, f"eigh-w{k}", A, (n, n), (b, b), self.dtype)
            writers = {}
            for j in below:  # W = Q^T T, column by column
                tiles = trees.update(f"k{k}l", panel, [T[(i, j)] for i in below], j, self._h(j), (n, b))
                for i, tile in zip(below, tiles):
                    writers[(i, j)] = trees.take(f"k{k}w{i}_{j}", (W, i, j), tile).id
            for j in below:  # Q^T W^T = Q^T T Q
                wt = [[Seg("tilet", (W, j, i), 0, self._h(i), writers[(j, i)])] for i in below]
                for i, tile in zip(below, trees.update(f"k{k}r", panel, wt, j, self._h(j), (n, b))):
                    T[(i, j)] = tile
            diagonal.append(T[(k + 1, k + 1)])
        band = self._band_task(diagonal, sub, b if p > 1 else max(n - 1, 0))
        outputs = [jobs.Output(self.E, "eigh_band", (A,), {"vectors": self.vectors})]
        if self.vectors:
            self._back_transform(panels, band)
            outputs.append(jobs.Output(self.V, "eigh", (A,)))
        name = "eigh" if self.vectors else "eigvalsh"
        band.params["alone"] = trees.dag.alone(band.id)   # then it may use the idle workers' cores
        return jobs.Plan(trees.dag, outputs, trees.scratch, f"{name} {n}x{n}", self.workers)

    def _band_task(self, diagonal: list, sub: list, bandwidth: int) -> Task:
        inputs, deps, tiles = encode_tiles(diagonal + sub)
        params = {"tiles": tiles, "diagonal_tiles": len(diagonal), "bandwidth": bandwidth, "vectors": self.vectors}
        if self.vectors:
            params["writes"] = [(self.Z, 0, 0)]
        return self.trees.dag.add(Task(f"{self.E.key}/band", "band_eigh", (self.E, 0, 0), tuple(inputs), params,
                                       deps=tuple(deps), flops=band_flops(self.n, bandwidth, self.vectors)))

    def _back_transform(self, panels: list, band: Task) -> None:
        """V = Q_0 (Q_1 (... Z)), Z the band's eigenvectors (the scratch matrix the band task writes)."""
        V, A, trees = self.V, self.A, self.trees
        X = {(i, j): [Seg("tile", (self.Z, i, j), 0, self._h(i), band.id)] for i in range(self.p)
             for j in range(self.p)}
        for j in range(self.p):
            trees.take(f"V0_{j}", (V, 0, j), X[(0, j)])
        for k in range(self.p - 2, -1, -1):
            below = range(k + 1, self.p)
            for j in range(self.p):
                tiles = trees.accumulate(f"k{k}", panels[k], [X[(i, j)] for i in below], j, V.block_shape(0, j)[1],
                                         (self.n, A.tile_shape[0]), V if k == 0 else None, offset=1)
                for i, tile in zip(below, tiles):
                    X[(i, j)] = tile


@scipy_call("eigh", algorithm="a band reduction by tiled QR, then LAPACK on the band")
def eigh(A: BigMatrix, UPLO: str = "L", executor=None, *, out=None, fan_in: int = 4, check_finite: bool = False,
         compute: bool = True, lower: bool | None = None, eigvals_only: bool = False, subset_by_index=None,
         subset_by_value=None, driver: str | None = None, **options):
    """Eigenvalues and eigenvectors of a symmetric (complex: Hermitian) BigMatrix, as ``numpy.linalg.eigh``.

    Returns ``EighResult(eigenvalues, eigenvectors)``: eigenvalues a numpy
    array in ascending order (real, float32/float64, also for a complex A), eigenvectors a BigMatrix (A's tiles, at ``out``)
    whose column i belongs to eigenvalue i. Only the triangle ``UPLO`` names is
    read. A LAPACK failure to converge raises ``numpy.linalg.LinAlgError``.
    ``compute=False`` returns the plan.

    scipy's keywords: ``lower`` (overrides ``UPLO``), ``eigvals_only``, ``driver`` (the standard problem's
    "ev", "evd", "evr", "evx" all give the same eigenpairs: accepted), ``subset_by_index=[lo, hi]``
    (eigenvalues lo..hi, inclusive) and ``subset_by_value=[lo, hi]`` (eigenvalues in (lo, hi]): the full
    problem is solved and the subset is the exact slice of its result (the selected eigenvector columns
    are copied into a new BigMatrix). scipy's generalized problem ``eigh(a, b)`` is not supported.
    """
    UPLO = _uplo(UPLO, lower)
    subset = _subset(subset_by_index, subset_by_value, driver, _order(A))
    if eigvals_only:
        return eigvalsh(A, UPLO, executor, fan_in=fan_in, check_finite=check_finite, compute=compute,
                        subset_by_index=subset_by_index, subset_by_value=subset_by_value, driver=driver, **options)
    if subset and not compute:
        raise ValueError("eigh: compute=False with a subset is not supported (the slice is taken after the run)")
    result = _run(A, UPLO, True, executor, None if subset else out, fan_in, check_finite, compute, options)
    if not subset:
        return result
    w, V = result
    try:
        keep = _selected(w, subset_by_index, subset_by_value)
        cols = np.flatnonzero(keep)   # a contiguous run: the eigenvalues are sorted
        vectors = V[:, cols[0]:cols[-1] + 1] if cols.size else np.empty((V.shape[0], 0), V.dtype)
        return EighResult(w[keep], BigMatrix.from_numpy(np.ascontiguousarray(vectors), V.tile_shape, V.store, out))
    finally:
        V.delete()


@scipy_call("eigvalsh", algorithm="a band reduction by tiled QR, then LAPACK on the band")
def eigvalsh(A: BigMatrix, UPLO: str = "L", executor=None, *, fan_in: int = 4, check_finite: bool = False,
             compute: bool = True, lower: bool | None = None, subset_by_index=None, subset_by_value=None,
             driver: str | None = None, **options):
    """Eigenvalues (ascending, a real numpy array) of a symmetric (complex: Hermitian) BigMatrix, as
    ``numpy.linalg.eigvalsh``; scipy's ``lower``, ``driver`` and subsets as in :func:`eigh`."""
    UPLO = _uplo(UPLO, lower)
    subset = _subset(subset_by_index, subset_by_value, driver, _order(A))
    if subset and not compute:
        raise ValueError("eigvalsh: compute=False with a subset is not supported (the slice is taken after the run)")
    w = _run(A, UPLO, False, executor, None, fan_in, check_finite, compute, options)
    return w[_selected(w, subset_by_index, subset_by_value)] if subset else w


#: scipy's drivers of the standard problem (the same eigenpairs) and of the generalized one (not supported)
_DRIVERS = ("ev", "evd", "evr", "evx")
_GENERALIZED = ("gv", "gvd", "gvx")


def _uplo(UPLO, lower) -> str:
    if hasattr(UPLO, "shape"):
        raise ValueError("eigh: the second argument is UPLO ('L' or 'U'), got an array: scipy's generalized "
                         "problem eigh(a, b) is not supported")
    return UPLO if lower is None else ("L" if lower else "U")


def _order(A) -> int | None:
    """A's order, if it is a square BigMatrix (else None: _check names what is wrong)."""
    return A.shape[0] if isinstance(A, BigMatrix) and A.shape[0] == A.shape[1] else None


def _subset(by_index, by_value, driver, n: int | None = None) -> bool:
    """Check scipy's subset and driver keywords by scipy's rules (``subset_by_index`` against the order ``n``,
    before anything runs); True when a subset is asked for."""
    if driver is not None and driver not in _DRIVERS:
        if driver in _GENERALIZED:
            raise ValueError(f"eigh: driver={driver!r} is for scipy's generalized problem eigh(a, b), which is "
                             "not supported")
        raise ValueError(f"eigh: driver must be one of {', '.join(map(repr, _DRIVERS))} or None, got {driver!r}")
    if by_index is not None and by_value is not None:
        raise ValueError("eigh: either subset_by_index or subset_by_value can be requested, not both")
    subset = by_index is not None or by_value is not None
    if subset and driver in ("ev", "evd"):
        raise ValueError(f"eigh: driver={driver!r} computes all eigenvalues; a subset needs 'evr' or 'evx'")
    if by_index is not None:
        lo, hi = (int(v) for v in by_index)
        if not 0 <= lo <= hi:
            raise ValueError(f"eigh: subset_by_index must be [lo, hi] with 0 <= lo <= hi, got {by_index!r}")
        if n is not None and hi >= n:
            raise ValueError(f"eigh: subset_by_index {[lo, hi]} is out of range for {n} eigenvalues")
    if by_value is not None:
        lo, hi = (float(v) for v in by_value)
        if not lo < hi:
            raise ValueError(f"eigh: subset_by_value must be [lo, hi] with lo < hi, got {by_value!r}")
    return subset


def _selected(w: np.ndarray, by_index, by_value) -> np.ndarray:
    """A mask of the (ascending) eigenvalues the subset names: indices lo..hi, or values in (lo, hi]."""
    if by_index is not None:
        lo, hi = (int(v) for v in by_index)
        if hi >= w.size:
            raise ValueError(f"eigh: subset_by_index {[lo, hi]} is out of range for {w.size} eigenvalues")
        return (np.arange(w.size) >= lo) & (np.arange(w.size) <= hi)
    lo, hi = (float(v) for v in by_value)
    return (w > lo) & (w <= hi)


def _run(A, UPLO, vectors, executor, out, fan_in, check_finite, compute, options):
    _check(A, UPLO, fan_in)
    if UPLO.upper() == "U":  # the upper triangle of A is the lower triangle of A^T (A^H: Hermitian A)
        A = A.H if A.dtype.kind == "c" else A.T
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    if opts.run.pop("resume", False):
        raise ValueError("resume=True is not supported by eigh/eigvalsh (rerun instead)")
    if A.size == 0:   # numpy's answer from the shape alone (numpywren.empty_shapes)
        return empty_shapes.eigh(A, vectors, out, opts)
    plan = EighPlanner(A, vectors, out, fan_in, opts.workers).build()
    E = plan.outputs[0].matrix

    def finish():  # the eigenvalues from the band task's tile, which then goes
        try:
            w = np.array(E.get_block(0, 0)[0].real, dtype=np.finfo(E.dtype).dtype)   # real, as numpy's
        finally:
            E.delete()
        return EighResult(w, plan.outputs[1].matrix) if vectors else w

    plan.finish = finish
    if not compute:
        return plan
    try:
        return _linalg_errors(opts.submit, plan, [A])
    finally:
        E.delete()  # also when the run failed


def _check(A, UPLO, fan_in) -> None:
    if not isinstance(A, BigMatrix):
        raise TypeError(f"eigh takes a BigMatrix, got {type(A).__name__} (store it with BigMatrix.from_numpy)")
    if not isinstance(UPLO, str) or UPLO.upper() not in ("L", "U"):
        raise ValueError(f"UPLO must be 'L' or 'U', got {UPLO!r}")
    if not isinstance(fan_in, int) or isinstance(fan_in, bool) or fan_in < 2:
        raise ValueError(f"fan_in must be an int >= 2, got {fan_in!r}")
    n, m = A.shape
    if n != m:
        raise np.linalg.LinAlgError(f"eigh: A must be square, got shape {A.shape}")   # numpy's (a ValueError)
    if A.tile_shape[0] != A.tile_shape[1]:
        raise ValueError(f"eigh: A's tiles must be square, got {A.tile_shape} (store A again with "
                         f"tile_shape=({A.tile_shape[0]}, {A.tile_shape[0]}))")
    if not np.issubdtype(A.dtype, np.inexact):
        raise TypeError(f"eigh: A must hold float32, float64, complex64 or complex128 values, got {A.dtype}")
    jobs.check_complete(A)
