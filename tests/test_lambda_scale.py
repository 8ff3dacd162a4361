"""Lambda at scale, without AWS (issue 17): completion discovery by done-markers, stale events,
Lambda's concurrency grant, timeouts from a task's start, concurrent argument uploads."""
# ruff: noqa: F811
from __future__ import annotations

import json
import uuid
import logging
import threading
import time

import numpy as np
import pytest
from test_lambda import (FakeContext, _gemm_task, _not_on_lambda, aws, fake_lambda, lambda_executor,  # noqa: F401
                         rel_err)

from numpywren import protocol
from numpywren.worker.lambda_handler import handler
from numpywren.storage import open_store


def _count_requests(store) -> list[tuple[str, dict, int]]:
    """Record (operation, params, keys returned) of every S3 request the store's client makes."""
    seen: list[tuple[str, dict, int]] = []
    params_of: dict[int, dict] = {}

    def before(params, model, context, **kw):
        params_of[id(context)] = dict(params)

    def after(http_response, parsed, model, context, **kw):
        seen.append((model.name, params_of.pop(id(context), {}), len(parsed.get("Contents", ()) or ())))

    events = store.client.meta.events
    events.register("provide-client-params.s3.*", before, unique_id="count-before")
    events.register("after-call.s3.*", after, unique_id="count-after")
    return seen


# -- (3) completion discovery ------------------------------------------------------------------
def test_completions_come_from_done_markers_listed_from_the_newest(s3_store, fake_lambda):
    """Calls end one after another: every listing returns what is new (plus the newest marker seen)."""
    fake = fake_lambda(run=False)
    requests = _count_requests(s3_store)
    n = 30
    with lambda_executor(fake, s3_store, relist_seconds=0.0, sweep_seconds=10**5) as ex:
        futures = ex.map(pow, range(n), extra_args=(2,))
        fake.wait_for(n)
        events = {e["result"]: e for e in fake.events}
        for i, future in enumerate(futures):
            handler(events[future.result_key], FakeContext(30.0))
            assert future.result(timeout=30) == i * i
        stats = ex.stats.copy()
        during = list(requests)
    lists = [(p, keys) for op, p, keys in during if op == "ListObjectsV2"]
    assert lists, "completions were never listed"
    assert all("/results/" not in p.get("Prefix", "") for p, _ in lists)  # nobody re-lists results/
    marker_lists = [keys for p, keys in lists if "/done/" in p.get("Prefix", "")]
    assert len(marker_lists) == len(lists)
    # listings grow with completions, not with their square (re-listing all would return n*(n+1)/2 keys)
    assert max(marker_lists) <= 3 and sum(marker_lists) <= n + len(marker_lists)
    assert stats["found_without_marker"] == 0 and stats["invocations"] == n
    assert not any(k.startswith(protocol.done_prefix(ex.session)) for k in s3_store.list("jobs/"))  # cleaned


def test_completions_under_concurrency_are_all_found(s3_store, fake_lambda):
    fake = fake_lambda()
    with lambda_executor(fake, s3_store, max_concurrency=4, sweep_seconds=10**5) as ex:
        futures = ex.map(pow, range(40), extra_args=(2,))
        assert ex.get_all_results(futures, timeout=120) == [i * i for i in range(40)]
        assert ex.stats["found_without_marker"] == 0 and ex.stats["invocations"] == 40


def test_cancel_drops_the_calls_not_yet_invoked(s3_store, fake_lambda):
    """After a failed job the scheduler cancels its queued calls: none of them may reach Lambda afterwards."""
    import concurrent.futures

    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store, max_concurrency=2, sweep_seconds=10**5) as ex:
        futures = ex.map(pow, range(6), extra_args=(2,))
        fake.wait_for(2)
        assert futures[5].cancel()               # one call by its future
        assert ex.cancel([futures[0].callset]) == 3   # the rest of the queue by callset
        for future in futures[2:]:
            with pytest.raises(concurrent.futures.CancelledError, match="cancelled before it was invoked"):
                future.result(timeout=30)
        for event in list(fake.events):          # the two invoked calls still run and report
            handler(event, FakeContext(30.0))
        assert [f.result(timeout=30) for f in futures[:2]] == [0, 1]
        assert len(fake.events) == 2 and ex.stats["invocations"] == 2 and ex.pending() == 0


def test_a_late_marker_within_the_relist_window_is_found(s3_store, fake_lambda):
    """A worker whose clock is behind writes a marker that sorts before the newest one seen."""
    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store, relist_seconds=30.0, sweep_seconds=10**5) as ex:
        first, second = ex.call_async(pow, 2, 3), ex.call_async(pow, 3, 3)
        fake.wait_for(2)
        events = {e["result"]: e for e in fake.events}
        handler(events[first.result_key], FakeContext(30.0))
        assert first.result(timeout=30) == 8
        late = dict(events[second.result_key], done=False)  # run it, then write its marker 20 s "early"
        handler(late, FakeContext(30.0))
        s3_store.put(protocol.done_key(late["callset"], late["call"], time.time() - 20), b"")
        assert second.result(timeout=30) == 27
        assert ex.stats["found_without_marker"] == 0


def test_a_marker_missed_by_the_listings_delays_but_never_loses_a_call(s3_store, fake_lambda):
    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store, relist_seconds=0.0, sweep_seconds=0.3) as ex:
        first, second = ex.call_async(pow, 2, 3), ex.call_async(pow, 3, 3)
        fake.wait_for(2)
        events = {e["result"]: e for e in fake.events}
        handler(events[first.result_key], FakeContext(30.0))
        assert first.result(timeout=120) == 8
        # the first call's result may be looked at directly before a listing shows its marker (a loaded
        # machine, a sweep every 0.3 s): count from here, where only the second call is in flight
        found_before = ex.stats["found_without_marker"]
        with ex._lock:  # however long the first call took on a loaded machine, look at the second at once
            ex._typical_seconds = 0.0
        handler(dict(events[second.result_key], done=False), FakeContext(30.0))  # result, no marker
        assert second.result(timeout=120) == 27
        assert ex.stats["found_without_marker"] == found_before + 1 and ex.stats["reinvocations"] == 0


def test_a_call_is_looked_at_directly_only_once_it_runs_long_for_its_kind(s3_store, fake_lambda):
    """The direct look (a HEAD per call) is for missed markers: not for every call of a job of long tasks."""
    from numpywren.executors.aws_lambda import SWEEP_FACTOR

    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store, sweep_seconds=30, task_timeout=10**4, event_age=10**4) as ex:
        looks = {}
        for typical in (0.0, 5.0, 100.0):  # what the completed calls took on average
            ex._typical_seconds = typical
            future = ex.call_async(pow, 2, 2)
            while True:
                with ex._lock:
                    call = ex._inflight.get((future.callset, future.call))
                if call is not None and call.accepted_at is not None:
                    break
                time.sleep(0.01)
            looks[typical] = call.check_at - call.accepted_at
        # calls invoked before the first completions were looked at after 30 s: postponed, no request
        first = next(c for c in ex._inflight.values() if c.check_at - c.accepted_at == 30.0)
        ex._typical_seconds = 200.0
        ex._check(first, first.accepted_at + 31.0)
        assert first.check_at - first.accepted_at == pytest.approx(SWEEP_FACTOR * 200.0)
        assert ex.stats["checks"] == 0
        ex._typical_seconds = 10**5  # never later than the earliest time it could be overdue
        ex._check(first, first.accepted_at + 31.0)
        assert first.check_at - first.accepted_at == pytest.approx(10**4)
    assert looks == {0.0: 30.0, 5.0: 30.0, 100.0: pytest.approx(SWEEP_FACTOR * 100.0)}


# -- (5) orphan events ---------------------------------------------------------------------------
def test_every_invoke_carries_a_not_after_time(s3_store, fake_lambda):
    fake = fake_lambda(run=False)
    task, _C, _ = _gemm_task(s3_store, np.random.default_rng(5))
    with lambda_executor(fake, s3_store, event_age=120) as ex:
        before = time.time()
        ex.submit_tasks([task.spec("run-x", 1, 60.0)])
        ex.call_async(pow, 2, 2)
        fake.wait_for(2)
        after = time.time()
    for raw in fake.raw:
        event = json.loads(raw)
        assert before + 120 - 1 <= event["not_after"] <= after + 120 + 1
        assert event["done"] is True
    assert json.loads(fake.raw[0])["task"]["run"] == "run-x" or json.loads(fake.raw[1])["task"]["run"] == "run-x"


@pytest.mark.parametrize("kind", ["tile", "call"])
def test_a_stale_event_runs_nothing_and_writes_nothing(kind, s3_store, fake_lambda, monkeypatch):
    monkeypatch.setenv("NUMPYWREN_STORE", s3_store.url)
    fake = fake_lambda(run=False)
    task, C, want = _gemm_task(s3_store, np.random.default_rng(6))
    with lambda_executor(fake, s3_store) as ex:
        future = (ex.submit_tasks([task.spec("run-y", 1, 60.0)])[0] if kind == "tile"
                  else ex.call_async(C.put_block, 1, 0, np.ones((48, 32))))
        fake.wait_for(1)
        event = json.loads(fake.raw[0])
        before = sorted(s3_store.list(""))
        stale = dict(event, not_after=time.time() - 1.0)  # Lambda kept it queued past its time
        status = handler(stale, FakeContext(30.0))
        assert status["ok"] is False and status["stale"] is True
        assert sorted(s3_store.list("")) == before  # no lease, no tile, no result, no marker
        assert not future.done() and not C.block_exists(1, 0)
        assert handler(event, FakeContext(30.0))["ok"] is True  # the same event on time runs
        future.result(timeout=30)
    got = C.get_block(1, 0)
    assert rel_err(got, want if kind == "tile" else np.ones((48, 32))) < 1e-13


def test_not_after_must_be_a_number():
    event = protocol.call_event("s3://b/p", "s/00000", "00000", "jobs/s/00000/func-x.pkl",
                                "jobs/s/00000/args/00000.pkl", not_after=1.0)
    protocol.validate_event(event)
    with pytest.raises(ValueError, match="not_after"):
        protocol.validate_event(dict(event, not_after="tomorrow"))


# -- (4) concurrency truth and timeouts from the start ------------------------------------------
@pytest.mark.parametrize("reserved, unreserved, want", [(None, 3, 3), (2, 1000, 2), (None, 5000, 1000)])
def test_max_concurrency_is_capped_to_what_lambda_grants(reserved, unreserved, want, s3_store, fake_lambda,
                                                         caplog):
    fake = fake_lambda(reserved=reserved, unreserved=unreserved)
    with caplog.at_level(logging.WARNING, logger="numpywren.executors.aws_lambda"):
        with lambda_executor(fake, s3_store, max_concurrency=1000) as ex:
            assert ex.workers == want
            if want < 1000:
                futures = ex.map(time.sleep, [0.3] * (want + 2))
                ex.get_all_results(futures, timeout=60)
                spans = sorted((f.stats["start"], f.stats["end"]) for f in futures)
                assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) <= want
    warned = [r.getMessage() for r in caplog.records if "max_concurrency=1000 exceeds" in r.getMessage()]
    assert len(warned) == (1 if want < 1000 else 0)


def test_a_function_with_zero_reserved_concurrency_is_refused(s3_store, fake_lambda):
    with pytest.raises(ValueError, match="can run no call"):
        lambda_executor(fake_lambda(reserved=0), s3_store)


def test_time_in_lambdas_queue_does_not_count_against_task_timeout(s3_store, fake_lambda):
    """Events wait 4 s in Lambda's queue; a tile task may run 2 s from its lease: no re-invoke."""
    fake = fake_lambda(queue_delay=4.0)
    task, C, want = _gemm_task(s3_store, np.random.default_rng(7))
    with lambda_executor(fake, s3_store, task_timeout=2.0, event_age=60, sweep_seconds=0.5) as ex:
        stats = ex.submit_tasks([task.spec("run-q", 1, 60.0)])[0].result(timeout=60)
        assert ex.stats["reinvocations"] == 0 and ex.stats["checks"] >= 1  # looked while it was queued
    assert len(fake.events) == 1 and stats["flops"] == task.flops
    assert rel_err(C.get_block(1, 0), want) < 1e-13


def test_a_tile_task_never_started_is_reinvoked_once_its_event_is_stale(s3_store, fake_lambda):
    fake = fake_lambda(drop_first=True)
    task, C, want = _gemm_task(s3_store, np.random.default_rng(8))
    with lambda_executor(fake, s3_store, task_timeout=600, event_age=5, stale_grace=0.5) as ex:
        stats = ex.submit_tasks([task.spec("run-l", 1, 60.0)])[0].result(timeout=60)
        assert ex.stats["reinvocations"] == 1
    assert stats["flops"] == task.flops and rel_err(C.get_block(1, 0), want) < 1e-13


# -- (2) submission -----------------------------------------------------------------------------
def test_map_uploads_arguments_off_the_main_thread_in_bundles(s3_store, fake_lambda, monkeypatch):
    from numpywren.executors import lambda_invoke
    from numpywren.executors.aws_lambda import SOLO_BYTES

    monkeypatch.setattr(lambda_invoke, "BUNDLE_CALLS", 4)  # (64 by default) few calls, several bundles
    fake = fake_lambda()
    puts: list[tuple[str, str]] = []
    real_put = type(s3_store).put

    def put(self, key, data):
        if "/args/" in key:
            puts.append((threading.current_thread().name, key.rpartition("/args/")[2]))
        return real_put(self, key, data)

    monkeypatch.setattr(type(s3_store), "put", put)
    with lambda_executor(fake, s3_store, max_concurrency=4) as ex:
        items = [np.full(3, i, dtype=float) for i in range(10)] + [np.ones(SOLO_BYTES // 8 + 1)]
        futures = ex.map(np.sum, items)
        for item in items:
            item[:] = -1.0  # changed after map returned: the calls still see what was passed
        want = [3.0 * i for i in range(10)] + [float(SOLO_BYTES // 8 + 1)]
        assert ex.get_all_results(futures, timeout=120) == want
        assert ex.get_all_results([ex.call_async(np.sum, np.arange(4.0))], timeout=60) == [6.0]  # alone
    assert all(t.startswith("numpywren-upload") for t, _ in puts)
    assert sorted(k for _, k in puts) == ["00010.pkl", "bundle-00000.pkl", "bundle-00000.pkl", "bundle-00004.pkl",
                                          "bundle-00008.pkl"]  # call_async's own callset starts at 00000
    assert len(fake.events) == 12 and [e["call"] for e in fake.events if "args_at" not in e] == ["00010"]


def test_a_worker_unpickles_only_its_own_slice_of_a_bundle(s3_store, fake_lambda):
    from numpywren.serialize import dumps

    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store) as ex:
        future = ex.call_async(pow, 3, 4)
        fake.wait_for(1)
        event = json.loads(fake.raw[0])
        mine = dumps(((5, 3), {}))
        s3_store.put(event["args"], mine + dumps(_PickleBomb()))  # the next call's slice is hostile
        assert handler(dict(event, args_at=[0, len(mine)]), FakeContext(30.0))["ok"] is True
        assert future.result(timeout=30) == 125 and _UNPICKLED == []
        assert handler(dict(event, args_at=[len(mine) - 4, 5000]), FakeContext(30.0))["ok"] is False
        payload = protocol.decode_result("call", s3_store.get(event["result"]))
        assert payload["type"] == "ValueError" and "outside the" in payload["message"]
    for bad in ([0], [-1, 3], [True, 3], "0,3"):
        with pytest.raises(ValueError, match="args_at"):
            protocol.validate_event(dict(event, args_at=bad))
    # a worker of the protocol before bundles would read the bundle's first arguments for every call:
    # the version says so, and workers refuse a version they do not speak
    assert event["v"] == protocol.EVENT_VERSION == 3
    with pytest.raises(ValueError, match="event version 2 is not supported"):
        protocol.validate_event(dict(event, v=2))


# -- (2b) the invoke itself: signed by botocore, sent without its per-call machinery ---------------
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:numpywren-test:live"


def test_invokes_after_the_first_skip_botocore_and_are_signed_as_lambda_requires(s3_store, fake_lambda):
    """The fast path sends what the client sends (same URL, header, body) with a signature Lambda accepts
    (the fake verifies SigV4 from the specification; the fixture fails on any bad one)."""
    from numpywren.executors.aws_lambda import LambdaExecutor

    fake = fake_lambda()
    n = 24
    with LambdaExecutor(FUNCTION_ARN, store=s3_store, region="us-east-1", endpoint_url=fake.url,
                        poll_interval=0.05, invoke_threads=2) as ex:
        assert ex._invoker.why_not_fast is None
        futures = ex.map(pow, range(n), extra_args=(2,))
        assert ex.get_all_results(futures, timeout=120) == [i * i for i in range(n)]
        stats = ex.stats.copy()
    assert stats["invocations"] == n == stats["fast_invokes"] + stats["client_invokes"]
    assert stats["fast_invokes"] >= n - 2  # only the first (one per thread at most) went through the client
    assert fake.bad_signatures == [] and len(fake.events) == n
    assert set(fake.functions) == {FUNCTION_ARN.replace(":", "%3A")}  # the ARN, encoded as botocore does
    assert {h.get("X-Amz-Invocation-Type") for h in fake.headers} == {"Event"}
    assert sorted(e["call"] for e in fake.events) == [f"{i:05d}" for i in range(n)]


def test_an_invoke_lambda_refuses_goes_through_botocores_retries(s3_store, fake_lambda):
    """A throttled fast invoke is sent again by the client (which retries with backoff): each call is
    accepted, and runs, exactly once."""
    fake = fake_lambda()
    with lambda_executor(fake, s3_store, invoke_threads=1) as ex:
        assert ex.get_all_results(ex.map(pow, range(3), extra_args=(2,)), timeout=60) == [0, 1, 4]
        assert ex.stats["fast_invokes"] >= 1
        with fake.lock:
            fake.throttle_left = 3  # the next fast request and the client's first two attempts
        assert ex.get_all_results(ex.map(pow, range(5), extra_args=(3,)), timeout=60) == [i ** 3 for i in range(5)]
        stats = ex.stats.copy()
    assert fake.throttled == 3 and stats["client_invokes"] >= 1 and stats["invocations"] == 8
    assert len(fake.events) == 8  # accepted once each, so none ran twice
    assert sorted((e["callset"], e["call"]) for e in fake.events) == sorted(
        {(e["callset"], e["call"]) for e in fake.events})


def test_where_the_fast_path_would_differ_from_the_client_invokes_stay_on_the_client(monkeypatch):
    """Decided up front (no request): a proxy, a client certificate, TCP keep-alive, adaptive retries (a
    client-wide rate limiter), or running inside Lambda (botocore's recursion-detection header)."""
    import botocore.session
    from botocore.config import Config

    from numpywren.executors.lambda_invoke import EventInvoker

    def why(**config) -> str | None:
        session = botocore.session.get_session()
        client = session.create_client("lambda", region_name="us-east-1", config=Config(**config))
        return EventInvoker(session, client, "f").why_not_fast

    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                "all_proxy", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(var, raising=False)
    assert why() is None and why(retries={"mode": "standard"}) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert why() == "a proxy applies to the Lambda endpoint"
    monkeypatch.setenv("NO_PROXY", "amazonaws.com")
    assert why() is None
    assert why(proxies={"https": "http://proxy.invalid:3128"}) == "a proxy applies to the Lambda endpoint"
    assert why(client_cert="/nonexistent.pem") == "the client presents a certificate"
    assert why(tcp_keepalive=True) == "TCP keep-alive is configured"
    assert why(retries={"mode": "adaptive"}) == "adaptive retry mode rate-limits every request of the client"
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "driver")
    assert "recursive-loop detection" in why()


def test_the_fast_path_verifies_tls_with_the_ca_bundle_botocore_uses(monkeypatch, tmp_path):
    import botocore.session

    from numpywren.executors.lambda_invoke import ca_bundle

    mine, requests_own = tmp_path / "aws-ca.pem", tmp_path / "requests-ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(requests_own))
    monkeypatch.setenv("AWS_CA_BUNDLE", str(mine))
    assert ca_bundle(botocore.session.get_session()) == str(mine)
    monkeypatch.delenv("AWS_CA_BUNDLE")
    assert ca_bundle(botocore.session.get_session()) == str(requests_own)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    default = ca_bundle(botocore.session.get_session())
    assert default.endswith(".pem") and default not in (str(mine), str(requests_own))


# -- (7) first-run friction ------------------------------------------------------------------------
def test_handler_refuses_a_runtime_botocore_without_conditional_writes(s3_store, fake_lambda, monkeypatch):
    import botocore

    from numpywren.worker.lambda_handler import OldSdkError

    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store) as ex:
        future = ex.call_async(pow, 2, 5)
        fake.wait_for(1)
        event = json.loads(fake.raw[0])
        monkeypatch.setattr(botocore, "__version__", "1.34.99")
        with pytest.raises(OldSdkError, match=r"botocore 1\.34\.99 .*--with-sdk"):
            handler(event, FakeContext(30.0))
        assert not s3_store.exists(future.result_key)
        for lacking in ("1.35.0", "1.35.1"):  # IfNoneMatch on PutObject arrived in 1.35.2
            monkeypatch.setattr(botocore, "__version__", lacking)
            with pytest.raises(OldSdkError, match=rf"botocore {lacking} .*1\.35\.2"):
                handler(event, FakeContext(30.0))
        assert not s3_store.exists(future.result_key)
        monkeypatch.setattr(botocore, "__version__", "1.35.2")
        assert handler(event, FakeContext(30.0))["ok"] is True
        assert future.result(timeout=30) == 32


# -- deploy: event age, runtime, region ---------------------------------------------------------------
def _layer_zip(tmp_path, manifest):
    import zipfile

    path = tmp_path / "layer.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("python/numpywren_layer.json", json.dumps(manifest))
    return path


def test_deploy_sets_a_short_event_age_and_the_runtime(aws, moto_endpoint, tmp_path):
    from numpywren.deploy import EVENT_AGE, RUNTIME, deploy, names

    c, bucket, fn = aws
    zip_path = _layer_zip(tmp_path, {"runtime": "python3.12", "python_version": "3.12"})
    deploy(bucket, "p", "us-east-1", function_name=fn, layer_zip=zip_path, runtime="python3.12",
           endpoint_url=moto_endpoint, log=lambda _: None)
    lam = c["lambda"]
    assert lam.get_function_configuration(FunctionName=fn)["Runtime"] == "python3.12"
    layer = lam.list_layer_versions(LayerName=names(fn)["layer"])["LayerVersions"][0]
    assert layer["CompatibleRuntimes"] == ["python3.12"]
    cfg = lam.get_function_event_invoke_config(FunctionName=fn)
    assert cfg["MaximumRetryAttempts"] == 0 and cfg["MaximumEventAgeInSeconds"] == EVENT_AGE <= 600
    assert RUNTIME == "python3.13"
    with pytest.raises(ValueError, match="built for python3.12, the function would run python3.13"):
        deploy(bucket, "p", "us-east-1", function_name=fn, layer_zip=zip_path, endpoint_url=moto_endpoint,
               log=lambda _: None)
    with pytest.raises(ValueError, match="event_age"):
        deploy(bucket, "p", "us-east-1", function_name=fn, layer_zip=zip_path, runtime="python3.12",
               event_age=30, endpoint_url=moto_endpoint, log=lambda _: None)


def test_deploy_refuses_a_bucket_in_another_region(aws, moto_endpoint, tmp_path):
    from numpywren.deploy import deploy, names

    c, _bucket, fn = aws
    far = f"nw-far-{fn}"
    c["s3"].create_bucket(Bucket=far, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    with pytest.raises(ValueError, match=f"bucket '{far}' is in eu-west-1, the function would be in us-east-1"):
        deploy(far, "p", "us-east-1", function_name=fn, layer_zip=_layer_zip(tmp_path, {}),
               endpoint_url=moto_endpoint, log=lambda _: None)
    assert names(fn)["role"] not in [r["RoleName"] for r in c["iam"].list_roles()["Roles"]]  # nothing created


# -- (3b) results in the done-markers: no read per completion ------------------------------------
_UNPICKLED: list = []


def _record_unpickling(what):
    _UNPICKLED.append(what)
    return {"ok": True, "value": "from a pickle"}


class _PickleBomb:
    """Unpickling it calls _record_unpickling: proof that something was unpickled."""

    def __reduce__(self):
        return _record_unpickling, ("unpickled",)


def test_small_results_ride_in_the_done_markers_so_the_driver_reads_none(s3_store, fake_lambda):
    fake = fake_lambda()
    rng = np.random.default_rng(11)
    tasks = [_gemm_task(s3_store, rng) for _ in range(3)]
    requests = _count_requests(s3_store)
    with lambda_executor(fake, s3_store, sweep_seconds=10**5) as ex:
        calls = ex.map(pow, range(20), extra_args=(3,))
        tiles = ex.submit_tasks([task.spec(f"run-m{k}", 1, 60.0) for k, (task, _C, _w) in enumerate(tasks)])
        assert ex.get_all_results(calls, timeout=120) == [i ** 3 for i in range(20)]
        stats = ex.get_all_results(tiles, timeout=120)
        assert ex.stats["outcomes_in_markers"] == 23 and ex.stats["bad_outcomes"] == 0
        assert ex.stats["found_without_marker"] == 0
        during = list(requests)
    reads = [p["Key"] for op, p, _ in during if op in ("GetObject", "HeadObject")]
    assert not [k for k in reads if "/results/" in k]  # every outcome came with its marker
    for (task, C, want), got in zip(tasks, stats):
        assert got["flops"] == task.flops and got["bytes_written"] == want.nbytes
        assert rel_err(C.get_block(1, 0), want) < 1e-13


def test_a_marker_outcome_that_does_not_decode_is_never_trusted(s3_store, fake_lambda):
    """A tile call's marker carrying a pickle (or garbage): nothing is unpickled, the result key decides."""
    import cloudpickle

    fake = fake_lambda(run=False)
    task, C, want = _gemm_task(s3_store, np.random.default_rng(12))
    with lambda_executor(fake, s3_store, relist_seconds=0.0, sweep_seconds=10**5) as ex:
        future = ex.submit_tasks([task.spec("run-f", 1, 60.0)])[0]
        fake.wait_for(1)
        event = json.loads(fake.raw[0])
        handler(dict(event, done=False), FakeContext(30.0))  # the real result, no marker yet
        forged = protocol.encode_outcome(cloudpickle.dumps(_PickleBomb()))
        plain = protocol.done_key(event["callset"], event["call"], time.time())
        s3_store.put(f"{plain}@{forged}", b"")
        stats = future.result(timeout=30)
        assert ex.stats["bad_outcomes"] == 1 and ex.stats["outcomes_in_markers"] == 0
    assert _UNPICKLED == [] and stats["flops"] == task.flops
    assert rel_err(C.get_block(1, 0), want) < 1e-13


def test_a_result_too_long_for_a_marker_name_is_read_from_its_key(s3_store, fake_lambda):
    fake = fake_lambda()
    blobs = [np.random.default_rng(i).bytes(2000) for i in range(3)]  # incompressible: over the limit
    with lambda_executor(fake, s3_store, sweep_seconds=10**5) as ex:
        futures = ex.map(bytes, blobs)
        assert ex.get_all_results(futures, timeout=60) == blobs
        assert ex.stats["outcomes_in_markers"] == 0 and ex.stats["found_without_marker"] == 0


def test_marker_outcomes_round_trip_and_refuse_what_is_not_one():
    import zlib

    result = protocol.encode_result("tile", {"ok": True, "value": {"flops": 2.0 ** 40, "worker": "w"}})
    key = protocol.done_key("sess/00001", "00007", 1234.5, result)
    callset, call, when, outcome = protocol.parse_done_key(key)
    assert (callset, call, when) == ("sess/00001", "00007", 1234.5)
    assert protocol.decode_outcome(outcome) == result
    assert protocol.parse_done_key(protocol.done_key("sess/00001", "00007", 1234.5))[3] is None
    assert protocol.done_key("s/1", "2", 1.0, np.random.default_rng(0).bytes(1000)).count("@") == 2  # too long
    bomb = protocol.encode_outcome(b" " * protocol.MAX_OUTCOME_BYTES)
    inflated = base64_outcome(zlib.compress(b" " * (protocol.MAX_OUTCOME_BYTES + 1), 9))
    assert bomb is not None and len(inflated) <= protocol.MAX_OUTCOME_CHARS
    with pytest.raises(ValueError, match="over"):
        protocol.decode_outcome(inflated)
    for bad in ("!!!", base64_outcome(b"not zlib"), base64_outcome(zlib.compress(b"{}")[:-3]), "A" * 601):
        with pytest.raises(ValueError, match="malformed done-marker outcome"):
            protocol.decode_outcome(bad)
    for bad in ("jobs/s/done/x@s~1@2", "jobs/s/done/12@s~1", "jobs/s/done/12@a@b@c@d"):
        with pytest.raises(ValueError, match="not a done-marker key"):
            protocol.parse_done_key(bad)


def base64_outcome(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_store_prefix_too_long_for_marker_outcomes_gets_plain_markers(moto_endpoint, fake_lambda):
    """S3 keys stop at 1024 bytes: a worker whose marker name would not fit writes the plain marker."""
    import boto3

    bucket = f"nw-long-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    store = open_store(f"s3://{bucket}/{'p' * 900}?endpoint={moto_endpoint}")
    fake = fake_lambda()
    with lambda_executor(fake, store, sweep_seconds=10**5) as ex:
        futures = ex.map(pow, range(4), extra_args=(2,))
        assert ex.get_all_results(futures, timeout=60) == [0, 1, 4, 9]
        assert ex.stats["outcomes_in_markers"] == 0 and ex.stats["found_without_marker"] == 0
