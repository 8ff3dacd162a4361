"""Creating matrices on the workers: ``from_function`` (installed as ``BigMatrix.from_function``).

``from_function(fn, shape, tile_shape)`` is a plan like every operation: one ``generate`` task per tile
calls ``fn(i, j)`` on a worker and writes the block (numpywren.worker.generate_tasks), so the whole matrix
is never held anywhere. The function is pickled into the store when the plan is built (it is the one
pickle a tile task reads: see numpywren.serialize on the store as a trust boundary) and deleted by the
plan's finishing step.
"""
from __future__ import annotations

from typing import Callable

from numpywren import jobs, protocol, serialize
from numpywren.api import get_executor
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix
from numpywren.scheduler import JobFailedError
from numpywren.storage import open_store


def from_function(fn: Callable, shape, tile_shape=None, dtype="float64", store=None, key: str | None = None,
                  executor=None, overwrite: bool = False, **options) -> "BigMatrix | jobs.Plan":
    """Build a matrix tile by tile on the workers: ``fn(i, j)`` returns block (i, j).

    Use it for random or structured inputs (seed a generator with the block index). ``store`` defaults
    to the executor's. An existing matrix at ``key`` is an error unless ``overwrite=True``. An error in
    ``fn`` is raised as itself (the job failure attached as a note), and the matrix is deleted.
    ``tile_shape=None`` chooses the tile for the executor (numpywren.tiling.choose_tile). Run
    options (``progress``, ``retries``, ``compute=False``, ...) as for every operation.
    """
    if not callable(fn):
        raise TypeError(f"from_function takes a function fn(i, j) -> block, got {type(fn).__name__}")
    opts = jobs.run_options(executor, **options)
    if store is not None:
        store = open_store(store)
    else:
        store = (opts.executor if opts.executor is not None else get_executor(None)).store
    if tile_shape is None:
        from numpywren.tiled import _normalize_dtype, _normalize_shape
        from numpywren.tiling import for_executor

        executor = opts.executor if opts.executor is not None else get_executor(None)
        tile_shape = for_executor(_normalize_shape(shape), _normalize_dtype(dtype), executor)
    M = jobs.output_matrix(key, shape, tile_shape, dtype, store)
    if not overwrite and key is not None and store.exists(f"{M.key}/meta.json"):
        raise FileExistsError(f"a matrix already exists at {key!r} in {store.url} "
                              f"({BigMatrix.open(store, key)!r}); pass overwrite=True to replace it")
    fn_key = f"{protocol.scratch_key(protocol.new_id('from-function'), 'fn')}"
    store.put(fn_key, serialize.dumps(fn))
    dag = DAG()
    for i, j in M.block_indices():
        dag.add(Task(f"{M.key}/g{i}_{j}", "generate", (M, i, j), (), {"fn": fn_key}))

    def finish():
        store.delete(fn_key)
        return M
    plan = jobs.Plan(dag, [jobs.Output(M, "from_function", (), {"fn": fn_key})], {}, f"generating {M.key}",
                     opts.workers, finish)
    try:
        return opts.submit(plan)
    except BaseException as e:
        if opts.compute:
            store.delete(fn_key)
            if M.generation is not None:  # the run created it: nothing of it stays, so a rerun is not refused
                M.delete()
        cause = e.__cause__ if isinstance(e, JobFailedError) else None
        if isinstance(cause, Exception) and not isinstance(cause, JobFailedError):
            cause.add_note(f"(numpywren: {e})")  # the error of fn itself, as a local call would raise it
            raise cause from None
        raise


BigMatrix.from_function = staticmethod(from_function)
