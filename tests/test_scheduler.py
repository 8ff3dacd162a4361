"""The scheduler and the jobs layer on in-process workers (numpywren.executors.inline): fast, still exact.

Same worker code, same JSON events, same store as the process-based tests;
only the worker processes are threads here.
"""
from __future__ import annotations

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, JobFailedError, jobs, scheduler
from numpywren.dag import DAG, Task
from numpywren.executors.inline import InlineExecutor
from numpywren.executors.simulated import SimulatedExecutor
from numpywren.matrix import stored_tile_key


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


@pytest.fixture
def inline(local_store):
    with InlineExecutor(2, local_store) as ex:
        yield ex


def _stored(store, key, a, tile=32):
    return BigMatrix.from_numpy(a, tile, store, key, overwrite=True)


class _Recording(InlineExecutor):
    """Remembers the order of submitted task ids and the most attempts ever outstanding."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.order, self.outstanding, self.peak = [], 0, 0

    def _invoke(self, event):
        self.order.append(event["task"]["id"])
        self.outstanding += 1
        self.peak = max(self.peak, self.outstanding)
        super()._invoke(event)

    def _call_ended(self, event):
        self.outstanding -= 1
        super()._call_ended(event)


def _chain_and_bag(store, chain: int, bag: int):
    """A chain of ``chain`` dependent GEMM tiles and ``bag`` independent ones (1x1-block products)."""
    a = np.random.default_rng(0).standard_normal((32 * (chain + bag), 32))
    A = _stored(store, "A", a)
    C = BigMatrix.create((32 * (chain + bag), 32 * (chain + bag)), 32, "float64", store, "C", overwrite=True)
    dag, previous = DAG(), ()
    for i in range(chain):
        previous = (dag.add(Task(f"C/chain{i}", "gemm", (C, i, i), (((A, i, 0), (A.T, 0, i)),),
                                 deps=previous, flops=1.0)).id,)
    for k in range(bag):
        i = chain + k
        dag.add(Task(f"C/bag{k}", "gemm", (C, i, i), (((A, i, 0), (A.T, 0, i)),), flops=1.0))
    return a, C, dag


def test_ready_tasks_go_longest_remaining_path_first_through_a_bounded_window(local_store):
    a, C, dag = _chain_and_bag(local_store, chain=4, bag=12)
    with _Recording(1, local_store) as ex:
        report = scheduler.run(dag, ex, run="prio", progress=False)
    assert ex.order[0] == "C/chain0"  # the head of the longest path goes first, not the first-added bag task
    assert ex.peak <= scheduler.WINDOW_PER_WORKER * 1  # never more in flight than the window
    assert report.executed == len(dag) == 16
    for i in range(16):
        rows = a[32 * i:32 * i + 32]
        assert rel_err(C.get_block(i, i), rows @ rows.T) < 1e-13


def test_matmul_through_the_scheduler_on_threads_is_exact(inline):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((150, 70)), rng.standard_normal((70, 90))
    A, B = _stored(inline.store, "A", a), _stored(inline.store, "B", b)
    C = numpywren.matmul(A, B, out="C", executor=inline, split_k=2)
    assert rel_err(C.to_numpy(), a @ b) < 1e-12
    assert C.report.flops == 2 * 150 * 70 * 90 + 150 * 90  # the products, then one sum of two partials


def test_a_failed_attempt_is_retried_and_a_permanent_error_is_not(local_store):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((64, 64))
    A = _stored(local_store, "A", a)
    with InlineExecutor(2, local_store, faults="error:task=*/C0_1:attempt=1;crash:task=*/C1_0:attempt=1") as ex:
        C = numpywren.matmul(A, A, out="C", executor=ex, backoff=0.01)
        assert rel_err(C.to_numpy(), a @ a) < 1e-12
        assert C.report.retried == 2 and sorted(f[0] for f in C.report.failures) == ["C/C0_1", "C/C1_0"]
        with InlineExecutor(2, local_store, faults="error:task=*/C0_0") as failing:
            with pytest.raises(JobFailedError, match="C0_0.*failed 3 times") as info:
                numpywren.matmul(A, A, out="D", executor=failing, retries=2, backoff=0.01)
        assert info.value.attempts == 3
        key = stored_tile_key("A", 1, 1)
        data = bytearray(local_store.get(key))
        data[-3] ^= 0xFF
        local_store.put(key, bytes(data))
        with pytest.raises(JobFailedError, match="retrying cannot fix") as info:
            numpywren.matmul(A, A, out="E", executor=ex, retries=5)
        assert info.value.attempts == 1  # a corrupt tile is never retried


def test_a_hung_attempt_is_reissued_when_its_lease_expires(local_store):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 64))
    A = _stored(local_store, "A", a)
    # the hung thread sleeps far longer than any test: only the lease can get the task done
    with InlineExecutor(2, local_store, faults="hang:task=*/C1_1:attempt=1:seconds=600") as ex:
        C = numpywren.matmul(A, A, out="C", executor=ex, lease_seconds=0.3)
    assert C.report.lost == 1 and "LostTaskError" in C.report.failures[0][2]
    assert rel_err(C.to_numpy(), a @ a) < 1e-12


def test_resume_skips_only_verified_tiles(local_store):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((96, 96))
    A = _stored(local_store, "A", a)
    with InlineExecutor(2, local_store) as ex:
        numpywren.matmul(A, A, out="C", executor=ex)
        local_store.delete(stored_tile_key("C", 0, 2))
        local_store.put(stored_tile_key("C", 2, 2), local_store.get(stored_tile_key("C", 2, 2))[:-1])
        C = numpywren.matmul(A, A, out="C", executor=ex, resume=True)
    assert (C.report.skipped, C.report.executed) == (7, 2)
    assert rel_err(C.to_numpy(), a @ a) < 1e-12


class _Polling(InlineExecutor):
    reports_completions = False  # a backend that cannot say when calls end: the scheduler polls


def test_a_backend_without_completion_reports_is_polled(local_store):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((64, 96))
    A = _stored(local_store, "A", a)
    with _Polling(2, local_store) as ex:
        C = numpywren.matmul(A, A.T, out="C", executor=ex)
    assert rel_err(C.to_numpy(), a @ a.T) < 1e-12


# -- plans as values ------------------------------------------------------------------------------------
def test_a_plan_is_a_value_inspected_without_touching_the_store(local_store):
    rng = np.random.default_rng(6)
    A = _stored(local_store, "A", rng.standard_normal((128, 64)))
    before = sorted(local_store.list(""))
    plan = numpywren.matmul(A, A.T, out="C", compute=False, workers=4)
    stats = plan.stats()
    assert sorted(local_store.list("")) == before  # no output, no record, no scratch written
    assert stats["tasks"] == 16 and stats["edges"] == 0 and stats["flops"] == 2 * 128 * 64 * 128
    assert stats["bytes_written"] == 128 * 128 * 8 and stats["bytes_read"] == 16 * 2 * 2 * 32 * 32 * 8
    assert stats["critical_path_tasks"] == 1 and stats["workers"] == 4
    split = numpywren.matmul(A[0:0] if False else A, A.T, out="D", compute=False, workers=64).stats()
    assert split["edges"] > 0 and split["critical_path_tasks"] == 2  # split-k: partials, then their sums
    assert "16 tasks" in repr(plan)


def test_composed_plans_run_as_one_job_and_start_early(local_store):
    rng = np.random.default_rng(7)
    a, b, c = (rng.standard_normal((96, 96)) for _ in range(3))
    A, B, C = _stored(local_store, "A", a), _stored(local_store, "B", b), _stored(local_store, "C", c)
    first = numpywren.matmul(A, B, out="AB", compute=False, workers=2)
    second = numpywren.matmul(first.result, C, out="ABC", compute=False, workers=2)
    plan = jobs.compose(first, second)
    # ABC[i, j] needs row i of AB only: 3 writers each, not all 9 tiles of AB
    assert all(len(t.deps) == 3 for t in plan.dag if t.id.startswith("ABC/"))
    with InlineExecutor(2, local_store) as ex:
        report = numpywren.run(plan, ex)
    assert report.tasks == 18 and report.executed == 18
    assert rel_err(BigMatrix.open(local_store, "ABC").to_numpy(), a @ b @ c) < 1e-12
    assert rel_err(BigMatrix.open(local_store, "AB").to_numpy(), a @ b) < 1e-12


def test_compose_refuses_a_plan_that_rewrites_what_an_earlier_plan_reads(local_store):
    """Creating a plan's output deletes what was at its key before any task runs."""
    A = _stored(local_store, "A", np.ones((8, 8)))
    B = _stored(local_store, "B", np.ones((8, 8)))
    first = numpywren.matmul(A, B, out="C", compute=False, workers=2)
    with pytest.raises(ValueError, match="plan 2 .* writes 'A', which plan 1 reads as an input"):
        jobs.compose(first, numpywren.elementwise.binary("multiply", B, 2.0, out="A", compute=False))
    with pytest.raises(ValueError, match="plan 2 .* writes 'C', which plan 1 writes too"):
        jobs.compose(first, numpywren.matmul(B, B, out="C", compute=False, workers=2))
    np.testing.assert_array_equal(BigMatrix.open(local_store, "A").to_numpy(), np.ones((8, 8)))


def test_a_composed_plan_starts_the_second_product_before_the_first_ends(local_store):
    """In virtual time (deterministic): with 7 workers the first product's last wave leaves workers idle;
    composed, the second product fills them, and the whole job ends sooner than two runs back to back."""
    A = BigMatrix(local_store, "A", (256, 256), 32, "float64", generation="a")

    def plans():
        first = numpywren.matmul(A, A, out="AB", compute=False, workers=7)
        second = numpywren.matmul(first.result, A, out="ABC", compute=False, workers=7)
        for plan in (first, second):
            plan.result.generation = "planned"  # what jobs.run would create
        return first, second

    def simulate(dag):
        ex = SimulatedExecutor(workers=7, store=local_store, record=True)
        return scheduler.run(dag, ex, run="sim", progress=False).wall_seconds, ex.history

    first, second = plans()
    apart = simulate(first.dag)[0] + simulate(second.dag)[0]
    together, history = simulate(jobs.compose(*plans()).dag)
    first_abc = min(start for tid, start, _ in history if tid.startswith("ABC/"))
    last_ab = max(end for tid, _, end in history if tid.startswith("AB/"))
    assert first_abc < last_ab and together < apart == 20.0


def test_a_plan_needing_a_missing_input_fails_before_any_task(local_store):
    rng = np.random.default_rng(8)
    A = _stored(local_store, "A", rng.standard_normal((64, 64)))
    pending = numpywren.matmul(A, A, out="AA", compute=False, workers=2)
    second = numpywren.matmul(pending.result, A, out="AAA", compute=False, workers=2)
    with InlineExecutor(2, local_store) as ex:
        with pytest.raises(ValueError, match="'AA'.*missing"):
            numpywren.run(second, ex)  # AA was planned but never computed
        assert not local_store.exists("AAA/meta.json")


# -- the simulated backend drives the real scheduler -------------------------------------------------------
def test_the_simulated_backend_runs_a_big_dag_in_virtual_time(local_store):
    X = BigMatrix(local_store, "X", (4000, 1), (1, 1), "float64", generation="g")
    dag = DAG(Task(f"X/{i}", "sum", (X, i, 0), ((X, i, 0),)) for i in range(4000))
    ex = SimulatedExecutor(workers=100, store=local_store)
    report = scheduler.run(dag, ex, run="sim", progress=False)
    assert report.executed == 4000 and ex.max_in_flight == 100
    assert report.wall_seconds == pytest.approx(40.0)  # 4000 one-second tasks on 100 virtual workers
