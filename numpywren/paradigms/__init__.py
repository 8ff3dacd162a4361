"""Beyond linear algebra: other paradigms as small layers over the same executor and store.

* :func:`mapreduce` - map tasks shuffle through the store to reduce tasks (word count example);
* :func:`sort_records` - a BSP (TeraSort-style) sample / partition / merge sort of fixed-width records;
* :func:`hogwild_sgd` - asynchronous SGD with the store as the parameter server.

Each is a few ``executor.map`` calls whose tasks talk only through store objects
under ``jobs/<job>/``, deleted when the job ends.
"""
from numpywren.paradigms.mapreduce import mapreduce, stable_hash
from numpywren.paradigms.paramserver import (ParameterStore, SGDResult, hogwild_sgd, least_squares_gradient,
                                             least_squares_loss, load_shard, logistic_gradient, logistic_loss,
                                             put_shards)
from numpywren.paradigms.sort import (RECORD, RECORD_BYTES, SortResult, decode_records, encode_records,
                                      random_records, record_checksum, sort_records, write_random_records)
from numpywren.paradigms.wordcount import word_count, write_corpus, zipf_text

__all__ = [
    "mapreduce", "stable_hash", "word_count", "write_corpus", "zipf_text",
    "sort_records", "write_random_records", "random_records", "record_checksum", "decode_records",
    "encode_records", "RECORD", "RECORD_BYTES", "SortResult",
    "hogwild_sgd", "ParameterStore", "SGDResult", "put_shards", "load_shard",
    "least_squares_loss", "least_squares_gradient", "logistic_loss", "logistic_gradient",
]
