"""``numpywren calibrate`` against the fake Lambda endpoint (tests/test_lambda.py) and moto's S3: it recovers
an injected invoke latency and a throttled kernel within 20%, prints its cost ceiling first and needs
``yes``, leaves nothing behind, and writes a profile that ``predict --platform FILE`` uses.

The throttled kernel (and S3's bandwidth and latency) are injected without a timing margin: the fake's
workers run in a ``ThrottledSandbox`` whose clock (the one calibration's worker-side measurements read,
``numpywren.calibrate.clock``) advances only in its kernels and transfers, by what the injected rates
make them take. What calibrate recovers is then checked exactly, whatever the machine's load."""
from __future__ import annotations

import os
import threading

import pytest
from test_lambda import _not_on_lambda, fake_lambda, lambda_executor  # noqa: F401 - fixtures

from numpywren import calibrate as cal
from numpywren import pricing
from numpywren.cli import main as numpywren_main
from numpywren.sim_params import load_profile
from numpywren.simulate import predict


def _objects(store) -> list[str]:
    return [k for k in store.list("jobs/") if "calibrate-" in k]


class QueuedWall:
    """A virtual epoch clock for calibrate's invoke-latency measurement that only the fake endpoint's queue
    moves: each event waits ``delay`` seconds of it (not of the machine's, whose load would add its own)."""

    def __init__(self, monkeypatch, fake, delay: float):
        import threading

        self.now, self.lock = 1.7e9, threading.Lock()
        monkeypatch.setattr(cal, "wall", self)
        run = fake._run

        def queued(event, *args):
            with self.lock:
                self.now += delay
            return run(event, *args)

        monkeypatch.setattr(fake, "_run", queued)

    def __call__(self) -> float:
        with self.lock:
            return self.now


def test_calibrate_recovers_an_injected_invoke_latency_and_writes_a_profile(s3_store, fake_lambda, tmp_path,
                                                                            capsys, monkeypatch):
    fake = fake_lambda(memory=1769)
    QueuedWall(monkeypatch, fake, 0.5)
    lines: list[str] = []
    with lambda_executor(fake, s3_store) as ex:
        with pytest.raises(ValueError, match=r"would cost up to \$0\.\d+: pass yes=True"):
            cal.calibrate(ex, tiles=(128,), warm=2, concurrency=2, log=lines.append)
        assert fake.events == []  # nothing ran without yes
        ceiling = cal.cost_ceiling(cal.plan_calls((128,), 2, 2), 1769, "x86_64")
        assert f"at most ${ceiling:.4f}" in lines[0] and ceiling < 1.0
        profile = cal.calibrate(ex, tiles=(128,), warm=2, concurrency=2, io_mb=1, yes=True,
                                out=tmp_path / "mine.json", log=lines.append)
    assert len(fake.events) == cal.plan_calls((128,), 2, 2)
    assert profile["platform"]["invoke_s"] == pytest.approx(0.5, rel=1e-6)  # the queue delay, exactly
    assert profile["measured"]["invoke"]["cold_s"] >= 0.5  # the first call also opens the worker's store
    assert (profile["memory_mb"], profile["arch"], profile["runtime"]) == (1769, "x86_64", "python3.13")
    assert profile["region"] == "us-east-1" and profile["date"]
    assert _objects(s3_store) == []  # every calibration object deleted
    # the profile drives predictions, from Python and from the CLI
    mine = load_profile(tmp_path / "mine.json")
    assert mine.invoke_s == profile["platform"]["invoke_s"] and mine.memory_mb == 1769
    p = predict("matmul", (4096,), 16, 1024, platform=str(tmp_path / "mine.json"))
    assert p.platform == "calibrated-numpywren-test" and p.cost.total > 0
    assert numpywren_main(["predict", "matmul", "4096", "--workers", "16", "--tile", "1024",
                           "--platform", str(tmp_path / "mine.json")]) == 0
    assert "calibrated-numpywren-test" in capsys.readouterr().out


class ThrottledSandbox:
    """A throttled Lambda sandbox as calibration's measurements see it. Time passes, on a virtual clock of
    each worker thread, only in its GEMM kernels (run for real), at ``gflops`` per core times the CPU
    share Lambda gives ``memory_mb`` (memory / 1,769 MB), and in its S3 requests: ``request_s`` plus the
    bytes at ``read_mb_s`` / ``write_mb_s``."""

    def __init__(self, monkeypatch, gflops: float, memory_mb: int, read_mb_s: float, write_mb_s: float,
                 request_s: float):
        from blocks import blas
        from numpywren.deploy import MB_PER_VCPU
        from numpywren.storage.s3 import S3Store

        self.share = memory_mb / MB_PER_VCPU
        self.request_s, self._local = request_s, threading.local()
        gemm, get, put = blas.gemm, S3Store.get, S3Store.put

        def throttled_gemm(a, b, *args, **kwargs):
            out = gemm(a, b, *args, **kwargs)
            self._spend(2.0 * a.shape[0] * a.shape[1] * b.shape[1] / (gflops * self.share * 1e9))
            return out

        def slow_get(store, key, *args, **kwargs):
            data = get(store, key, *args, **kwargs)
            self._spend(request_s + len(data) / (read_mb_s * 1e6))
            return data

        def slow_put(store, key, data, *args, **kwargs):
            put(store, key, data, *args, **kwargs)
            self._spend(request_s + len(data) / (write_mb_s * 1e6))

        monkeypatch.setattr(blas, "gemm", throttled_gemm)
        monkeypatch.setattr(S3Store, "get", slow_get)
        monkeypatch.setattr(S3Store, "put", slow_put)
        monkeypatch.setattr(cal, "clock", self.clock)

    def clock(self) -> float:
        return getattr(self._local, "now", 0.0)

    def _spend(self, seconds: float) -> None:
        self._local.now = self.clock() + seconds


def test_calibrate_recovers_a_throttled_kernel_and_s3_rates_exactly(s3_store, fake_lambda, tmp_path, monkeypatch):
    """Half a vCPU (885 MB) at 40 GFLOPS per core, S3 at 90 / 70 MB/s with 30 ms requests: the profile
    says so (the kernel rate exactly, per worker and per core; the MB/s less the 1 KB of the latency
    probe), and predictions from it run GEMM tiles at the injected throttled rate."""
    fake = fake_lambda(memory=885)
    sandbox = ThrottledSandbox(monkeypatch, gflops=40.0, memory_mb=885, read_mb_s=90.0, write_mb_s=70.0,
                               request_s=0.03)
    with lambda_executor(fake, s3_store) as ex:
        profile = cal.calibrate(ex, tiles=(64, 128), reps=3, warm=1, concurrency=2, io_mb=1, yes=True,
                                out=tmp_path / "throttled.json")
    throttled = 40.0 * sandbox.share
    assert profile["measured"]["kernel_gflops"] == {"64": pytest.approx(throttled, rel=1e-9),
                                                    "128": pytest.approx(throttled, rel=1e-9)}
    assert profile["platform"]["gflops_per_core"]["gemm"] == {"64": pytest.approx(40.0, rel=1e-9),
                                                              "128": pytest.approx(40.0, rel=1e-9)}
    probe = 1024 / 90e6  # the latency probe reads a 1 KB object
    assert profile["platform"]["request_s"] == pytest.approx(0.03 + probe, rel=1e-9)
    size = profile["measured"]["io_one"]["bytes"]
    assert profile["platform"]["read_mb_s"] == pytest.approx(90.0 * size / (size - 1024), rel=1e-9)
    assert profile["platform"]["write_mb_s"] == pytest.approx(size / (size / 70e6 - probe) / 1e6, rel=1e-9)
    for rate, injected in ((profile["platform"]["read_mb_s"], 90.0), (profile["platform"]["write_mb_s"], 70.0)):
        assert rate == pytest.approx(injected, rel=0.01)
    mine = load_profile(tmp_path / "throttled.json")
    assert mine.gflops("gemm", 885, 128) == pytest.approx(throttled, rel=1e-9)
    assert _objects(s3_store) == []


@pytest.mark.skipif(not os.environ.get("NUMPYWREN_TIMING_TESTS"),
                    reason="compares wall-clock GFLOPS of two runs: on a loaded 2-core box the ratio wanders "
                           "(0.24-0.6 seen at load 10); set NUMPYWREN_TIMING_TESTS=1 on a quiet machine")
def test_calibrate_recovers_a_throttled_kernel(s3_store, fake_lambda):
    """Half a core (a CPU quota, as Lambda gives at 885 MB): calibrate's GFLOPS are half the same kernel's
    on a whole core, measured by the same function on an unthrottled fake."""
    whole, half = fake_lambda(cpu_share=1.0), fake_lambda(cpu_share=0.5)
    with lambda_executor(whole, s3_store) as ex:
        reference = sorted(ex.call_async(cal.kernel_gflops, 2048, 3).result())[1]
    with lambda_executor(half, s3_store) as ex:
        profile = cal.calibrate(ex, tiles=(2048,), reps=3, warm=1, concurrency=1, io_mb=1, yes=True)
    measured = profile["measured"]["kernel_gflops"]["2048"]
    assert measured / reference == pytest.approx(0.5, rel=0.2)
    assert _objects(s3_store) == []


def test_calibrate_cleans_up_after_an_error_and_on_ctrl_c(s3_store, fake_lambda):
    fake = fake_lambda()
    with lambda_executor(fake, s3_store) as ex:
        send = ex.call_async

        def interrupted(fn, *args, **kwargs):  # Ctrl-C while the driver waits, after the I/O objects were made
            if fn is cal.request_latency:
                raise KeyboardInterrupt
            return send(fn, *args, **kwargs)

        ex.call_async = interrupted
        with pytest.raises(KeyboardInterrupt):
            cal.calibrate(ex, tiles=(64,), warm=1, concurrency=1, io_mb=1, yes=True)
        assert _objects(s3_store) == []
        ex.call_async = send
        with pytest.raises(ValueError, match="io_mb"):  # a worker-side failure: store_io of nothing
            cal.calibrate(ex, tiles=(64,), warm=1, concurrency=1, io_mb=1e-9, yes=True)
    assert _objects(s3_store) == []


def test_the_cost_ceiling_is_the_list_price_arithmetic():
    calls = cal.plan_calls()
    assert calls == 1 + 5 + 3 + 1 + 4 + 1
    gb_s = calls * cal.CALL_SECONDS * 3008 / 1024
    want = (gb_s * pricing.LAMBDA_GB_SECOND["x86_64"] + calls * pricing.LAMBDA_REQUEST
            + 2 * calls * pricing.S3_PUT + (100 + 2 * calls) * pricing.S3_GET)
    assert cal.cost_ceiling(calls, 3008, "x86_64") == pytest.approx(want, rel=1e-12) and want < 1.0
