"""Local worker processes that behave like Lambda: separate interpreters, no shared memory.

Each worker is ``python -m numpywren.worker.process``; the driver talks to
it only through small JSON events on a pipe, and all data goes through the store.
A driver thread per worker feeds it events, and notices when its process dies or
overruns the task timeout; the call's future then fails with WorkerDiedError
instead of hanging, and a fresh process takes the worker's place.
"""
from __future__ import annotations

import json
import os
import queue
import resource
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError

from numpywren import protocol
from numpywren.executors.base import Executor, check_options
from numpywren.executors.blas import BLAS_THREAD_VARS
from numpywren.futures import WorkerDiedError
from numpywren.memory import RUNTIME_MB
from numpywren.storage import Store
from numpywren.worker.lone import THREADS_ENV as LONE_THREADS_ENV

SHUTDOWN_GRACE_SECONDS = 5.0  # how long shutdown lets running calls finish before killing them
STOP_SECONDS = 10.0  # how long stop waits for a killed call's slot to record its end
#: A call whose process used less than this share of a core since the call started is stalled (sleeping,
#: hung: a backup could win). At or above it, the call computes, as fast as a backup on the same cores would
#: (a process that computes gets a tenth of a core unless the load is ten times the cores), and a backup
#: cannot finish first.
STALLED_CPU_SHARE = 0.1
MIN_MEMORY_MB = 2 * RUNTIME_MB  # below, a worker's imports may fail (OpenBLAS hangs when its buffers do not fit)


class LocalExecutor(Executor):
    """``workers`` local processes, each limited to ``blas_threads`` BLAS threads.

    ``task_timeout`` (seconds, None for none) plays Lambda's function timeout:
    a call running longer is killed and reported as failed. Like Lambda's, it
    counts from the start of the call, not of the worker process (its imports). ``faults`` is a
    fault-injection spec passed to the workers as ``$NUMPYWREN_FAULTS`` (see
    :mod:`numpywren.worker.faults`); ``env`` adds other variables to their environment.
    ``memory_mb`` limits each worker process's address space (RLIMIT_AS, Linux):
    a call that needs more fails with MemoryError, which the scheduler does not
    retry, and a plan whose largest task needs more is refused before it runs
    (numpywren.memory).

    :meth:`stop` kills the processes running calls of a run that ended (a beaten backup), so nothing
    is written after the run returns; the slot starts a fresh process for its next call. Workers share
    this machine's cores, so a backup of a call whose process computes cannot finish first
    (:meth:`backup_could_win`): only a stalled call (sleeping, hung) is worth one.
    """

    reports_completions = True  # each slot thread knows when its worker answered
    stops_calls = True          # stop kills the process running a call

    def __init__(self, workers: int | None = None, store: "Store | str | None" = None,
                 blas_threads: int = 1, task_timeout: float | None = None,
                 env: dict[str, str] | None = None, faults: str | None = None, memory_mb: int | None = None):
        super().__init__(store)
        n = workers if workers is not None else (os.cpu_count() or 1)
        check_options(n, blas_threads, task_timeout)
        if memory_mb is not None and memory_mb < MIN_MEMORY_MB:
            raise ValueError(f"memory_mb must be at least {MIN_MEMORY_MB} (a worker's runtime alone takes "
                             f"about {RUNTIME_MB} MB of address space), got {memory_mb}")
        self.blas_threads = blas_threads
        self.task_timeout = task_timeout
        self.worker_memory_mb = memory_mb
        self._env = {**os.environ, **{v: str(blas_threads) for v in BLAS_THREAD_VARS},
                     LONE_THREADS_ENV: str(min(os.cpu_count() or 1, n * blas_threads)),  # numpywren.worker.lone
                     "PYTHONUNBUFFERED": "1", **(env or {})}
        if faults is not None:
            from numpywren.worker.faults import ENV_VAR, parse

            parse(faults)  # a typo should fail here, not silently in every worker
            self._env[ENV_VAR] = faults
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()           # guards each slot's current call and the stopped callsets
        self._stopped: set[str] = set()          # callsets whose calls must not start any more (stop)
        self.wakeup = threading.Event()  # futures.wait sleeps on it instead of a full poll interval
        self._closed = False
        self._slots = [_WorkerSlot(i, self) for i in range(n)]
        for slot in self._slots:
            slot.start()

    @property
    def workers(self) -> int:
        return len(self._slots)

    def worker_pids(self) -> list[int | None]:
        """Process ids of the current worker processes (for tests and monitoring)."""
        return [s.proc.pid if s.proc is not None else None for s in self._slots]

    def busy_worker_pids(self) -> list[int]:
        """Process ids of the workers that are running a call right now."""
        return [s.proc.pid for s in self._slots if s.busy and s.proc is not None]

    def _drop_queued(self, chosen) -> int:
        keep, dropped = [], []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            (dropped if event is not None and chosen(event) else keep).append(event)
        for event in keep:
            self._events.put(event)
        for event in dropped:
            self.record_failure(event, CancelledError(
                f"call {event['callset']}/{event['call']} was cancelled before it started"))
        return len(dropped)

    def stop(self, callsets) -> bool:
        """Cancel the queued calls of ``callsets``, kill the processes running their calls and wait until
        each slot has recorded the end (a fresh process takes the next call): True once none of them can
        write anything (False if a slot did not answer within ``STOP_SECONDS``)."""
        callsets = set(callsets)
        with self._lock:
            self._stopped |= callsets
            running = [(slot, slot.event) for slot in self._slots
                       if slot.event is not None and slot.event["callset"] in callsets]
            for slot, _ in running:
                slot.stopping = True
        self._drop_queued(lambda event: event["callset"] in callsets)
        deadline = time.monotonic() + STOP_SECONDS
        return all(slot.wait_until_done(event, deadline) for slot, event in running)

    def backup_could_win(self, result_key: str) -> bool:
        """False while the call's process computes: it has used at least ``STALLED_CPU_SHARE`` of a core since
        the call started. A backup would run on the same cores, no faster: it could only take CPU from the
        call it backs up."""
        share = self._cpu_share(result_key)
        return share is None or share < STALLED_CPU_SHARE

    def stalled(self, result_key: str) -> bool:
        """True if the call's process has used less than ``STALLED_CPU_SHARE`` of a core since the call started
        (asleep, hung on a lock): a backup is its only way on, even for a task the model calls long."""
        share = self._cpu_share(result_key)
        return share is not None and share < STALLED_CPU_SHARE

    def _cpu_share(self, result_key: str) -> float | None:
        """The share of a core the process running this call has used since the call started (None: unknown)."""
        with self._lock:
            slot = next((s for s in self._slots if s.event is not None and s.event["result"] == result_key), None)
            if slot is None or slot.started is None or slot.proc is None:
                return None
            pid, (since, cpu_before) = slot.proc.pid, slot.started
        cpu, elapsed = _cpu_seconds(pid), time.monotonic() - since
        if cpu is None or cpu_before is None or elapsed <= 0:
            return None
        return (cpu - cpu_before) / elapsed

    def _invoke(self, event: dict) -> None:
        if self._closed:
            raise RuntimeError("this executor has been shut down")
        self._events.put(event)

    def shutdown(self) -> None:
        """Stop the workers: queued calls fail as cancelled at once, running calls get
        ``SHUTDOWN_GRACE_SECONDS`` to finish, then their processes are killed (their
        futures fail with WorkerDiedError). Leaving a ``with`` block, or Ctrl-C in it, does this.
        """
        if self._closed:
            return
        self._closed = True
        super().shutdown()
        self._drop_queued(lambda event: True)
        for _ in self._slots:
            self._events.put(None)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for slot in self._slots:
            slot.join(timeout=max(0.0, deadline - time.monotonic()))
        for slot in self._slots:
            slot.stop_process()
        for slot in self._slots:
            slot.join(timeout=1.0)  # a slot whose process was killed records the failure, then ends

    def __del__(self):
        try:
            self.shutdown()
        except Exception:  # noqa: BLE001 - interpreter teardown
            pass


class _WorkerSlot(threading.Thread):
    """Owns one worker process and feeds it events from the executor's queue."""

    def __init__(self, index: int, executor: LocalExecutor):
        super().__init__(name=f"numpywren-worker-{index}", daemon=True)
        self.executor = executor
        self.proc: subprocess.Popen | None = None
        self.busy = False
        self.event: dict | None = None    # the call this slot runs (under the executor's lock)
        self.started: tuple[float, float | None] | None = None  # (monotonic, process CPU s) when it started
        self.stopping = False             # stop() asked to end the current call
        self._done = threading.Condition(executor._lock)
        self._spawn()

    def _spawn(self) -> None:
        self._received = b""  # status bytes read from the process, not yet a whole line
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "numpywren.worker.process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.executor._env, text=True, bufsize=1)
        memory_mb = self.executor.worker_memory_mb
        if memory_mb is not None:  # set from here (prlimit), not in the child: preexec_fn is unsafe with threads
            limit = int(memory_mb) * 2 ** 20
            resource.prlimit(self.proc.pid, resource.RLIMIT_AS, (limit, limit))

    def stop_process(self) -> None:
        """End the process: at once if it is running a call, else by closing its event channel."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if self.busy:
            proc.kill()
        try:
            proc.stdin.close()
            proc.wait(timeout=2)
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait()

    def run(self) -> None:
        events = self.executor._events
        while True:
            event = events.get()
            if event is None:
                return
            with self._done:
                self.event, self.started = event, None
                self.stopping = event["callset"] in self.executor._stopped
            self.busy = True
            try:
                self._run_one(event)
            finally:
                self.busy = False
                with self._done:
                    self.event, self.started, self.stopping = None, None, False
                    self._done.notify_all()
                self.executor.wakeup.set()  # the outcome is in the store (or recorded) by now
                self.executor._call_ended(event)

    def wait_until_done(self, event: dict, deadline: float) -> bool:
        """Wait until this slot no longer runs ``event`` (at most until ``deadline``); True if it does not."""
        with self._done:
            while self.event is event:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return True

    def _run_one(self, event: dict) -> None:
        timeout = self.executor.task_timeout
        if self.executor._closed:  # shutting down: never start a process for a call
            return self.executor.record_failure(event, CancelledError(
                f"call {event['callset']}/{event['call']} was cancelled: the executor shut down"))
        if self.stopping:  # its run ended (stop) before this slot took it
            return self.executor.record_failure(event, CancelledError(
                f"call {event['callset']}/{event['call']} was cancelled: its run ended"))
        if self.proc is None or self.proc.poll() is not None:
            self._spawn()
        if timeout is not None:
            event = protocol.with_timeout(event, timeout)  # the worker counts it from the call's start
        try:
            self.proc.stdin.write(json.dumps(event) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process died; noticed below
        # As on Lambda, a (re)starting process's imports do not count against the task timeout:
        # the clock starts when the worker says it started the call.
        deadline = None
        while True:
            if self.stopping:   # its run ended: kill the call, so it writes nothing more
                self.proc.kill()
                self.proc.wait()
                return self._fail(event, f"call {event['callset']}/{event['call']} was stopped: its run ended")
            status = self._read_status(0.1)
            if status is not None and status.get("started"):
                deadline = None if timeout is None else time.monotonic() + timeout
                with self._done:
                    self.started = (time.monotonic(), _cpu_seconds(self.proc.pid))
                continue
            if status is not None:
                if "error" in status:  # the worker could not write the outcome (store failure)
                    return self._fail(event, f"call {event['callset']}/{event['call']}: the worker could "
                                             f"not write its result: {status['error']}", keep_process=True)
                return  # the worker wrote the outcome to the store before answering
            if self.proc.poll() is not None:
                code = self.proc.returncode
                return self._fail(event, f"worker process {self.proc.pid} died (exit code {code}) "
                                         f"while running call {event['callset']}/{event['call']}")
            if deadline is not None and time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                return self._fail(event, f"call {event['callset']}/{event['call']} exceeded the task "
                                         f"timeout of {timeout} s and its worker was killed")

    def _read_status(self, wait: float) -> dict | None:
        """The worker's next status line, or None if none came within ``wait`` s.

        Lines are split here, from the raw pipe: a buffered readline could swallow a second
        line ("started" and the outcome together) where select no longer sees it.
        """
        while b"\n" not in self._received:
            ready, _, _ = select.select([self.proc.stdout], [], [], wait)
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:  # end of file: the process is exiting (poll() tells the caller)
                try:
                    self.proc.wait(wait)
                except subprocess.TimeoutExpired:
                    pass
                return None
            self._received += chunk
        line, _, self._received = self._received.partition(b"\n")
        return json.loads(line)

    def _fail(self, event: dict, message: str, keep_process: bool = False) -> None:
        """Record the failure under the call's result key (unless a result got there first)."""
        if not keep_process:
            self.proc = None
        self.executor.record_failure(event, WorkerDiedError(message), worker="local")


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used (Linux /proc; None elsewhere or once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None

