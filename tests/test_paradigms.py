"""MapReduce, the BSP sort and the store-backed parameter server, checked against single-process answers."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

import numpywren
from numpywren import paradigms as P


def _jobs_left(store) -> list[str]:
    """What the paradigm left under jobs/ (a live executor's heartbeat aside)."""
    return [k for k in store.list("jobs/") if not k.endswith("/heartbeat")]


def _words(text):
    return ((w, 1) for w in text.split())


def _add(_key, values):
    return sum(values)


# -- MapReduce ---------------------------------------------------------------------------------------
def test_word_count_equals_counter(local_executor, local_store):
    text = P.zipf_text(30_000, vocab_size=3000, seed=7)
    chunks = [text[i:i + 8000] for i in range(0, len(text), 8000)]  # cuts words: each chunk is its own text
    expected = Counter(w for c in chunks for w in c.split())
    got = numpywren.mapreduce(_words, _add, chunks, num_reducers=3, executor=local_executor, combiner=_add)
    assert got == expected
    assert len(expected) > 1000 and expected.most_common(1)[0][1] > 10 * np.median(list(expected.values()))
    assert _jobs_left(local_store) == []  # shuffle objects and call objects are gone


def test_word_count_on_s3(s3_store):
    with numpywren.LocalExecutor(workers=2, store=s3_store) as ex:
        keys = P.write_corpus(s3_store, "corpus", total_mb=0.05, num_chunks=3, executor=ex, vocab_size=500, seed=3)
        got = P.word_count(keys, num_reducers=2, executor=ex)
    expected = Counter()
    for key in keys:  # the chunks are what the workers wrote, regenerated independently here
        expected.update(s3_store.get(key).decode().split())
    assert got == expected and sum(got.values()) > 5000
    words_per_chunk = int(0.05e6 / 7 / 3)
    assert s3_store.get(keys[1]).decode() == P.zipf_text(words_per_chunk, 500, seed=3, chunk=1)  # deterministic
    assert _jobs_left(s3_store) == []


def test_partitions_follow_the_stable_hash_and_keep_value_order(local_executor):
    inputs = [[(k % 7, (m, i)) for i, k in enumerate(range(m, m + 20))] for m in range(5)]
    parts = numpywren.mapreduce(lambda pairs: pairs, lambda k, vs: vs, inputs, num_reducers=4,
                                executor=local_executor, output="partitions")
    assert len(parts) == 4
    for r, part in enumerate(parts):
        assert all(P.stable_hash(k) % 4 == r for k in part)
    merged = {k: v for part in parts for k, v in part.items()}
    expected: dict = {}
    for pairs in inputs:
        for k, v in pairs:
            expected.setdefault(k, []).append(v)
    assert merged == expected  # values arrive in input order: map task, then emission order


def test_stable_hash_is_the_same_in_every_process():
    keys = ["word", b"bytes", 12345, -3, 2.5, None, ("a", 1, (2.0, "b")), "ünïcode"]
    code = ("from numpywren.paradigms import stable_hash; "
            f"print([stable_hash(k) for k in {keys!r}])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outs == {f"{[P.stable_hash(k) for k in keys]}\n"}
    assert P.stable_hash(1) == P.stable_hash(1.0) == P.stable_hash(True) == P.stable_hash(np.int64(1))


def test_empty_input_and_more_reducers_than_keys(local_executor, local_store):
    assert numpywren.mapreduce(_words, _add, [], 4, executor=local_executor) == {}
    assert numpywren.mapreduce(_words, _add, [], 3, executor=local_executor, output="partitions") == [{}, {}, {}]
    assert numpywren.mapreduce(_words, _add, ["a b a", "", "b a"], 16, executor=local_executor) == {"a": 3, "b": 2}
    with pytest.raises(ValueError, match="num_reducers"):
        numpywren.mapreduce(_words, _add, ["a"], 0, executor=local_executor)
    assert _jobs_left(local_store) == []


def _picky_mapper(text):
    if "boom" in text:
        raise ValueError(f"cannot map {text!r}")
    return _words(text)


def test_a_mapper_exception_surfaces_with_its_traceback(local_executor, local_store):
    with pytest.raises(ValueError, match="cannot map 'a boom'") as info:
        numpywren.mapreduce(_picky_mapper, _add, ["x y", "a boom", "z"], 2, executor=local_executor)
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "Remote traceback" in notes and "_picky_mapper" in notes
    assert _jobs_left(local_store) == []  # the finished maps' shuffle objects were removed too


# -- BSP sort ------------------------------------------------------------------------------------------
def _read_all(store, keys):
    return np.concatenate([P.decode_records(store.get(k), k) for k in keys])


def test_sort_is_a_sorted_permutation(local_executor, local_store):
    keys, checksum = P.write_random_records(local_store, "in", total_mb=1.0, num_chunks=4, executor=local_executor)
    result = P.sort_records(keys, "out", num_partitions=5, executor=local_executor, samples_per_chunk=200)
    inp, out = _read_all(local_store, keys), _read_all(local_store, result.output_keys)
    assert result.records == len(inp) == len(out) == 10_000 and result.bytes == 1_000_000
    assert result.checksum == checksum == P.record_checksum(inp) == P.record_checksum(out)
    assert np.all(np.diff(out["key"].astype(np.float64)) >= 0) and np.all(out["key"][1:] >= out["key"][:-1])
    expected = inp[np.argsort(inp["key"], kind="stable")]
    assert out.tobytes() == expected.tobytes()  # the same records, payloads included, ties in input order
    parts = [P.decode_records(local_store.get(k)) for k in result.output_keys]
    assert [len(p) for p in parts] == result.partition_records and min(result.partition_records) > 500
    for lo, hi in itertools.pairwise(parts):  # order across partition boundaries
        assert lo["key"][-1] <= hi["key"][0]
    assert _jobs_left(local_store) == []


def test_sort_with_duplicate_keys_empty_chunks_and_more_partitions_than_keys(local_executor, local_store):
    chunks = []
    for i, n in enumerate([300, 0, 500, 1]):
        recs = P.random_records(n, seed=i)
        recs["key"] %= 4  # 4 distinct keys, 7 partitions: some partitions stay empty
        chunks.append(recs)
        local_store.put(f"dup/{i}", P.encode_records(recs))
    keys = [f"dup/{i}" for i in range(4)]
    result = P.sort_records(keys, "dup-out", num_partitions=7, executor=local_executor)
    inp = np.concatenate(chunks)
    out = _read_all(local_store, result.output_keys)
    assert len(result.output_keys) == 7 and 0 in result.partition_records
    assert out.tobytes() == inp[np.argsort(inp["key"], kind="stable")].tobytes()
    assert result.checksum == P.record_checksum(inp)


def test_sort_rejects_objects_that_are_not_whole_records(local_executor, local_store):
    local_store.put("bad/0", b"x" * 150)
    with pytest.raises(ValueError, match="bad/0"):
        P.sort_records(["bad/0"], "bad-out", executor=local_executor)


def test_record_checksum_ignores_order_and_sees_one_changed_byte():
    recs = P.random_records(1000, seed=5)
    base = P.record_checksum(recs)
    assert P.record_checksum(recs[::-1]) == base
    changed = recs.copy()
    changed.view(np.uint8)[50_037] ^= 1
    assert P.record_checksum(changed) != base
    assert P.record_checksum(np.concatenate([recs, recs[:1]])) != base


# -- parameter server -------------------------------------------------------------------------------------
def test_hogwild_least_squares_reaches_the_closed_form_loss(local_executor, local_store):
    rng = np.random.default_rng(0)
    n, d = 20_000, 20
    X = rng.standard_normal((n, d)) * np.linspace(0.5, 1.5, d)
    y = X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n)
    best = P.least_squares_loss(np.linalg.lstsq(X, y, rcond=None)[0], X, y)
    shards = P.put_shards(local_store, "data", X, y, num_shards=2)
    start = P.least_squares_loss(np.zeros(d), X, y)
    result = P.hogwild_sgd(shards, np.zeros(d), steps=300, batch_size=256, lr=0.1, lr_decay_steps=50,
                           executor=local_executor)
    loss = P.least_squares_loss(result.params, X, y)
    assert start > 10 * best
    assert loss <= 1.01 * best, (loss, best)
    assert result.updates == 600 and all(w["reads"] == 300 for w in result.workers)
    assert _jobs_left(local_store) == []


def test_parameter_store_sums_single_writer_deltas(local_store):
    ps = P.ParameterStore(local_store, "jobs/ps-test/params", num_workers=3)
    ps.initialize(np.arange(3.0))
    assert ps.read_delta(1) == (0, None)
    ps.write_delta(0, 5, np.ones(3))
    ps.write_delta(2, 1, np.full(3, 10.0))
    np.testing.assert_array_equal(ps.read(), np.arange(3.0) + 11)
    assert ps.read_delta(2)[0] == 1


def test_sort_and_parameter_server_on_s3(s3_store):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4000, 5))
    y = X @ rng.standard_normal(5) + 0.1 * rng.standard_normal(4000)
    with numpywren.LocalExecutor(workers=2, store=s3_store) as ex:
        keys, checksum = P.write_random_records(s3_store, "in", total_mb=0.2, num_chunks=2, executor=ex)
        result = P.sort_records(keys, "out", num_partitions=3, executor=ex)
        shards = P.put_shards(s3_store, "data", X, y, num_shards=2)
        fit = P.hogwild_sgd(shards, np.zeros(5), steps=200, batch_size=256, lr=0.1, lr_decay_steps=50, executor=ex)
    inp, out = _read_all(s3_store, keys), _read_all(s3_store, result.output_keys)
    assert out.tobytes() == inp[np.argsort(inp["key"], kind="stable")].tobytes() and result.checksum == checksum
    best = P.least_squares_loss(np.linalg.lstsq(X, y, rcond=None)[0], X, y)
    assert P.least_squares_loss(fit.params, X, y) <= 1.01 * best
    assert _jobs_left(s3_store) == []
