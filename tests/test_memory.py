"""Memory bounds: a plan whose largest task cannot fit a worker is refused before it runs; a worker
that runs out of memory anyway (RLIMIT_AS on local workers) fails the job at once, never retried."""
import os

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, JobFailedError, LocalExecutor, jobs, scheduler
from numpywren.memory import RUNTIME_MB, WorkerMemoryError, block_refs, peak_bytes
from numpywren.worker import lambda_handler
from test_lambda import _not_on_lambda, fake_lambda, lambda_executor  # noqa: F401 - fixtures


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


# -- AWS Lambda: the function's configured memory ---------------------------------------------------
def _big_tile(i, j):
    """One 8192^2 float64 tile: 512 MiB, more than a 512 MB function's memory holds."""
    return np.ones((8192, 8192))


def test_a_plan_too_big_for_the_lambda_functions_memory_is_refused_before_any_invoke(s3_store, fake_lambda):
    """The executor reads the function's MemorySize (GetFunctionConfiguration, from the fake endpoint)."""
    fake = fake_lambda(memory=512)
    with lambda_executor(fake, s3_store) as ex:
        assert ex.worker_memory_mb == 512
        with pytest.raises(WorkerMemoryError) as info:
            BigMatrix.from_function(_big_tile, (8192, 8192), 8192, executor=ex, key="G")
    message = str(info.value)
    assert "'generate'" in message and f"{3 * 8192 * 8192 * 8:,} bytes" in message and "512 MB" in message
    assert fake.events == [] and not s3_store.exists("G/meta.json")


def _plan_past_the_check(ex, run):
    """A plan the memory check would refuse, its output created as jobs.run would: the scheduler runs it."""
    plan = BigMatrix.from_function(_big_tile, (8192, 8192), 8192, executor=ex, key="G", compute=False)
    jobs._create(plan.outputs[0].matrix, overwrite=True, run_id=run)
    return plan


def test_the_lambda_handler_reports_running_out_of_memory_instead_of_being_killed(s3_store, fake_lambda):
    """The exact event the executor sends, run by the handler in a process of its own (the limit it sets
    would bind this test process) with Lambda's memory setting in its environment: the 512 MiB tile
    fails with MemoryError, reported under the result key, instead of the sandbox being killed."""
    import json
    import os
    import subprocess
    import sys

    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store) as ex:
        plan = _plan_past_the_check(ex, "oom-handler")
        future = ex.submit_tasks([next(iter(plan.dag)).spec("oom-handler", 1, 60.0)])[0]
        event = fake.wait_for(1)[0]
        assert event == future.event
        code = ("import json, sys; from numpywren.worker.lambda_handler import handler; "
                "print(json.dumps(handler(json.loads(sys.stdin.read()), None)))")
        env = {**os.environ, lambda_handler.MEMORY_ENV: "512", "OPENBLAS_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", code], input=json.dumps(event), env=env, text=True,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["ok"] is False
        with pytest.raises(MemoryError, match="Unable to allocate 512"):
            future.result(timeout=60)
    assert not s3_store.exists("G/tiles/0_0")


def test_a_lambda_worker_out_of_memory_fails_the_job_at_its_first_attempt(s3_store, fake_lambda):
    """Through the fake endpoint, each event in a sandbox process with the function's memory (512 MB) in its
    environment: the job fails at once naming the function's memory, never re-invoked or retried."""
    fake = fake_lambda(memory=512, cpu_share=1.0)
    with lambda_executor(fake, s3_store) as ex:
        plan = _plan_past_the_check(ex, "oom")
        with pytest.raises(JobFailedError, match=r"ran out of memory on its worker \(limit 512(\.0)? MB\)") as info:
            scheduler.run(plan.dag, ex, run="oom", retries=2, progress=False)
    assert info.value.attempts == 1 and isinstance(info.value.__cause__, MemoryError)
    assert len(fake.events) == 1  # one invoke: no re-invocation, no retry


def test_the_lambda_memory_guard_admits_every_task_the_planner_admits():
    """The planner lets a task's tiles use the function's memory less memory.RUNTIME_MB; the data-segment limit
    must not refuse them (it counts reserved, untouched address space the sandbox does not: VmData is ~280 MB
    after numpy's import against ~80 MB resident). Run in a process of its own: the limit would bind pytest."""
    import subprocess
    import sys

    from numpywren.memory import RUNTIME_MB

    allowed = (1024 - RUNTIME_MB) * 2 ** 20
    code = ("import numpy as np, scipy.linalg; from numpywren.worker import lambda_handler as h; "
            "x = np.ones((512, 512)); x @ x; "  # BLAS's threads started, as in a worker that has run a task
            f"h.guard_memory('1024'); a = np.ones({allowed} // 8); print(a.nbytes)")
    # 6 BLAS threads: what a Lambda function of 10 GB has (each thread reserves its stack and buffers)
    done = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, timeout=300,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "6", "OMP_NUM_THREADS": "6"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == allowed


def test_the_memory_guard_only_lowers_the_data_limit():
    """Off Lambda (no memory setting) nothing changes; an unreadable setting is ignored."""
    assert lambda_handler.guard_memory(None) is None
    assert lambda_handler.guard_memory("not a number") is None


# -- every task kind declares its peak ----------------------------------------------------------------
def test_every_tile_operation_declares_its_peak_memory():
    """Each op a worker runs (numpywren.worker.ops) has a PEAKS entry, and PEAKS names no op that is gone."""
    from numpywren.memory import PEAKS
    from numpywren.worker.ops import OPS, READ_ONLY_OPS

    ops = set(OPS) | set(READ_ONLY_OPS)
    assert sorted(ops - set(PEAKS)) == [], "declare these ops' peak memory in numpywren.memory.PEAKS"
    assert sorted(set(PEAKS) - ops) == []


def test_a_stacking_task_counts_its_stack_from_the_tile_shapes(local_store):
    """A CAQR leaf factors its stacked panel tile: it holds the tile, the stack, and two arrays of its output's
    block shape (the factor and a workspace); computed here from the matrices' block shapes."""
    A = BigMatrix.from_numpy(np.random.default_rng(1).standard_normal((96, 64)), (32, 32), local_store, "A")
    plan = numpywren.linalg.qr(A, compute=False)
    leaf = next(t for t in plan.dag if t.op == "caqr_factor" and len(t.inputs) == 1)
    (matrix, i, j), = block_refs(leaf.inputs)
    tile = np.prod(matrix.block_shape(i, j)) * 8
    out_matrix, oi, oj = leaf.output
    out = np.prod(out_matrix.block_shape(oi, oj)) * out_matrix.dtype.itemsize
    assert tile == 32 * 32 * 8 and out >= tile
    assert peak_bytes(leaf) == 2 * tile + 2 * out

