"""What a long benchmark needs to say about the machine it ran on: the load average over the whole run
(sampled in a background thread) and the peak memory of each process involved.

On a shared box a long run's time means little without the load it saw; ``LoadSampler`` keeps the 1-minute
load average every ``every`` seconds so the report can state its range, not just the value at the start.
"""
from __future__ import annotations

import os
import resource
import threading


class LoadSampler:
    """``with LoadSampler(30) as load: ...``; then ``load.low``, ``load.high``, ``load.describe()``."""

    def __init__(self, every: float = 30.0):
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-sampler", daemon=True)

    def _sample(self) -> None:
        if hasattr(os, "getloadavg"):
            self.samples.append(os.getloadavg()[0])

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> "LoadSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def low(self) -> float:
        return min(self.samples, default=float("nan"))

    @property
    def high(self) -> float:
        return max(self.samples, default=float("nan"))

    def describe(self) -> str:
        return f"load average (1 min) {self.low:.1f}-{self.high:.1f} over {len(self.samples)} samples"


def peak_rss_mb(pid: int | None = None) -> float:
    """VmHWM (peak resident set) of process ``pid`` in MB; of this process if None (NaN if unreadable)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def workers_peak_rss_mb(executor) -> list[float]:
    """Peak RSS (MB) of each of a LocalExecutor's worker processes (read before the executor closes)."""
    return [peak_rss_mb(pid) for pid in executor.worker_pids() if pid]


def keys_left(store, prefixes=("",)) -> list[str]:
    """Every key under ``prefixes`` still in ``store``: what a run left behind (scratch should be gone)."""
    return sorted(k for p in prefixes for k in store.list(p))
