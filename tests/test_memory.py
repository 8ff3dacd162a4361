"""Memory bounds: a plan whose largest task cannot fit a worker is refused before it runs; a worker
that runs out of memory anyway (RLIMIT_AS on local workers) fails the job at once, never retried."""
import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, JobFailedError, LocalExecutor, jobs, scheduler
from numpywren.memory import RUNTIME_MB, WorkerMemoryError, peak_bytes


def test_a_plan_too_big_for_a_worker_is_refused_before_anything_runs(local_store):
    """GEMM tiles of 4096^2 float64 (128 MiB each): a task holds two (A, B) pairs, its output and a
    workspace, 768 MiB; a 600 MB worker allows 300 MB of tiles. No input tile even exists: nothing is read."""
    A = BigMatrix.create((8192, 8192), 4096, "float64", local_store, "A")
    B = BigMatrix.create((8192, 8192), 4096, "float64", local_store, "B")
    with LocalExecutor(workers=1, store=local_store, memory_mb=600) as ex:
        plan = numpywren.matmul(A, B, out="C", compute=False, workers=1)
        need = max(peak_bytes(t) for t in plan.dag)
        assert need == 6 * 4096 * 4096 * 8
        with pytest.raises(WorkerMemoryError) as info:
            numpywren.matmul(A, B, out="C", executor=ex)
    message = str(info.value)
    allowed = (600 - RUNTIME_MB) * 2 ** 20
    assert "'gemm'" in message and f"{need:,} bytes" in message and f"{allowed:,} bytes" in message
    side = int(message.split("largest tile that fits is about ")[1].split(" x ")[0])
    assert 6 * side * side * 8 <= allowed < 6 * (side + 1) * (side + 1) * 8  # the largest square tile that fits
    assert not list(local_store.list("C/"))  # refused before the output was created


def test_memory_mb_limits_local_workers_and_out_of_memory_is_not_retried(local_store):
    """RLIMIT_AS on a local worker: a Python call allocating 2 GB fails with MemoryError; a tile task that
    does (the plan check bypassed: scheduler.run directly) fails the job at its first attempt."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 2048))
    A = BigMatrix.from_numpy(a, 2048, local_store, "A")
    with LocalExecutor(workers=1, store=local_store, memory_mb=600) as ex:
        with pytest.raises(MemoryError):
            ex.call_async(np.ones, 2 ** 28).result(timeout=120)
        with pytest.raises(ValueError, match="memory_mb must be at least"):
            LocalExecutor(workers=1, store=local_store, memory_mb=100)
        C = numpywren.matmul(A, A, out="C", executor=ex)  # 32 MiB tiles: fits
        np.testing.assert_allclose(C.to_numpy(), a @ a, rtol=1e-10)
        big = BigMatrix.from_numpy(np.ones((4096, 4096)), 4096, local_store, "Big")  # one 128 MiB tile
        plan = numpywren.matmul(big, big, out="D", compute=False, workers=1)
        jobs._create(plan.outputs[0].matrix, overwrite=True, run_id="oom")
        with pytest.raises(JobFailedError, match="ran out of memory") as info:
            scheduler.run(plan.dag, ex, run="oom", retries=2, progress=False)
    assert info.value.attempts == 1 and isinstance(info.value.__cause__, MemoryError)
