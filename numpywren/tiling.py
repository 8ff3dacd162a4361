"""Automatic tiles: ``tile_shape=None`` picks the tile the simulator predicts fastest for where the matrix runs.

The rule, one function for every place a matrix is made (``create``, ``from_numpy``, ``from_function``,
``KernelRidge``) and for any task kind with a plan builder in numpywren.simulate:

1. Candidates are square tiles of powers of two, ``MIN_TILE`` ... ``MAX_TILE``, clipped to the matrix
   (a matrix no larger than a tile is one tile), tried from the largest down until one is predicted
   ``PAST`` times the best so far (past the optimum smaller tiles only add per-task costs); candidates
   with more than ``MAX_TASKS`` tasks or ``MAX_READS`` tile reads are not simulated (too slow to simulate).
2. A candidate must fit a worker: the largest task of the operation's plan (numpywren.memory.peak_bytes,
   the same bound ``jobs.run`` enforces with ``check_fits``) within the worker's memory, and on a platform
   with a call time limit (Lambda) its longest task within that limit.
3. Each candidate's job is predicted by :func:`numpywren.simulate.predict`: the real plan builder and
   scheduler on simulated workers timed with the platform's calibrated kernel GFLOPS by tile size, store
   bandwidth and request latency and per-task overhead (numpywren.sim_params: ``local`` for this machine,
   ``lambda`` or a ``numpywren calibrate`` profile for Lambda) -- the same numbers ``numpywren predict``
   uses. The driver's cost per task is fixed (``DRIVER_SECONDS_PER_TASK``), so the choice is deterministic.
4. The fastest wins; among candidates within ``TIE`` of it, the largest (fewer tasks and requests: the
   model's per-task costs are the least certain part of it) whose prediction is not bound by its plan's
   critical path, if any is: a critical-path-bound prediction assumes every task of the chain starts the
   moment its inputs exist and leaves workers idle that could absorb a slower task, so it is the optimistic
   one of a tie (Cholesky N=8192 on 2 workers: tile 2048's 19-task plan is bound by its 1.9 s critical path,
   and measured slower than tile 1024 in every quiet round; benchmarks/README.md, "The default BLAS and
   triangular solves by inverse").

What a tile is used for is ``operation``: ``"matmul"`` (the default: the matrix as the left operand of a
product with a square matrix, ``A @ B`` with B cols x cols), ``"cholesky"`` (square
matrices), ``"syrk"`` or ``"kernel"`` (X is N x D; the output is N x N). Nothing re-tiles an existing
matrix: an operation runs on its inputs' tiles as they are (re-tiling is a full read and write of the
input). :func:`advice` says how far an input's tile is from the best for an operation, before it runs.
"""
from __future__ import annotations

import functools
import logging
import math
import os

import numpy as np

log = logging.getLogger(__name__)

MIN_TILE = 64
MAX_TILE = 8192
#: candidates whose plan has more tasks than this (or 4 per worker), or more tile reads than MAX_READS (or 32
#: per worker), are not simulated: the simulation costs about 60 us per tile read
MAX_TASKS = 4096
MAX_READS = 100_000
#: candidates are tried from the largest down until one is predicted this many times the best so far
PAST = 1.02
#: candidates predicted within this fraction of the fastest count as ties; the largest of them wins
TIE = 0.05
#: the driver's own seconds per scheduler step in the prediction; 0: the per-task cost the calibration
#: measured (numpywren.sim_params.LOCAL_TASK, a one-task job vs 64 tasks) already includes the driver's share
DRIVER_SECONDS_PER_TASK = 0.0
#: a matrix of at most this many bytes is one tile whatever else holds (the job is all fixed costs)
SMALL_BYTES = 1 << 20
OPERATIONS = ("matmul", "cholesky", "syrk", "kernel")


def choose_tile(shape, dtype="float64", *, workers: int | None = None, worker_memory_mb: float | None = None,
                operation: str = "matmul", platform="local") -> tuple[int, int]:
    """The tile shape for a matrix of ``shape`` and ``dtype`` used by ``operation`` on ``workers`` workers of
    ``worker_memory_mb`` MB each (None: the platform's) on ``platform`` (a name in numpywren.sim_params,
    a calibration profile file, or a Platform). Deterministic: the same inputs give the same tile."""
    from numpywren.tiled import _normalize_dtype, _normalize_shape

    rows, cols = _normalize_shape(shape)
    dt = _normalize_dtype(dtype)
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if worker_memory_mb is not None and not worker_memory_mb > 0:
        raise ValueError(f"worker_memory_mb must be positive, got {worker_memory_mb!r}")
    if rows * cols * dt.itemsize <= SMALL_BYTES:
        return max(rows, 1), max(cols, 1)
    tile = _best(rows, cols, dt.name, workers, worker_memory_mb, operation, _platform_key(platform))
    return min(tile, max(rows, 1)), min(tile, max(cols, 1))


def ranking(shape, dtype="float64", *, workers: int | None = None, worker_memory_mb: float | None = None,
            operation: str = "matmul", platform="local") -> dict[int, float | str]:
    """Every candidate tile (its larger side) and its predicted job seconds, or why it was not a candidate."""
    from numpywren.tiled import _normalize_dtype, _normalize_shape

    rows, cols = _normalize_shape(shape)
    workers = (os.cpu_count() or 1) if workers is None else workers
    return {t: seconds for t, seconds, _bound in _ranking(rows, cols, _normalize_dtype(dtype).name, workers,
                                                           worker_memory_mb, operation, _platform_key(platform))}


def for_executor(shape, dtype="float64", executor=None, operation: str = "matmul") -> tuple[int, int]:
    """:func:`choose_tile` for where ``executor`` runs (None: the executor operations would use now, without
    starting one: the active ``using`` block's, the started default, else a default LocalExecutor's)."""
    workers, memory, platform = executor_profile(executor)
    tile = choose_tile(shape, dtype, workers=workers, worker_memory_mb=memory, operation=operation,
                       platform=platform)
    log.info("tile_shape=None: %s for a %s %s matrix (%s, %d workers, %s MB each on %s)", tile, shape,
             np.dtype(dtype).name, operation, workers, memory, platform)
    return tile


def executor_profile(executor=None) -> tuple[int, float | None, object]:
    """(workers, worker memory MB or None, platform) of ``executor`` or of the one operations would use."""
    if executor is None:
        from numpywren import api

        executor = api._current.get() or api._default
    if executor is None:  # what api.executor() would start: local processes, one per core, no memory limit
        return os.cpu_count() or 1, None, "local"
    platform = getattr(executor, "platform", None) or "local"
    return executor.workers, executor.worker_memory_mb, platform


def advice(operation: str, matrix, executor=None, *, workers: int | None = None,
           worker_memory_mb: float | None = None, platform=None, far: float = 1.5) -> str | None:
    """A hint if ``matrix``'s tile makes ``operation`` predicted ``far`` times slower than the best tile
    would (None otherwise), for ``executor`` (or ``workers``/``worker_memory_mb``/``platform``; None: the
    executor operations would use now). Operations never re-tile their inputs; this says when it would pay."""
    w, memory, p = executor_profile(executor)
    workers = w if workers is None else workers
    memory = memory if worker_memory_mb is None else worker_memory_mb
    key = _platform_key(p if platform is None else platform)
    rows, cols = matrix.shape
    dtype = matrix.dtype.name
    options = _ranking(rows, cols, dtype, workers, memory, operation, key)
    timed = {t: s for t, s, _bound in options if isinstance(s, float)}
    if not timed:
        return None
    best = _pick(options)
    tile = max(matrix.tile_shape)
    here = timed[tile] if tile in timed else _predict(operation, rows, cols, tile, dtype, workers, memory, key)[0]
    if not isinstance(here, float) or here <= far * timed[best]:
        return None
    return (f"{operation} of {matrix.key!r} at tile {matrix.tile_shape} is predicted {here:.3g} s, "
            f"{here / timed[best]:.1f}x the {timed[best]:.3g} s of tile {best} on {workers} workers: "
            f"store it with tile_shape=None (or {best}) to re-tile")


# -- the rule --------------------------------------------------------------------------------------------
def _platform_key(platform):
    """A name or profile path as is (cached); a Platform object as a _Fresh wrapper (its dicts do not hash)."""
    return platform if isinstance(platform, str) else _Fresh(platform)


class _Fresh:
    """Hashes by identity: a Platform object given directly is cached per object."""

    def __init__(self, platform):
        self.platform = platform

    def __str__(self):
        return self.platform.name


@functools.lru_cache(maxsize=256)
def _best(rows, cols, dtype, workers, memory, operation, platform) -> int:
    options = _ranking(rows, cols, dtype, workers, memory, operation, platform)
    if any(isinstance(s, float) for _t, s, _bound in options):
        return _pick(options)
    from numpywren.memory import WorkerMemoryError

    raise WorkerMemoryError(f"no tile of {MIN_TILE} or more fits a worker for {operation} of a {rows} x {cols} "
                            f"{dtype} matrix on {workers} workers of {memory} MB: "
                            + "; ".join(f"tile {t}: {why}" for t, why, _bound in options))


def _pick(options) -> int:
    """The rule's step 4 on ``(tile, seconds or why not, bound)`` triples."""
    timed = {t: (s, bound) for t, s, bound in options if isinstance(s, float)}
    fastest = min(s for s, _bound in timed.values())
    ties = [t for t, (s, _bound) in timed.items() if s <= fastest * (1 + TIE)]
    slack = [t for t in ties if timed[t][1] != "critical path"]
    return max(slack or ties)


@functools.lru_cache(maxsize=256)
def _ranking(rows, cols, dtype, workers, memory, operation, platform) -> tuple:
    """(tile, seconds or why not, what bounds the prediction or None) from the largest candidate down, stopping
    past the optimum: once a tile is predicted ``PAST`` times the best so far, smaller ones only add per-task
    costs (and cost more to simulate)."""
    side = max(rows, cols, 1)
    candidates, t = [], MIN_TILE
    while t < side and t <= MAX_TILE:
        candidates.append(t)
        t *= 2
    if side <= MAX_TILE:
        candidates.append(side)  # one tile along the longer side
    out, best = [], math.inf
    for t in reversed(candidates):
        seconds, bound = _predict(operation, rows, cols, t, dtype, workers, memory, platform)
        out.append((t, seconds, bound))
        if isinstance(seconds, float):
            if seconds > PAST * best:
                break
            best = min(best, seconds)
    return tuple(reversed(out))


def _sizes(operation: str, rows: int, cols: int) -> tuple:
    if operation == "matmul":
        return (rows, cols, cols)
    if operation == "cholesky":
        if rows != cols:
            raise ValueError(f"cholesky needs a square matrix, got {rows} x {cols}")
        return (rows,)
    return (rows, cols)  # syrk, kernel: X is N x D


def _size(operation: str, rows: int, cols: int, tile: int, workers: int) -> tuple[int, int]:
    """About how many tasks and tile reads the plan has (without building it)."""
    gi, gk = math.ceil(rows / tile), math.ceil(cols / tile)
    if operation == "matmul":  # output gi x gk tiles, k split when there are fewer than workers (numpywren.gemm)
        return gi * gk * max(1, min(gk, math.ceil(workers / (gi * gk)))), 2 * gi * gk * gk
    if operation == "cholesky":
        return gi * gi, gi ** 3 // 3 + gi * gi
    return gi * gi, 2 * gi * gi * gk


def _predict(operation, rows, cols, tile, dtype, workers, memory, platform) -> tuple[float | str, str | None]:
    """(predicted job seconds at ``tile``, the bound it hits: simulate.Prediction.bound), or (why the tile cannot
    be used, None)."""
    import tempfile

    from numpywren import simulate
    from numpywren.memory import RUNTIME_MB, peak_bytes
    from numpywren.sim_params import platform as get_platform
    from numpywren.storage import LocalStore

    tasks, reads = _size(operation, rows, cols, tile, workers)
    if tasks > max(MAX_TASKS, 4 * workers) or reads > max(MAX_READS, 32 * workers):
        return f"{tasks:,} tasks and {reads:,} tile reads: too many to simulate", None
    p = get_platform(platform.platform if isinstance(platform, _Fresh) else platform)
    sizes = _sizes(operation, rows, cols)
    with tempfile.TemporaryDirectory(prefix="numpywren-tiling-") as root:
        dag, _ = simulate.build_dag(operation, sizes, tile, np.dtype(dtype), LocalStore(root), workers)
    need = max((peak_bytes(task) for task in dag), default=0)
    allowed_mb = memory if memory is not None else p.memory_mb
    allowed = (allowed_mb - RUNTIME_MB) * 2 ** 20
    if need > allowed:
        return (f"needs {need / 2**20:,.0f} MB of tiles per task, a worker allows {max(allowed, 0) / 2**20:,.0f} MB",
                None)
    memory_mb = int(min(max(allowed_mb, 128), p.max_memory_mb))
    prediction = simulate.predict(operation, sizes, workers, tile, memory_mb=memory_mb, platform=p, dtype=dtype,
                                  driver_seconds_per_task=DRIVER_SECONDS_PER_TASK, backups=None)
    if any(note.startswith("WARNING: the longest task") for note in prediction.notes):
        return f"a task would run over {p.name}'s call time limit", None
    return float(prediction.job_seconds), prediction.bound


def _install() -> None:
    """Make this rule ``tile_shape=None``'s in BigMatrix.create and from_numpy (numpywren.matrix cannot import
    this module: the simulator builds plans of matrices)."""
    from numpywren.matrix import BigMatrix

    BigMatrix._tile_chooser = staticmethod(lambda shape, dtype: for_executor(shape, dtype))


_install()
