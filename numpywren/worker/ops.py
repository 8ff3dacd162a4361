"""The tile operations a worker agrees to run (an allow-list), and how one attempt of a tile task runs.

A tile event names its operation by string; anything not in :data:`OPS` is
refused. This is what keeps the linear-algebra path free of pickles: a task
spec is JSON, the runner is code the worker already has.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time

from numpywren import protocol
from numpywren.tiled import TiledMatrix
from numpywren.worker import faults, leases, progress
from numpywren.worker.factor_tasks import (cholesky_diagonal_tile, cholesky_panel_tile, cholesky_update_tile,
                                    triangular_solve_tile, zeros_tile)
from numpywren.worker.elementwise_tasks import combine_tile, elementwise_tile, reduce_tile
from numpywren.worker import lu_tasks
from numpywren.worker.generate_tasks import generate_tile
from numpywren.worker.kernel_tasks import kernel_tile, row_norms_tile
from numpywren.worker.qr_tasks import tsqr_apply_tile, tsqr_r_tile, tsqr_tile
from numpywren.worker.tasks import gemm_tile, scan_tile, sum_tile
from numpywren.worker.verify_tasks import verify_tile
from numpywren.zarr_tiles import ZarrTiles
from numpywren.worker.caqr_tasks import caqr_apply_tile, caqr_factor_tile, caqr_take_tile
from numpywren.worker.eigh_tasks import band_eigh_tile
from numpywren.worker.svd_tasks import band_svd_tile

#: operation name -> runner(task) -> stats dict (JSON-safe)
OPS = {"gemm": gemm_tile, "sum": sum_tile, "row_norms": row_norms_tile, "kernel": kernel_tile,
       "tsqr": tsqr_tile, "tsqr_r": tsqr_r_tile, "tsqr_apply": tsqr_apply_tile,
       "potrf": cholesky_diagonal_tile, "chol_panel": cholesky_panel_tile, "chol_update": cholesky_update_tile,
       "trsm": triangular_solve_tile, "zeros": zeros_tile,
       "lu_update": lu_tasks.lu_update_tile, "lu_panel": lu_tasks.lu_panel_tile,
       "lu_gather_lower": lu_tasks.lu_gather_lower_tile, "lu_diagonal": lu_tasks.lu_diagonal_tile,
       "lu_upper": lu_tasks.lu_upper_tile, "lu_permute": lu_tasks.lu_permute_tile, "lu_solve": lu_tasks.lu_solve_tile,
       "lu_split": lu_tasks.lu_split_tile, "lu_permutation": lu_tasks.lu_permutation_tile,
       "lu_colsums": lu_tasks.lu_colsums_tile, "lu_rcond": lu_tasks.lu_rcond_tile,
       "elementwise": elementwise_tile, "reduce": reduce_tile, "combine": combine_tile,
       "generate": generate_tile}
OPS.update(caqr_factor=caqr_factor_tile, caqr_apply=caqr_apply_tile, caqr_take=caqr_take_tile)
OPS.update(band_eigh=band_eigh_tile)
OPS.update(band_svd=band_svd_tile)
#: operations that only read (validation scans): no lease, nothing to skip
READ_ONLY_OPS = {"scan": scan_tile, "verify": verify_tile}
assert set(READ_ONLY_OPS) == protocol.READ_ONLY_OPS  # their names are the wire's (protocol.task_lease)


def run_spec(spec: dict) -> dict:
    """Run attempt ``spec["attempt"]`` of one tile task (see numpywren.worker.leases for the rules).

    The worker claims the attempt's lease. A retry, or a run that finds the
    lease taken (a duplicate delivery), first looks for the output tile and
    returns at once if this generation of the matrix already holds it (its
    header and length are checked; a tile of another run or generation is
    recomputed, never counted); otherwise it runs the kernel even when a
    duplicate holds the lease (the atomic write of identical bytes makes the
    second run harmless). A first attempt that owns its lease skips the
    look-up: the common path costs one extra request, the lease.
    """
    before = _throttled_requests()
    stats = _run_attempt(spec)
    throttled = _throttled_requests() - before  # SlowDown answers retried during this attempt (this process)
    return {**stats, "throttled": throttled} if throttled else stats


def _throttled_requests() -> int:
    """S3 SlowDown answers retried so far in this process; 0 if it never opened an S3 store (then it does
    not import boto3 for the count)."""
    s3 = sys.modules.get("numpywren.storage.s3")
    return 0 if s3 is None else s3.throttled_requests()


def _run_attempt(spec: dict) -> dict:
    task = protocol.decode_task(spec, load_matrix)
    attempt, lease_seconds = task.attempt, task.lease_seconds
    if task.op in READ_ONLY_OPS:
        return READ_ONLY_OPS[task.op](task)
    runner = OPS.get(task.op)
    if runner is None:
        raise ValueError(f"unknown tile operation {task.op!r} (this worker runs {sorted(OPS)})")
    matrix, i, j = task.output
    faults.inject(task.id, attempt, "received")
    owner = leases.claim(matrix.store, task.run, task.id, attempt, lease_seconds)
    if (attempt > 1 or not owner) and matrix.written_by(i, j) is not None:
        return {"skipped": True}
    tracked = progress.Progress(progress.input_bytes(task.inputs, task.params), task.id, attempt)
    with leases.renewing(matrix.store, task.run, task.id, attempt, lease_seconds,
                         protocol.renew_seconds(spec) if owner else None, tracked), progress.tracking(tracked):
        faults.inject(task.id, attempt, "start")
        start = time.time()
        stats = runner(task)
    stats.update(start=start, end=time.time(), worker=worker_id())  # for Report.timeline()
    faults.inject(task.id, attempt, "written")
    return stats if owner else {**stats, "duplicate": True}


def load_matrix(ref: dict) -> TiledMatrix:
    """A task's matrix handle from its reference: a zarr array's chunks (numpywren.zarr_tiles) or native tiles."""
    return ZarrTiles.from_ref(ref) if isinstance(ref, dict) and "zarr" in ref else TiledMatrix.from_ref(ref)


def worker_id() -> str:
    """Which worker ran a task: the Lambda container (its log stream), else host:pid (and thread, if not main)."""
    stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
    if stream:
        return stream
    thread = threading.current_thread()
    where = f"{socket.gethostname()}:{os.getpid()}"
    return where if thread is threading.main_thread() else f"{where}:{thread.name}"
