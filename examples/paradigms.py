"""PyWren's other paradigms on the same workers and store: MapReduce word count, a BSP (TeraSort-style) sort,
and a Hogwild!-style parameter server, each checked against plain Python or numpy.

Usage: python examples/paradigms.py
"""
from collections import Counter

import numpy as np

import numpywren
from numpywren import paradigms

with numpywren.executor(workers=2) as ex:
    texts = ["the quick brown fox", "jumps over the lazy dog", "the dog sleeps"] * 20
    counts = numpywren.mapreduce(lambda text: ((w, 1) for w in text.split()), lambda word, ones: sum(ones),
                                 texts, num_reducers=3, executor=ex, combiner=lambda word, ones: sum(ones))
    assert counts == Counter(" ".join(texts).split())
    print(f"word count: {len(counts)} words, most common {max(counts, key=counts.get)!r} x {max(counts.values())}")

    keys, checksum = paradigms.write_random_records(ex.store, "sort-in", total_mb=4, num_chunks=4, executor=ex)
    result = paradigms.sort_records(keys, "sort-out", executor=ex)
    assert result.checksum == checksum
    print(f"sort: 4 MB of 100-byte records into {len(result.output_keys)} sorted ranges, checksum verified")

    rng = np.random.default_rng(0)
    X = rng.standard_normal((8_000, 10))
    y = X @ rng.standard_normal(10) + 0.5 * rng.standard_normal(8_000)
    shards = paradigms.put_shards(ex.store, "ls-data", X, y, num_shards=ex.workers)
    fit = paradigms.hogwild_sgd(shards, np.zeros(10), steps=200, batch_size=256, lr=0.1, lr_decay_steps=50,
                                executor=ex)
    loss = lambda w: np.mean((X @ w - y) ** 2)  # noqa: E731
    best = loss(np.linalg.lstsq(X, y, rcond=None)[0])
    print(f"parameter server: least-squares loss {loss(fit.params):.4f}, numpy's lstsq {best:.4f} "
          f"({100 * (loss(fit.params) / best - 1):.2f}% above)")
    assert loss(fit.params) < 1.01 * best
