"""Word count, MapReduce's hello world, over a synthetic Zipf-distributed text corpus.

The corpus is generated deterministically from a seed (chunk ``i`` from
``(seed, i)``), so workers can write chunks straight into the store and any
process can regenerate the same text to check a result.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import partial

import numpy as np

from numpywren.api import get_executor
from numpywren.executors.base import Executor
from numpywren.paradigms.mapreduce import mapreduce
from numpywren.storage import Store, open_store

LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype="S1")


def vocabulary(size: int, seed: int = 0) -> np.ndarray:
    """``size`` distinct lowercase words of 2-10 letters (rank order = frequency order)."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    words: dict[str, None] = {}
    while len(words) < size:
        lengths = rng.integers(2, 11, size=size)
        letters = rng.choice(LETTERS, size=(size, 10))
        for row, n in zip(letters, lengths):
            words.setdefault(row[:n].tobytes().decode(), None)
            if len(words) == size:
                break
    return np.array(list(words), dtype=object)


def zipf_text(num_words: int, vocab_size: int = 50_000, exponent: float = 1.1, seed: int = 0,
              chunk: int = 0, words_per_line: int = 12) -> str:
    """``num_words`` words drawn with P(rank k) ~ 1/k**exponent, in lines of ``words_per_line``."""
    if num_words <= 0:
        return ""
    vocab = _cached_vocabulary(vocab_size, seed)
    p = 1.0 / np.arange(1, vocab_size + 1) ** exponent
    rng = np.random.default_rng([seed, chunk])
    idx = rng.choice(vocab_size, size=num_words, p=p / p.sum())
    words = vocab[idx]
    lines = [" ".join(words[i:i + words_per_line]) for i in range(0, num_words, words_per_line)]
    return "\n".join(lines) + "\n"


_VOCABS: dict = {}


def _cached_vocabulary(size: int, seed: int) -> np.ndarray:
    if (size, seed) not in _VOCABS:
        _VOCABS[(size, seed)] = vocabulary(size, seed)
    return _VOCABS[(size, seed)]


def write_corpus(store: Store | str, prefix: str, total_mb: float, num_chunks: int,
                 executor: Executor | None = None, vocab_size: int = 50_000, seed: int = 0) -> list[str]:
    """Have workers write ``num_chunks`` text objects of about ``total_mb`` MB in all; return their keys."""
    if num_chunks < 1 or total_mb <= 0:
        raise ValueError(f"need num_chunks >= 1 and total_mb > 0, got {num_chunks} and {total_mb}")
    ex = get_executor(executor)
    store = open_store(store)
    words = max(1, int(total_mb * 1e6 / 7.0 / num_chunks))  # ~7 bytes per word with its separator
    keys = [f"{prefix}/{i:05d}.txt" for i in range(num_chunks)]
    fn = partial(_write_chunk, store=store, num_words=words, vocab_size=vocab_size, seed=seed)
    futures = ex.map(fn, list(enumerate(keys)))
    try:
        ex.get_all_results(futures)
    finally:
        ex.cleanup([futures[0].callset])
    return keys


def _write_chunk(item: tuple[int, str], store: Store, num_words: int, vocab_size: int, seed: int) -> int:
    i, key = item
    data = zipf_text(num_words, vocab_size, seed=seed, chunk=i).encode()
    store.put(key, data)
    return len(data)


def count_words_in_object(key: str, store: Store) -> Iterable[tuple[str, int]]:
    """Mapper: the (word, count) pairs of one stored text object (in-mapper combining via Counter)."""
    return Counter(store.get(key).decode().split()).items()


def _sum(_key, values):
    return sum(values)


def word_count(keys: Iterable[str], num_reducers: int | None = None, executor: Executor | None = None,
               store: Store | str | None = None) -> dict[str, int]:
    """Count the whitespace-separated words of the text objects ``keys`` with :func:`mapreduce`."""
    ex = get_executor(executor)
    store = open_store(store) if store is not None else ex.store
    return mapreduce(partial(count_words_in_object, store=store), _sum, keys,
                     num_reducers or ex.workers, executor=ex, store=store)
