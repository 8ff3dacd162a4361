"""Reliability: killed, lost, duplicated and failing tasks, a killed driver, bad input, bad stores.

Faults are real: worker processes are SIGKILLed or exit on their own
(``NUMPYWREN_FAULTS``), a driver process is SIGKILLed with its workers, tiles are
truncated on disk. Every result is checked against numpy.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import numpywren
from numpywren import (
    BigMatrix,
    JobFailedError,
    LocalExecutor,
    StoreError,
    tile,
)
from numpywren.worker import faults, leases
from numpywren.executors.inline import InlineExecutor
from numpywren.worker.ops import run_spec


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def _pair(store, m, k, n, t, seed=0, keys=("A", "B")):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    return a, b, BigMatrix.from_numpy(a, t, store, keys[0]), BigMatrix.from_numpy(b, t, store, keys[1])


def _keys(store, part, heartbeats=True):
    """Runtime objects under jobs/ whose key holds ``part`` (an executor's live heartbeat aside, if asked)."""
    return [k for k in store.list("jobs/") if part in k and (heartbeats or not k.endswith("/heartbeat"))]


# -- fault injection: the hook itself ---------------------------------------------------------
def test_fault_spec_parses_and_rejects_typos():
    rules = faults.parse("crash:task=*/C0_1:attempt=1; delay:seconds=0.5;error:at=written")
    assert [r.kind for r in rules] == ["crash", "delay", "error"]
    assert rules[0].matches("job/C0_1", 1, "start") and not rules[0].matches("job/C0_1", 2, "start")
    assert rules[1].seconds == 0.5 and rules[2].at == "written"
    for bad, msg in [("explode", "unknown kind 'explode'"), ("crash:attempt=one", "crash:attempt=one"),
                     ("hang:when=now", "bad field 'when=now'"), ("error:at=end", "at= must be one of")]:
        with pytest.raises(ValueError, match=msg):
            faults.parse(bad)
    with pytest.raises(ValueError, match="unknown kind"):
        LocalExecutor(workers=1, faults="crsh:task=*")  # fails in the driver, before any worker starts


# -- killed, lost, duplicated, failing workers ---------------------------------------------------
def test_kill_worker_processes_mid_gemm(store):
    """SIGKILL a busy worker twice during a split-k GEMM (on LocalStore and on moto S3): still exact."""
    a, b, A, B = _pair(store, 96, 160, 96, 32, seed=1)
    killed = []
    with LocalExecutor(workers=2, store=store, faults="delay:seconds=0.15") as ex:
        def killer():
            for started in (2, 12):  # attempts begun (leases): early in the job, then mid-way
                while len(_keys(store, "/leases/")) < started:
                    time.sleep(0.01)
                busy = ex.busy_worker_pids()
                while not busy:
                    time.sleep(0.005)
                    busy = ex.busy_worker_pids()
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        C = numpywren.matmul(A, B, out="C", executor=ex, split_k=2, backoff=0.05)
        thread.join(timeout=5)
    err = rel_err(C.to_numpy(), a @ b)
    r = C.report
    died = [f for f in r.failures if "WorkerDiedError" in f[2]]
    print(f"\n[kill {store.url.split(':')[0]}] tasks={r.tasks} killed={len(killed)} retried={r.retried} "
          f"executed={r.executed} skipped={r.skipped} rel_err={err:.2e}")
    assert len(killed) == 2 and len(died) >= 1 and r.retried == len(r.failures) >= 1
    assert err < 1e-12
    assert not _keys(store, "/scratch/") and not _keys(store, "/leases/")


def test_crashes_errors_and_a_lost_result_are_retried(local_store):
    """Deterministic faults: two worker crashes (one after its tile was written) and one error."""
    a, b, A, B = _pair(local_store, 96, 64, 96, 32, seed=2)
    spec = ("crash:task=*/C0_0:attempt=1; error:task=*/C1_1:attempt=1;"
            "crash:task=*/C2_2:attempt=1:at=written")
    with LocalExecutor(workers=2, store=local_store, faults=spec) as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex, backoff=0.05)
    r = C.report
    assert rel_err(C.to_numpy(), a @ b) < 1e-12
    kinds = sorted(f[2].split("(")[0] for f in r.failures)
    assert kinds == ["InjectedFault", "WorkerDiedError", "WorkerDiedError"]
    assert r.retried == 3 and r.lost == 0
    # C2_2's tile was written before its worker died: the retry found it and skipped it
    assert r.skipped == 1 and r.executed == r.tasks - 1


def test_a_lost_task_is_reissued_when_its_lease_expires(local_store):
    """A worker hangs silently (as a Lambda at its timeout): the driver re-issues it once its lease expires.
    The lease is long enough (5 s) that no healthy task of a loaded CI box misses its renewal (0.6 s did, once,
    at load 8)."""
    a, b, A, B = _pair(local_store, 64, 64, 64, 32, seed=3)
    with LocalExecutor(workers=2, store=local_store, faults="hang:task=*/C0_0:attempt=1:seconds=300") as ex:
        start = time.monotonic()
        C = numpywren.matmul(A, B, out="C", executor=ex, lease_seconds=5, backups=None)  # the lease alone
        elapsed = time.monotonic() - start
    r = C.report
    assert r.lost == 1 and r.retried == 1 and "LostTaskError" in r.failures[0][2]
    assert 5 < elapsed < 250  # re-issued after the lease, long before the 300 s hang ends
    assert rel_err(C.to_numpy(), a @ b) < 1e-12


class _TwiceExecutor(LocalExecutor):
    """Delivers every event twice, as an at-least-once queue may."""

    delivered = 0

    def _invoke(self, event):
        for _ in range(2):
            self.delivered += 1
            super()._invoke(event)


def test_every_task_delivered_twice_is_still_exact(local_store):
    a, b, A, B = _pair(local_store, 96, 128, 64, 32, seed=4)
    with _TwiceExecutor(workers=2, store=local_store) as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex, split_k=2)
        assert ex.delivered == 2 * C.report.tasks
    r = C.report
    print(f"\n[twice] tasks={r.tasks} events={ex.delivered} executed={r.executed} skipped={r.skipped} "
          f"duplicates={r.duplicates}")
    assert rel_err(C.to_numpy(), a @ b) < 1e-12


def test_duplicate_and_done_rules_on_the_worker(local_store):
    """run_attempt, called as a worker would: a held lease -> compute anyway; an existing tile -> skip."""
    a, b, A, B = _pair(local_store, 64, 64, 64, 32, seed=5)
    C = BigMatrix.create((64, 64), 32, "float64", local_store, "C")
    task = numpywren.dag.Task("dup/C0_1", "gemm", (C, 0, 1), (((A, 0, 0), (B, 0, 1)), ((A, 0, 1), (B, 1, 1))))
    assert leases.claim(local_store, "dup", task.id, 1, 60)  # the "other" run holds attempt 1
    first = run_spec(task.spec("dup", 1, 60))
    assert first.get("duplicate") is True and first["bytes_written"] == 32 * 32 * 8
    np.testing.assert_allclose(C.get_block(0, 1), (a @ b)[:32, 32:], rtol=1e-12)
    record = json.loads(local_store.get(leases.lease_key("dup", task.id, 1)))
    assert record["attempt"] == 1 and record["expires"] > record["start"]
    again = run_spec(task.spec("dup", 2, 60))
    assert again == {"skipped": True}  # a retry whose tile exists
    assert run_spec(task.spec("dup", 1, 60)) == {"skipped": True}  # a late duplicate


def test_a_task_failing_every_time_fails_the_job_cleanly(local_store):
    """Retries with backoff, then JobFailedError chained to the remote exception; nothing half-written."""
    _, _, A, B = _pair(local_store, 96, 128, 96, 32, seed=6)
    with LocalExecutor(workers=2, store=local_store, faults="error:task=*/C0_1/k2-4") as ex:
        start = time.monotonic()
        with pytest.raises(JobFailedError, match=r"C0_1/k2-4.*failed 3 times") as info:
            numpywren.matmul(A, B, out="C", executor=ex, split_k=2, retries=2, backoff=0.2)
        elapsed = time.monotonic() - start
    assert elapsed > 0.2 + 0.4  # backoff doubled between the attempts
    err = info.value
    assert err.attempts == 3 and err.task_id.endswith("C0_1/k2-4")
    assert isinstance(err.__cause__, faults.InjectedFault)
    assert "Remote traceback" in err.__cause__.__notes__[0] and "faults.py" in err.__cause__.__notes__[0]
    C = BigMatrix.open(local_store, "C")
    assert not C.block_exists(0, 1)
    for key in local_store.list("C/tiles/"):  # every tile under a final key decodes and checks out
        assert tile.decode(local_store.get(key)).shape == (32, 32)
    time.sleep(0.3)  # stragglers were drained before the error was raised: nothing appears later
    assert not _keys(local_store, "/scratch/") and not _keys(local_store, "/leases/")


# -- driver killed and resumed ----------------------------------------------------------------
DRIVER = """
import sys, numpywren
from numpywren import BigMatrix, LocalExecutor
root = sys.argv[1]
A, B = BigMatrix.open(root, "A"), BigMatrix.open(root, "B")
with LocalExecutor(workers=2, store=root, faults="delay:seconds=0.1") as ex:
    numpywren.matmul(A, B, out="C", executor=ex, split_k=2, progress=False)
print("driver finished")
"""


def test_driver_killed_and_resumed_recomputes_nothing(local_store):
    """SIGKILL a driver (and its workers) once 3 C tiles exist; the resumed driver recomputes no tile."""
    a, b, A, B = _pair(local_store, 96, 128, 96, 32, seed=7)
    root = local_store.root
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(root)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(list(local_store.list("C/tiles/"))) < 3:
        assert proc.poll() is None, f"driver ended before it was killed: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    outputs = [k for k in local_store.list("") if "/tiles/" in k and not k.startswith(("A/", "B/"))]
    before = {k: (os.stat(root / k).st_ino, os.stat(root / k).st_mtime_ns) for k in outputs}
    c_before = [k for k in before if k.startswith("C/")]
    assert 3 <= len(c_before) < 9 and any("/scratch/" in k for k in before)

    # Any task that runs its kernel for an output that already existed makes the job fail.
    guard = ";".join(f"error:task=*/C{k.rsplit('/', 1)[1]}/sum1-0" for k in c_before)
    with LocalExecutor(workers=2, store=local_store, faults=guard) as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex, split_k=2, resume=True, retries=0)
    r = C.report
    recomputed = sum((os.stat(root / k).st_ino, os.stat(root / k).st_mtime_ns) != before[k] for k in c_before)
    # what must run: the missing C tiles' sums, plus the missing partials of those tiles
    missing_c = {f"{i}_{j}" for i in range(3) for j in range(3)} - {k.rsplit("/", 1)[1] for k in c_before}
    partials_present = [k.rsplit("/", 1)[1] for k in before if "/scratch/" in k]
    expected = len(missing_c) + sum(2 - partials_present.count(ij) for ij in missing_c)
    print(f"\n[resume] tasks={r.tasks} outputs before restart={len(before)} (C tiles {len(c_before)}) "
          f"executed={r.executed} skipped={r.skipped} recomputed={recomputed}")
    assert recomputed == 0
    assert r.executed == r.tasks - r.skipped == expected
    assert rel_err(C.to_numpy(), a @ b) < 1e-12
    assert not _keys(local_store, "/scratch/")


SPLIT_DRIVER = """
import sys, numpywren
from numpywren import BigMatrix
from numpywren.executors.inline import InlineExecutor
root = sys.argv[1]
A, B = BigMatrix.open(root, "A"), BigMatrix.open(root, "B")
ex = InlineExecutor(4, root, faults="hang:task=*sum1-0:seconds=600")   # the sums never finish
numpywren.matmul(A, B, out="C", executor=ex, split_k=4, progress=False)
"""


def test_a_resume_that_splits_k_differently_never_takes_a_partial_of_another_range(local_store):
    """A driver killed with the 4 partial products of a split_k=4 job written; the resume splits k in 2
    (e.g. fewer workers): partials are named by the k blocks they sum, so none of the old ones is reused
    for a range it does not cover (they were named by chunk index: C was off by 56%, silently)."""
    a, b, A, B = _pair(local_store, 4, 16, 4, 4, seed=13)
    proc = subprocess.Popen([sys.executable, "-c", SPLIT_DRIVER, str(local_store.root)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len([k for k in _keys(local_store, "/scratch/") if "/tiles/" in k]) < 4:
        assert proc.poll() is None, f"driver ended before it was killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "the driver wrote no partial products in 120 s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    C = numpywren.matmul(A, B, out="C", executor=InlineExecutor(2, local_store), split_k=2, resume=True,
                         progress=False)
    assert rel_err(C.to_numpy(), a @ b) < 1e-12


# -- bad input: every validation error names the offender, before any task runs ------------------------
@pytest.mark.parametrize("mode,msg", [("truncate", "truncated"), ("flip", "checksum")])
def test_corrupt_input_tile_is_named(local_executor, mode, msg):
    store = local_executor.store
    _, _, A, B = _pair(store, 96, 64, 64, 32, seed=8)
    key = A.tile_key(1, 0)
    data = bytearray(store.get(key))
    if mode == "truncate":
        data = data[:-8]
    else:
        data[-5] ^= 0xFF
    store.put(key, bytes(data))
    with pytest.raises(JobFailedError, match=rf"block \(1, 0\) of matrix 'A'.*{msg}") as info:
        numpywren.matmul(A, B, out="C", executor=local_executor, retries=3)
    assert info.value.attempts == 1  # a corrupt tile is not retried
    # with check_finite=True the same tile is caught by the pre-pass, before any GEMM task
    with pytest.raises(numpywren.CorruptTileError, match=r"block \(1, 0\) of matrix 'A' \(A/tiles/[0-9a-f]{2}/1_0\)"):
        numpywren.matmul(A, B, out="C2", executor=local_executor, check_finite=True)
    assert not list(store.list("C2/tiles/"))


def test_missing_input_tiles_are_named(local_executor):
    store = local_executor.store
    _, _, A, B = _pair(store, 96, 64, 64, 32)
    store.delete(A.tile_key(0, 1))
    store.delete(A.tile_key(2, 0))
    with pytest.raises(ValueError, match=r"'A'.*missing 2 of its tiles.*\(0, 1\), \(2, 0\)"):
        numpywren.matmul(A, B, executor=local_executor)
    assert not _keys(store, "/", heartbeats=False)


def test_non_finite_values_propagate_or_are_refused(local_executor):
    store = local_executor.store
    a, b, _, B = _pair(store, 64, 64, 64, 32, seed=9)
    a[3, 4], a[40, 0] = np.nan, np.inf
    A = BigMatrix.from_numpy(a, 32, store, "A", overwrite=True)
    C = numpywren.matmul(A, B, out="C", executor=local_executor)  # default: like numpy
    got, want = C.to_numpy(), a @ b
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert rel_err(got[fin], want[fin]) < 1e-12
    with pytest.raises(ValueError, match=r"'A'.*2 NaN or inf.*\(0, 0\): 1, \(1, 0\): 1"):
        numpywren.matmul(A, B, out="C2", executor=local_executor, check_finite=True)
    with pytest.raises(ValueError, match=r"'A'.*2 NaN or inf"):
        numpywren.syrk(A, out="C2", executor=local_executor, check_finite=True)
    assert not list(store.list("C2/tiles/")) and not _keys(store, "/", heartbeats=False)


def test_dtype_rules(local_store):
    with pytest.raises(TypeError, match="dtype int64 is not supported"):
        BigMatrix.from_numpy(np.ones((4, 4), dtype=np.int64), 2, local_store)
    with pytest.raises(TypeError, match="dtype float16 is not supported"):
        BigMatrix.create((4, 4), 2, "float16", local_store)
    # float32 @ float64 promotes to float64 like numpy: see test_gemm.test_mixed_dtypes_promote_like_numpy


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0, 0)])
def test_empty_matrices_round_trip(local_store, shape):
    # numpy's empty arrays are matrices with no tiles (see test_numpy_spec.py for operations on them)
    A = BigMatrix.from_numpy(np.empty(shape, np.float32), 2, local_store)
    again = BigMatrix.open(local_store, A.key).to_numpy()
    assert again.shape == shape and again.dtype == np.float32 and A.T.shape == shape[::-1]
    with pytest.raises(ValueError, match=r"must not be negative, got \(-1, 4\)"):
        BigMatrix.create((-1, 4), 2, "float64", local_store)


@pytest.mark.parametrize("tile_shape,msg", [
    (0, r"tile shape must be positive, got 0"),
    (-2, r"tile shape must be positive, got -2"),
    ((0, 2), r"tile shape must be positive, got \(0, 2\)"),
])
def test_bad_tile_shapes(local_store, tile_shape, msg):
    with pytest.raises(ValueError, match=msg):
        BigMatrix.from_numpy(np.ones((10, 4)), tile_shape, local_store)


def test_tile_shape_larger_than_the_matrix_is_clipped(local_store):
    # as dask and zarr clip chunks: ints and pairs alike
    assert BigMatrix.from_numpy(np.ones((10, 4)), 64, local_store).tile_shape == (10, 4)
    assert BigMatrix.from_numpy(np.ones((10, 4)), (20, 2), local_store).tile_shape == (10, 2)
    A = BigMatrix.from_numpy(np.arange(20000.).reshape(200, 100), (128, 128), local_store)
    assert A.tile_shape == (128, 100) and A.grid == (2, 1)
    assert np.array_equal(A.to_numpy(), np.arange(20000.).reshape(200, 100))


def test_option_errors(local_executor):
    store = local_executor.store
    _, _, A, B = _pair(store, 64, 64, 64, 32)
    with pytest.raises(ValueError, match="out='A' is also an input"):
        numpywren.matmul(A, B, out="A", executor=local_executor)
    with pytest.raises(ValueError, match="resume=True needs the output key"):
        numpywren.matmul(A, B, executor=local_executor, resume=True)
    with pytest.raises(ValueError, match="split_k must be between 1 and 2"):
        numpywren.matmul(A, B, executor=local_executor, split_k=3)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        numpywren.matmul(A, B, executor=local_executor, retries=-1)
    with pytest.raises(ValueError, match="lease_seconds must be positive"):
        numpywren.matmul(A, B, executor=local_executor, lease_seconds=0)
    assert np.array_equal(A.to_numpy(), BigMatrix.open(store, "A").to_numpy())
    assert not [k for k in store.list("jobs/") if "/results/" in k]


def test_store_unreachable_or_bucket_missing(moto_endpoint):
    with pytest.raises(StoreError, match=r"bucket 'no-such-bucket' does not exist \(s3://no-such-bucket/x"):
        numpywren.open_store(f"s3://no-such-bucket/x?endpoint={moto_endpoint}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(StoreError, match=rf"cannot reach the S3 endpoint for s3://b/x.*127\.0\.0\.1:{port}"):
        numpywren.open_store(f"s3://b/x?endpoint=http://127.0.0.1:{port}")


def test_resume_refuses_an_output_computed_from_other_inputs(local_executor):
    store = local_executor.store
    a, b, A, B = _pair(store, 64, 48, 40, 16)
    B2 = BigMatrix.from_numpy(b + 1, 16, store, key="B2")
    numpywren.matmul(A, B, out="C", executor=local_executor)
    with pytest.raises(ValueError, match="resume=True, but 'C' was computed by another job"):
        numpywren.matmul(A, B2, out="C", executor=local_executor, resume=True)
    with pytest.raises(ValueError, match="resume=True, but 'C' holds a matrix of another shape"):
        numpywren.matmul(A, A.T, out="C", executor=local_executor, resume=True)
    C = numpywren.matmul(A, B2, out="C", executor=local_executor)  # without resume: recomputed
    assert np.linalg.norm(C.to_numpy() - a @ (b + 1)) / np.linalg.norm(a @ (b + 1)) < 1e-14
    C.delete()
    assert not list(store.list("C/"))  # the job record goes with the matrix


def test_a_bad_option_leaves_an_existing_output_alone(local_executor):
    store = local_executor.store
    a, b, A, B = _pair(store, 64, 64, 64, 32)
    C = numpywren.matmul(A, B, out="C", executor=local_executor)
    with pytest.raises(ValueError, match="split_k must be between 1 and 2"):
        numpywren.matmul(A, B, out="C", executor=local_executor, split_k=3)
    assert not C.missing_blocks()
    np.testing.assert_allclose(C.to_numpy(), a @ b, rtol=1e-12)
