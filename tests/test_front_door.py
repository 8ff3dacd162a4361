"""One front door: every public operation is a plan builder run only through the jobs layer.

Every name in ``numpywren.__all__`` and ``numpywren.linalg.__all__`` is either COVERED (built with
``compute=False`` into a Plan, inspected with ``stats()``, run by ``numpywren.run``, its outputs' job records
checked, its value compared with numpy/scipy) or EXEMPT with a reason. A new public name that is neither fails
``test_every_public_name_is_covered_or_exempt``. Operations reached as methods (operators, reductions,
astype/copy, from_function, to_zarr, copies of zarr inputs) are covered the same way.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

import numpywren
import numpywren.linalg
from numpywren import BigMatrix, elementwise
from numpywren.executors.inline import InlineExecutor
from numpywren.jobs import Plan

RNG = np.random.default_rng(26)
a = RNG.standard_normal((6, 5))
b = RNG.standard_normal((5, 4))
x = RNG.standard_normal((6, 3))
spd = x @ x.T + 6 * np.eye(6)
rhs = RNG.standard_normal((6, 2))
tall = RNG.standard_normal((9, 3))
y = RNG.standard_normal(9)
L = np.linalg.cholesky(spd)
general = RNG.standard_normal((6, 6)) + 6 * np.eye(6)
cplx = RNG.standard_normal((5, 4)) + 1j * RNG.standard_normal((5, 4))


def _qr_value(value):
    Q, r = value
    return Q.to_numpy() @ r


def _lstsq_value(value):
    return value[0]


def _rbf(u, v, gamma):
    d = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    return np.exp(-gamma * d)


#: name -> (build(matrices, compute=False) -> Plan, expected numpy value, how to turn plan.value into numpy)
COVERED = {
    "matmul": (lambda m, **o: numpywren.matmul(m["A"], m["B"], **o), a @ b, None),
    "syrk": (lambda m, **o: numpywren.syrk(m["A"], **o), a @ a.T, None),
    "herk": (lambda m, **o: numpywren.herk(m["C"], **o), cplx @ cplx.conj().T, None),
    "kernel": (lambda m, **o: numpywren.kernel(m["X"], kind="rbf", gamma=0.5, **o), _rbf(x, x, 0.5), None),
    "cholesky": (lambda m, **o: numpywren.cholesky(m["S"], **o), L, None),
    "solve_triangular": (lambda m, **o: numpywren.solve_triangular(m["L"], m["R"], lower=True, **o),
                         scipy.linalg.solve_triangular(L, rhs, lower=True), None),
    "cho_solve": (lambda m, **o: numpywren.cho_solve((m["L"], True), m["R"], **o), np.linalg.solve(spd, rhs), None),
    "solve": (lambda m, **o: numpywren.solve(m["S"], rhs, assume_a="pos", **o), np.linalg.solve(spd, rhs), None),
    "qr": (lambda m, **o: numpywren.qr(m["T"], **o), tall, _qr_value),
    "lstsq": (lambda m, **o: numpywren.lstsq(m["T"], y, **o), np.linalg.lstsq(tall, y)[0], _lstsq_value),
    "qr_multiply": (lambda m, **o: numpywren.qr_multiply(m["T"], m["T"].T, **o), np.zeros((3, 3)),   # A^T Q = R^T
                    lambda v: v[0].to_numpy() - v[1].to_numpy().T),
    "linalg.matmul": (lambda m, **o: numpywren.linalg.matmul(m["A"], m["B"], **o), a @ b, None),
    "linalg.cholesky": (lambda m, **o: numpywren.linalg.cholesky(m["S"], **o), L, None),
    "linalg.qr": (lambda m, **o: numpywren.linalg.qr(m["T"], mode="r", **o), np.abs(np.linalg.qr(tall, mode="r")),
                  np.abs),
    "linalg.lstsq": (lambda m, **o: numpywren.linalg.lstsq(m["T"], y, **o), np.linalg.lstsq(tall, y)[0],
                     _lstsq_value),
    "linalg.norm": (lambda m, **o: numpywren.linalg.norm(m["A"], **o), np.linalg.norm(a), None),
    "svd": (lambda m, **o: numpywren.svd(m["S"], compute_uv=False, **o), np.linalg.svd(spd, compute_uv=False), None),
    "eigh": (lambda m, **o: numpywren.eigh(m["S"], **o), np.linalg.eigvalsh(spd), lambda v: v.eigenvalues),
    "eigvalsh": (lambda m, **o: numpywren.eigvalsh(m["S"], **o), np.linalg.eigvalsh(spd), None),
    "linalg.svd": (lambda m, **o: numpywren.linalg.svd(m["S"], **o), np.linalg.svd(spd, compute_uv=False),
                   lambda v: v.S),
    "linalg.eigh": (lambda m, **o: numpywren.linalg.eigh(m["S"], **o), np.linalg.eigvalsh(spd),
                    lambda v: v.eigenvalues),
    "linalg.eigvalsh": (lambda m, **o: numpywren.linalg.eigvalsh(m["S"], **o), np.linalg.eigvalsh(spd), None),
    "lu_factor": (lambda m, **o: numpywren.lu_factor(m["G"], **o), scipy.linalg.lu_factor(general)[0],
                  lambda value: value[0].to_numpy()),
    "linalg.lu_factor": (lambda m, **o: numpywren.linalg.lu_factor(m["G"], **o), scipy.linalg.lu_factor(general)[0],
                         lambda value: value[0].to_numpy()),
    "inv": (lambda m, **o: numpywren.inv(m["G"], **o), np.linalg.inv(general), None),
    "lu": (lambda m, **o: numpywren.lu(m["G"], **o), general, lambda v: v[0] @ v[1].to_numpy() @ v[2].to_numpy()),
    "linalg.lu": (lambda m, **o: numpywren.linalg.lu(m["G"], **o), general,
                  lambda v: v[0] @ v[1].to_numpy() @ v[2].to_numpy()),
    "lu_solve": (lambda m, **o: numpywren.lu_solve(m["LUP"], m["R"], **o), np.linalg.solve(general, rhs), None),
    "linalg.lu_solve": (lambda m, **o: numpywren.linalg.lu_solve(m["LUP"], m["R"], **o),
                        np.linalg.solve(general, rhs), None),
    "det": (lambda m, **o: numpywren.det(m["G"], **o), np.linalg.det(general), None),
    "linalg.det": (lambda m, **o: numpywren.linalg.det(m["G"], **o), np.linalg.det(general), None),
    "slogdet": (lambda m, **o: numpywren.slogdet(m["G"], **o), np.linalg.slogdet(general)[1], lambda v: v[1]),
    "linalg.slogdet": (lambda m, **o: numpywren.linalg.slogdet(m["G"], **o), np.linalg.slogdet(general)[1],
                       lambda v: v[1]),
    "linalg.solve": (lambda m, **o: numpywren.linalg.solve(m["G"], rhs, **o), np.linalg.solve(general, rhs), None),
    "solve (general)": (lambda m, **o: numpywren.solve(m["G"], m["R"], **o), np.linalg.solve(general, rhs), None),
    "linalg.inv": (lambda m, **o: numpywren.linalg.inv(m["G"], **o), np.linalg.inv(general), None),
    # operations reached as methods of BigMatrix
    "BigMatrix.__add__": (lambda m, **o: elementwise.binary("add", m["A"], m["A"], **o), a + a, None),
    "BigMatrix.__mul__ (scalar)": (lambda m, **o: elementwise.binary("multiply", m["A"], 3.0, **o), 3 * a, None),
    "BigMatrix.astype": (lambda m, **o: m["A"].astype("float32", **o),
                         a.astype(np.float32), None),
    "BigMatrix.copy": (lambda m, **o: m["A"].T.copy(**o), a.T, None),
    "BigMatrix.imag": (lambda m, **o: elementwise.unary("imag", m["C"].H, **o), cplx.conj().T.imag, None),
    "BigMatrix.sum": (lambda m, **o: m["A"].sum(axis=0, **o), a.sum(axis=0), None),
    "BigMatrix.mean": (lambda m, **o: m["A"].mean(**o), a.mean(), None),
    "BigMatrix.max": (lambda m, **o: m["A"].max(axis=1, **o), a.max(axis=1), None),
    "BigMatrix.norm": (lambda m, **o: m["A"].norm(**o), np.linalg.norm(a), None),
    "BigMatrix.from_function": (lambda m, **o: BigMatrix.from_function(
        lambda i, j: np.full((3, 2) if j < 2 else (3, 1), 10.0 * i + j), (6, 5), (3, 2), store=m["A"].store, **o),
        np.add.outer(10.0 * (np.arange(6) // 3), np.arange(5) // 2), None),
    "BigMatrix.to_zarr": (lambda m, **o: m["A"].to_zarr(f"{m['root']}/a.zarr", **o), a, None),
    "BigMatrix.copy (of a zarr input)": (lambda m, **o: m["Z"].copy(**o), a, None),
}

#: public names that are not operations on matrices, or not one plan, and why
EXEMPT = {
    "cho_factor": "scipy's pair (cholesky(A, lower), lower); its plan is cholesky's (covered)",
    **dict.fromkeys(["executor", "default_executor", "get_executor", "using", "Executor", "LocalExecutor"],
                    "the runtime that runs plans, not an operation"),
    **dict.fromkeys(["Future", "wait", "get_all_results", "ALL_COMPLETED", "ANY_COMPLETED", "ALWAYS"],
                    "PyWren-style calls of Python functions, not tile operations"),
    **dict.fromkeys(["RemoteError", "RemoteExitError", "WorkerDiedError", "MatrixNotFoundError",
                     "CorruptTileError", "StaleTileError", "InputChangedError", "JobFailedError",
                     "BudgetExceededError"], "an error type"),
    **dict.fromkeys(["Store", "LocalStore", "StoreError", "KeyNotFoundError", "open_store"], "storage"),
    "BigMatrix": "the matrix type (its operations are covered as BigMatrix.* above)",
    "Plan": "the plan type", "compose": "combines plans", "run": "runs plans", "Report": "a run's report",
    "plot_timeline": "draws a report",
    "mapreduce": "a PyWren-style paradigm over executor.map (Python functions, not tile tasks)",
    "svd_compressed": "several dependent runs with an in-memory SVD between them (randomized range finder), not "
                      "one plan: each of its products and QRs is a plan run through jobs.run",
    "eigsh": "several dependent runs with dense algebra on the driver between them (block Krylov): each product "
             "A @ V is a matmul plan run through jobs.run (tests/test_eigsh.py checks it)",
}


def test_every_public_name_is_covered_or_exempt():
    names = set(numpywren.__all__) | {f"linalg.{n}" for n in numpywren.linalg.__all__}
    missing = sorted(names - set(COVERED) - set(EXEMPT))
    assert not missing, f"public names neither covered by a plan test nor exempted with a reason: {missing}"
    assert not set(COVERED) & set(EXEMPT)


@pytest.fixture
def matrices(local_store, tmp_path):
    store = local_store
    m = {"A": BigMatrix.from_numpy(a, (3, 2), store, "A"), "B": BigMatrix.from_numpy(b, (2, 2), store, "B"),
         "X": BigMatrix.from_numpy(x, (2, 3), store, "X"), "S": BigMatrix.from_numpy(spd, 3, store, "S"),
         "L": BigMatrix.from_numpy(L, 3, store, "L"), "R": BigMatrix.from_numpy(rhs, (3, 2), store, "R"),
         "T": BigMatrix.from_numpy(tall, (3, 3), store, "T"), "G": BigMatrix.from_numpy(general, 3, store, "G"),
         "C": BigMatrix.from_numpy(cplx, (2, 3), store, "C"), "root": str(store.root)}
    m["LUP"] = numpywren.lu_factor(m["G"], executor=InlineExecutor(2, store))
    m["Z"] = m["A"].to_zarr(f"{store.root}/z.zarr", executor=InlineExecutor(2, store))
    return m


@pytest.mark.parametrize("name", sorted(COVERED))
def test_operation_is_a_plan_run_through_the_jobs_layer(name, matrices, local_store):
    build, expected, to_numpy = COVERED[name]
    with InlineExecutor(2, local_store) as ex:
        plan = build(matrices, executor=ex, compute=False)
        assert isinstance(plan, Plan), f"{name} with compute=False returned {type(plan).__name__}, not a Plan"
        stats = plan.stats()
        assert stats["tasks"] == len(plan.dag) > 0
        keys = [o.matrix.key for o in plan.outputs]
        report = numpywren.run(plan, ex)
    assert report.tasks == stats["tasks"] and report.executed + report.skipped == stats["tasks"]
    run_id = report.run
    records = [json.loads(local_store.get(f"{k}/job.json")) for k in keys if local_store.exists(f"{k}/job.json")]
    for record in records:  # outputs the finishing step kept: their record names this run, done
        assert record["state"] == "done" and record["run"] == run_id
    value = plan.value
    got = to_numpy(value) if to_numpy else (value.to_numpy() if isinstance(value, BigMatrix) else value)
    np.testing.assert_allclose(got, expected, rtol=1e-10 if np.asarray(got).dtype == np.float64 else 1e-6,
                               atol=1e-12)
    assert not list(local_store.list(f"jobs/{run_id}/"))  # the run's heartbeat, leases and scratch are gone


def test_every_operation_takes_the_same_run_options(matrices, local_store):
    """cholesky takes executor= and workers= like matmul (it did not), and unknown options are named."""
    with InlineExecutor(2, local_store) as ex:
        for op in (lambda **o: numpywren.matmul(matrices["A"], matrices["B"], **o),
                   lambda **o: numpywren.cholesky(matrices["S"], **o),
                   lambda **o: numpywren.qr(matrices["T"], **o),
                   lambda **o: matrices["A"].to_zarr(f"{matrices['root']}/o.zarr", **o)):
            assert op(executor=ex, workers=3, compute=False).workers == 3
            with pytest.raises(TypeError, match=r"unexpected options \['retry'\]"):
                op(executor=ex, retry=3)
        C = numpywren.cholesky(matrices["S"], executor=ex, workers=3, retries=1, progress=False)
    np.testing.assert_allclose(C.to_numpy(), L, rtol=1e-10)
