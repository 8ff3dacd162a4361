"""Asynchronous (Hogwild!-style) SGD with the object store as the parameter server.

Design, and why it is correct without locks: the parameters are never
read-modify-written in one shared object (two workers doing that concurrently
lose each other's updates, and the worker that writes last wins, so the fixed
point need not be the global optimum). Instead

    params = init + sum over workers w of delta[w]

where ``init`` is one immutable object and ``delta[w]`` (``jobs/<job>/deltas/<w>``)
is the running sum of worker ``w``'s own updates, written only by ``w``. Every
write is a whole-object atomic put by its single owner, so no update is ever
lost, and no lock or compare-and-swap is needed: it is a grow-only counter of
vectors (a CRDT). Workers run asynchronously: each step reads the other
workers' deltas (at most ``sync_every`` steps old; that staleness is Hogwild!'s
asynchrony), takes a minibatch gradient on its own data shard, adds
``-lr * grad`` to its delta, and writes the delta back. The driver (or anyone)
reads the current model the same way. Cost: ``workers - 1`` small gets and one
put per sync, fine for the tens of workers a dense model of this size needs.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from numpywren.api import get_executor
from numpywren import protocol
from numpywren.executors.base import Executor
from numpywren.serialize import dumps, loads
from numpywren.storage import KeyNotFoundError, Store, open_store

Gradient = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


# -- models ----------------------------------------------------------------------------------------
def least_squares_loss(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Mean squared residual ``mean((X w - y)**2)``."""
    r = X @ w - y
    return float(r @ r / len(y))


def least_squares_gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (2.0 / len(y)) * (X.T @ (X @ w - y))


def logistic_loss(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Mean log loss for labels ``y`` in {0, 1}."""
    z = X @ w
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def logistic_gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = 0.5 * (1.0 + np.tanh(0.5 * (X @ w)))  # a sigmoid that never overflows
    return X.T @ (p - y) / len(y)


# -- data shards -----------------------------------------------------------------------------------
def put_shards(store: Store | str, prefix: str, X: np.ndarray, y: np.ndarray, num_shards: int) -> list[str]:
    """Split rows of (X, y) into ``num_shards`` contiguous shards stored as .npz objects; return their keys."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"need X of shape (n, d) and y of shape (n,), got {X.shape} and {y.shape}")
    if not 1 <= num_shards <= X.shape[0]:
        raise ValueError(f"num_shards must be between 1 and the {X.shape[0]} rows, got {num_shards}")
    store = open_store(store)
    keys = []
    for i, rows in enumerate(np.array_split(np.arange(X.shape[0]), num_shards)):
        buf = io.BytesIO()
        np.savez(buf, X=X[rows], y=y[rows])
        keys.append(f"{prefix.rstrip('/')}/{i:05d}.npz")
        store.put(keys[-1], buf.getbuffer())
    return keys


def load_shard(store: Store, key: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(store.get(key))) as z:
        return z["X"], z["y"]


# -- the parameter store ---------------------------------------------------------------------------
class ParameterStore:
    """``params = init + sum(delta[w])`` kept in a store; each worker writes only its own delta."""

    def __init__(self, store: Store | str, prefix: str, num_workers: int):
        self.store = open_store(store)
        self.prefix = prefix.rstrip("/")
        self.num_workers = num_workers

    def initialize(self, params: np.ndarray) -> None:
        self.store.put(f"{self.prefix}/init", dumps(np.asarray(params, dtype=np.float64)))

    def init(self) -> np.ndarray:
        return loads(self.store.get(f"{self.prefix}/init"))

    def read_delta(self, worker: int) -> tuple[int, np.ndarray | None]:
        """(number of updates in it, the delta) of one worker; (0, None) before its first write."""
        try:
            return loads(self.store.get(f"{self.prefix}/deltas/{worker:05d}"))
        except KeyNotFoundError:
            return 0, None

    def write_delta(self, worker: int, updates: int, delta: np.ndarray) -> None:
        self.store.put(f"{self.prefix}/deltas/{worker:05d}", dumps((updates, delta)))

    def read(self) -> np.ndarray:
        """The current parameters (every worker's latest written delta)."""
        params = self.init().copy()
        for w in range(self.num_workers):
            delta = self.read_delta(w)[1]
            if delta is not None:
                params += delta
        return params


@dataclass
class SGDResult:
    params: np.ndarray
    workers: list[dict]  # per worker: steps, seconds, foreign updates seen, reads
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def updates(self) -> int:
        return sum(w["steps"] for w in self.workers)


def hogwild_sgd(shard_keys: list[str], init: np.ndarray, gradient: Gradient = least_squares_gradient,
                steps: int = 300, batch_size: int = 128, lr: float = 0.05, lr_decay_steps: float | None = 100,
                sync_every: int = 1, executor: Executor | None = None, store: Store | str | None = None,
                seed: int = 0, cleanup: bool = True) -> SGDResult:
    """Asynchronous minibatch SGD, one worker per data shard, parameters in the store (see module doc).

    Worker ``w`` takes ``steps`` steps of ``-lr_t * gradient(params, X_b, y_b)`` on
    minibatches of ``batch_size`` rows of its shard ``shard_keys[w]`` (an .npz with
    ``X`` and ``y``, e.g. from :func:`put_shards`), where ``lr_t = lr / (1 + t /
    lr_decay_steps)`` (constant if None). It refreshes the other workers' deltas and
    publishes its own every ``sync_every`` steps. Returns the final parameters.
    """
    shard_keys = list(shard_keys)
    if not shard_keys:
        raise ValueError("hogwild_sgd needs at least one data shard")
    if steps < 1 or batch_size < 1 or sync_every < 1 or lr <= 0:
        raise ValueError(f"steps, batch_size, sync_every and lr must be positive "
                         f"(got {steps}, {batch_size}, {sync_every}, {lr})")
    init = np.asarray(init, dtype=np.float64)
    ex = get_executor(executor)
    store = open_store(store) if store is not None else ex.store
    job_prefix = protocol.scratch_key(protocol.new_id("ps"), "state")
    ps = ParameterStore(store, f"{job_prefix}/params", len(shard_keys))
    ps.initialize(init)
    fn = partial(_sgd_worker, ps=ps, gradient=gradient, steps=steps, batch_size=batch_size, lr=lr,
                 lr_decay_steps=lr_decay_steps, sync_every=sync_every, seed=seed)
    start = time.perf_counter()
    jobs = []
    try:
        futures = ex.map(fn, list(enumerate(shard_keys)))
        jobs.append(futures[0].callset)
        stats = ex.get_all_results(futures)
        params = ps.read()
    finally:
        if cleanup:
            store.delete_prefix(job_prefix + "/")
            ex.cleanup(jobs)
    return SGDResult(params=params, workers=stats, seconds=time.perf_counter() - start)


def _sgd_worker(item: tuple[int, str], ps: ParameterStore, gradient: Gradient, steps: int, batch_size: int,
                lr: float, lr_decay_steps: float | None, sync_every: int, seed: int) -> dict:
    """Worker side: the asynchronous SGD loop on one shard."""
    me, shard_key = item
    X, y = load_shard(ps.store, shard_key)
    rng = np.random.default_rng([seed, me])
    init = ps.init()
    own = np.zeros_like(init)
    others = np.zeros_like(init)
    seen = dict.fromkeys((w for w in range(ps.num_workers) if w != me), 0)
    foreign = reads = 0
    start = time.time()
    batch = min(batch_size, len(y))
    for t in range(steps):
        if t % sync_every == 0 and seen:
            others[:] = 0.0
            for w in seen:
                updates, delta = ps.read_delta(w)
                reads += 1
                if delta is not None:
                    others += delta
                foreign += updates - seen[w]
                seen[w] = updates
        idx = rng.integers(0, len(y), size=batch)
        step_lr = lr if lr_decay_steps is None else lr / (1.0 + t / lr_decay_steps)
        own -= step_lr * gradient(init + others + own, X[idx], y[idx])
        if (t + 1) % sync_every == 0 or t + 1 == steps:
            ps.write_delta(me, t + 1, own)
    return {"worker": me, "steps": steps, "rows": len(y), "reads": reads,
            "foreign_updates_seen": foreign, "seconds": time.time() - start, "start": start}
