"""to_zarr is exact or an error (docs/guide/zarr-exactness.md), with real driver and worker processes, on a
local folder and on the moto S3 server: a second run into a URL that a live run is writing is refused; a killed
run's leftover workers are fenced off a later run's array, and a write that slips past the fence makes
numpywren's reads of the array fail instead of returning a mix; a native matrix, or a folder of them, is never
a target (not even with overwrite=True)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

import numpywren  # noqa: E402
from numpywren import BigMatrix, InputChangedError, JobFailedError, LocalExecutor  # noqa: E402
from numpywren.zarr_io import TargetError, split_url  # noqa: E402

for _var, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(_var, _value)  # worker processes started by the local runs serve the S3 runs too

#: A driver that writes matrix X (all ones) to a zarr URL; one task hangs, so the run stays live until killed.
HANGING_DRIVER = """
import sys
from numpywren import BigMatrix, LocalExecutor
store, url = sys.argv[1], sys.argv[2]
X = BigMatrix.open(store, "X")
with LocalExecutor(workers=2, store=store, faults="hang:task=*/z1_1") as ex:
    X.to_zarr(url, executor=ex, progress=False)
"""


def _url(store, name: str) -> str:
    base, _, query = store.url.partition("?")
    return f"{base}/{name}" + (f"?{query}" if query else "")


def _record(store, name: str) -> dict | None:
    try:
        return json.loads(store.get(f"{name}/job.json"))
    except KeyError:
        return None


def _start_hanging_run(store, url: str, name: str):
    """Start HANGING_DRIVER; return (process, run id) once its run holds the URL and one chunk is written."""
    proc = subprocess.Popen([sys.executable, "-c", HANGING_DRIVER, store.url, url], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120  # a bound on failure, not a margin: the loop ends as soon as it holds
    while True:
        record = _record(store, name)
        if record and record.get("state") == "running" and any("/c/" in k for k in store.list(f"{name}/")):
            return proc, record["run"]
        assert proc.poll() is None, f"the driver ended before it was killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "the hanging run never started"
        time.sleep(0.02)


def _kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def ex(store):
    executor = LocalExecutor(workers=2, store=store)
    yield executor
    executor.shutdown()


def test_a_second_run_into_a_live_runs_url_is_refused(store, ex):
    BigMatrix.from_numpy(np.ones((8, 6)), (4, 3), store, "X")
    Y = BigMatrix.from_numpy(np.full((8, 6), 2.0), (4, 3), store, "Y")
    url = _url(store, "out.zarr")
    proc, run_a = _start_hanging_run(store, url, "out.zarr")
    try:
        for overwrite in (False, True):
            with pytest.raises(JobFailedError, match=f"being computed by run '{run_a}'"):
                Y.to_zarr(url, executor=ex, overwrite=overwrite, progress=False)
        with pytest.raises(FileNotFoundError):  # nothing is published while the first run is unfinished
            BigMatrix.from_zarr(url)
    finally:
        _kill(proc)
    # the killed run's driver is dead: a new run takes the URL, and its array is exactly Y
    Z = Y.to_zarr(url, executor=ex, progress=False)
    np.testing.assert_array_equal(Z.to_numpy(), np.full((8, 6), 2.0))
    assert _record(store, "out.zarr")["run"] == Z.zarr_meta["run"] != run_a
    np.testing.assert_array_equal(np.asarray(Z.sum(axis=0)), np.full(6, 16.0))  # read on the workers too


def test_a_killed_runs_leftover_workers_cannot_change_a_later_array(store, ex):
    X = BigMatrix.from_numpy(np.ones((8, 6)), (4, 3), store, "X")
    y = np.arange(48.0).reshape(8, 6) + 2
    Y = BigMatrix.from_numpy(y, (4, 3), store, "Y")
    url = _url(store, "out.zarr")
    proc, run_a = _start_hanging_run(store, url, "out.zarr")
    _kill(proc)
    Y.to_zarr(url, executor=ex, progress=False)  # the later, successful run

    # A leftover worker of the killed run, in a worker process, runs its task now: fenced, nothing written.
    plan = X.to_zarr(url, executor=ex, overwrite=True, compute=False)  # the killed run's tasks (same plan)
    task = next(t for t in plan.dag if t.id.endswith("z0_0"))
    futures = ex.submit_tasks([task.spec(run_a, 1, 60.0)])
    with pytest.raises(Exception, match=f"run '{run_a}' no longer owns the array"):
        ex.get_all_results(futures)
    np.testing.assert_array_equal(BigMatrix.from_zarr(url).to_numpy(), y)

    # A write that slipped past the fence (or any other writer, e.g. plain zarr): numpywren refuses to read a mix.
    memory = zarr.storage.MemoryStore()
    z = zarr.create_array(store=memory, shape=(8, 6), chunks=(4, 3), dtype="float64")
    z[:] = 1.0
    chunk = "c/0/0"
    store_, key = split_url(url)
    store_.put(f"{key}/{chunk}", memory._store_dict[chunk].to_bytes())
    Z = BigMatrix.from_zarr(url)
    with pytest.raises(InputChangedError, match="is not the chunk run .* published"):
        Z.to_numpy()
    with pytest.raises(JobFailedError) as info:
        Z.sum()
    assert isinstance(info.value.__cause__, InputChangedError)
    Y.to_zarr(url, executor=ex, overwrite=True, progress=False)  # rewriting it makes it whole again
    np.testing.assert_array_equal(BigMatrix.from_zarr(url).to_numpy(), y)


@pytest.mark.parametrize("store", ["local"], indirect=True)  # the process tests above cover S3
def test_a_run_writing_into_a_published_array_makes_its_readers_fail(store, ex):
    """Published by one run, then taken by another that has not finished: from_zarr refuses, naming both."""
    Y = BigMatrix.from_numpy(np.full((8, 6), 2.0), (4, 3), store, "Y")
    url = _url(store, "out.zarr")
    Z = Y.to_zarr(url, executor=ex, progress=False)
    # a run that took it over (its prepare step was cut short before deleting zarr.json) names itself
    record = _record(store, "out.zarr")
    store.put("out.zarr/job.json", json.dumps({**record, "run": "to_zarr-other", "state": "running"}).encode())
    with pytest.raises(InputChangedError, match="run 'to_zarr-other' \\(running\\) has written into it"):
        BigMatrix.from_zarr(url)
    np.testing.assert_array_equal(Z.to_numpy(), np.full((8, 6), 2.0))  # a handle opened before still reads it


@pytest.mark.parametrize("store", ["local"], indirect=True)  # the process tests above cover S3
def test_a_native_matrix_or_its_folder_is_never_a_target(store, ex):
    a = np.arange(24.0).reshape(6, 4)
    A = BigMatrix.from_numpy(a, (3, 2), store, "A")
    W = BigMatrix.from_numpy(a * 3, (3, 2), store, "mats/W")
    store.put("notes/readme.txt", b"not an array")
    places = ["A", "A/tiles", "mats", "mats/W", "mats/W/tiles/00", "notes"]
    for place in places:
        for overwrite in (False, True):
            with pytest.raises(TargetError, match="choose another place"):
                W.T.to_zarr(_url(store, place), executor=ex, overwrite=overwrite) if place != "notes" else \
                    A.to_zarr(_url(store, place), executor=ex, overwrite=overwrite)
    np.testing.assert_array_equal(BigMatrix.open(store, "A").to_numpy(), a)
    np.testing.assert_array_equal(BigMatrix.open(store, "mats/W").to_numpy(), a * 3)
    assert store.get("notes/readme.txt") == b"not an array"
    # a to_zarr URL inside a folder that holds other things is fine: the array's own place is empty
    Z = A.to_zarr(_url(store, "mats/a.zarr"), executor=ex, progress=False)
    np.testing.assert_array_equal(Z.to_numpy(), a)
    np.testing.assert_array_equal(BigMatrix.open(store, "mats/W").to_numpy(), a * 3)


@pytest.mark.parametrize("store", ["local"], indirect=True)  # the process tests above cover S3
def test_to_zarr_is_a_plan_with_a_job_record(store, ex):
    a = np.arange(30.0).reshape(5, 6)
    A = BigMatrix.from_numpy(a, (2, 4), store, "A")
    url = _url(store, "p.zarr")
    plan = A.to_zarr(url, executor=ex, compute=False)
    assert isinstance(plan, numpywren.Plan) and plan.stats()["tasks"] == 6
    assert not list(store.list("p.zarr/"))  # planning touches nothing
    report = numpywren.run(plan, ex)
    Z = plan.value
    np.testing.assert_array_equal(Z.to_numpy(), a)
    record = _record(store, "p.zarr")
    assert record["state"] == "done" and record["run"] == report.run == Z.zarr_meta["run"]
    assert record["spec"]["op"] == "to_zarr"
    assert not list(store.list(f"jobs/{report.run}/"))  # the run's heartbeat, leases, chunk digests: gone
