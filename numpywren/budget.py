"""A budget that holds: ``max_cost=`` (USD) on a run.

Before the run: the plan's predicted cost (its tasks timed one after the other on the executor's
platform profile, numpywren.sim_params, priced by numpywren.pricing: PriceModel.predict) above
``max_cost`` refuses to start, naming the prediction; nothing is created.

During the run the executor keeps a tally (invocations, GB-seconds, S3 requests) and sends a call
only if what is spent plus the worst case of every call in flight plus this call's worst case stays
within ``max_cost``. A call's worst case is the function's timeout billed at its memory, its invocation
and its S3 requests; a re-sent call (the executor's re-invoke of a lost call, the scheduler's retry)
is a new call, and the earlier send stays charged at its worst case (it may still run and bill). When
a task's result arrives its reservation is replaced by what it cost (its worker's wall time, its tile
reads, its four PUTs: output tile, lease, result, done-marker). The first refusal stops the job
cleanly: no further call is sent, queued calls are cancelled, started ones drain, and the finished
output tiles stay for ``resume=True``. Only executors with a price model take ``max_cost``
(numpywren.executors.aws_lambda.LambdaExecutor); the others refuse it.

The tally is an upper bound of what AWS bills for the tasks: a worker's wall time excludes the
handler's own start (milliseconds), which the worst-case reservation covers while a call is in flight.
"""
from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass

from numpywren import pricing

#: PUTs of one tile task: its output tile, its lease, its result, its done-marker (numpywren.worker)
PUTS_PER_TASK = 4


class BudgetExceededError(RuntimeError):
    """A run would (or could) cost more than its ``max_cost``: refused before starting, or stopped."""


@dataclass(frozen=True)
class PriceModel:
    """What one call of an executor costs: Lambda's memory and architecture, the longest a call can be
    billed (the function's timeout), and the platform profile its task times are predicted with."""

    memory_mb: int
    arch: str
    max_call_seconds: float
    platform: object = "lambda"

    def call_cost(self, seconds: float, gets: int, puts: int) -> float:
        return pricing.estimate(max(0.0, seconds), 1, puts=puts, gets=gets, memory_mb=self.memory_mb,
                                arch=self.arch).total

    def worst_call(self, event: dict) -> float:
        """The most one send of ``event`` can cost: billed for the whole timeout, every tile it names read."""
        task = event.get("task") or {}
        gets = json.dumps([task.get("in"), task.get("params")]).count('"@"') + 2  # + lease check, result read
        return self.call_cost(self.max_call_seconds, gets, PUTS_PER_TASK)

    def predict(self, plan) -> float:
        """The plan's predicted cost: every task once, one after the other on one worker of the platform
        profile (its kernel rate, read/write bandwidth, request latency, per-call overhead: no overlap of
        I/O and compute, so rather high), billed at this memory, plus its invocations and requests."""
        from numpywren.sim_params import platform as get_platform

        profile = get_platform(self.platform)
        stats = plan.stats()
        tile = max((max(o.matrix.tile_shape) for o in plan.outputs), default=None)
        compute = sum(t.flops / (profile.gflops(t.op, self.memory_mb, tile) * 1e9) for t in plan.dag if t.flops)
        gets = stats["tiles_read"] + stats["tasks"]  # + the result read
        puts = PUTS_PER_TASK * stats["tasks"]
        seconds = (compute + stats["bytes_read"] / (profile.read_mb_s * 1e6)
                   + stats["bytes_written"] / (profile.write_mb_s * 1e6)
                   + (gets + puts) * profile.request_s + stats["tasks"] * profile.call_overhead_s)
        return pricing.estimate(seconds, stats["tasks"], puts=puts, gets=gets, memory_mb=self.memory_mb,
                                arch=self.arch).total


class Budget:
    """The running tally of one run against ``max_cost`` (thread-safe: the executor sends from a pool)."""

    def __init__(self, max_cost: float, model: PriceModel, predicted: float = 0.0):
        self.max_cost, self.model, self.predicted = float(max_cost), model, predicted
        self.spent = 0.0
        self.reserved: dict[str, float] = {}
        self.in_flight = 0.0
        self.tally = {"invocations": 0, "gb_seconds": 0.0, "gets": 0, "puts": 0, "refused": 0}
        self.stopped: str | None = None
        self._lock = threading.Lock()

    @property
    def committed(self) -> float:
        """Spent, plus the worst case of every call in flight."""
        return self.spent + self.in_flight

    def admit(self, event: dict) -> bool:
        """Reserve the worst case of sending ``event`` now; False (and the budget stops) if it could exceed."""
        key = event["result"]
        worst = self.model.worst_call(event)
        with self._lock:
            earlier = self.reserved.pop(key, None)
            if earlier is not None:  # a re-send: the earlier send may still run and bill
                self.in_flight -= earlier
                self.spent += earlier
            if self.stopped is not None or self.spent + self.in_flight + worst > self.max_cost:
                self.tally["refused"] += 1
                if self.stopped is None:
                    self.stopped = (f"a call whose worst case is ${worst:.6f} would take the run to "
                                    f"${self.spent + self.in_flight + worst:.6f} (spent ${self.spent:.6f}, "
                                    f"${self.in_flight:.6f} in flight), above max_cost=${self.max_cost:.6f}")
                return False
            self.reserved[key] = worst
            self.in_flight += worst
            self.tally["invocations"] += 1
            return True

    def settle(self, key: str, payload: dict | None) -> None:
        """A call ended: its reservation becomes what it cost, from its result ``payload`` (the handler's
        wall time and the task's tile reads), or stays at its worst case if the payload does not say."""
        stats = payload.get("stats") if isinstance(payload, dict) else None
        with self._lock:
            worst = self.reserved.pop(key, None)
            if worst is None:
                return
            self.in_flight -= worst
            if not isinstance(stats, dict) or "start" not in stats or "end" not in stats:
                self.spent += worst
                return
            value = payload.get("value")
            gets = (int(value.get("tiles_read", 0)) if isinstance(value, dict) else 0) + 1
            seconds = max(0.0, float(stats["end"]) - float(stats["start"]))
            self.spent += self.model.call_cost(seconds, gets, PUTS_PER_TASK)
            self.tally["gb_seconds"] += seconds * self.model.memory_mb / 1024
            self.tally["gets"] += gets
            self.tally["puts"] += PUTS_PER_TASK

    def refusal(self) -> BudgetExceededError:
        return BudgetExceededError(f"budget stop: {self.stopped}")

    def summary(self) -> dict:
        with self._lock:
            return {"max_cost": self.max_cost, "predicted": self.predicted, "spent": self.spent,
                    "in_flight": self.in_flight, **self.tally}


def price_model(executor) -> PriceModel:
    """The executor's price model; ValueError for an executor that has none (``max_cost`` needs one)."""
    get = getattr(executor, "price_model", None)
    if get is None:
        raise ValueError(f"max_cost needs an executor with a price model (LambdaExecutor); "
                         f"{type(executor).__name__} has none, so a budget could not hold: drop max_cost")
    return get()


def start(plan, executor, max_cost: float) -> Budget:
    """Check ``max_cost`` against the plan's predicted cost; the budget to run it under (before anything runs)."""
    if isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)) or not max_cost > 0:
        raise ValueError(f"max_cost must be a positive number of USD, got {max_cost!r}")
    model = price_model(executor)
    predicted = model.predict(plan)
    if predicted > max_cost:
        raise BudgetExceededError(
            f"{plan.desc}: predicted cost ${predicted:.6f} ({len(plan.dag)} tasks at {model.memory_mb} MB "
            f"{model.arch}, platform profile {getattr(model.platform, 'name', model.platform)}) is above "
            f"max_cost=${max_cost:.6f}: nothing was started")
    return Budget(max_cost, model, predicted)


def usd(text: str) -> float:
    """argparse type of ``--max-cost``: a positive number of US dollars."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of USD, got {text!r}")
    return value


def add_max_cost(parser: argparse.ArgumentParser) -> None:
    """``--max-cost USD``, the ``max_cost`` run option, for every CLI command that runs a job."""
    parser.add_argument("--max-cost", type=usd, default=None, metavar="USD",
                        help="refuse to start if the predicted cost is above USD, and stop the run cleanly "
                             "(resume later) before it could spend more; needs an executor with a price model "
                             "(Lambda)")

