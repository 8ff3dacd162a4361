import threading

import numpy as np
import pytest

from numpywren.storage import KeyNotFoundError, LocalStore, StoreError, open_store


def test_roundtrip_and_listing(store):
    store.put("a/b/1", b"one")
    store.put("a/b/2", [b"t", memoryview(b"wo")])
    store.put("a/c", bytearray(b"three"))
    assert store.get("a/b/1") == b"one"
    assert store.get("a/b/2") == b"two"
    assert list(store.list("a/b/")) == ["a/b/1", "a/b/2"]
    assert list(store.list("a/")) == ["a/b/1", "a/b/2", "a/c"]
    assert list(store.list("zzz/")) == []
    assert store.exists("a/c") and not store.exists("a/d")
    store.delete("a/c")
    store.delete("a/c")  # deleting twice is fine
    assert not store.exists("a/c")
    store.delete_prefix("a/")
    assert list(store.list("a/")) == []


def test_numpy_array_is_stored_as_one_buffer(store):
    """An array is written whole through the buffer protocol, not iterated element by element."""
    array = np.arange(3 * 1000 * 1000, dtype=np.uint8).reshape(1000, 3000)
    store.put("arr", array)
    assert store.get("arr") == array.tobytes()
    store.put("parts", (array[:500], array[500:]))
    assert store.get("parts") == array.tobytes()


def test_missing_key_is_a_clear_error(store):
    with pytest.raises(KeyNotFoundError, match="no object 'nope'"):
        store.get("nope")


def test_overwrite_replaces_whole_object(store):
    store.put("k", b"x" * 1000)
    store.put("k", b"y")
    assert store.get("k") == b"y"


def test_put_if_absent_is_exclusive(store):
    assert store.put_if_absent("lease", b"first")
    assert not store.put_if_absent("lease", b"second")
    assert store.get("lease") == b"first"


def test_put_if_absent_one_winner_among_racers(store):
    wins = []

    def race(n):
        if store.put_if_absent("race", str(n).encode()):
            wins.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get("race") == str(wins[0]).encode()


def test_store_survives_pickling(store):
    import pickle

    clone = pickle.loads(pickle.dumps(store))
    store.put("p", b"v")
    assert clone.get("p") == b"v"
    assert clone.url == store.url


def test_open_store_urls(tmp_path):
    s = open_store(str(tmp_path / "x"))
    assert isinstance(s, LocalStore)
    assert open_store(s.url).root == s.root
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_store("ftp://host/x")
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3:///prefix")


def test_local_store_leaves_no_temp_files(tmp_path):
    s = LocalStore(tmp_path)
    s.put("d/k", b"1" * 100)
    assert s.put_if_absent("d/l", b"2")
    assert not s.put_if_absent("d/l", b"3")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["k", "l"]


def test_invalid_keys_rejected(tmp_path):
    s = LocalStore(tmp_path)
    for bad in ["", "/abs", "a/../b"]:
        with pytest.raises(ValueError):
            s.put(bad, b"x")


def test_missing_bucket_names_the_url(moto_endpoint):
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-x' does not exist"):
        open_store(f"s3://no-such-bucket-x/p?endpoint={moto_endpoint}")


def test_unreachable_endpoint_names_the_url():
    from botocore.config import Config  # noqa: F401 - boto3 is a dependency
    from numpywren.storage.s3 import S3Store

    with pytest.raises(StoreError, match="s3://b1/p"):
        S3Store("b1", "p", endpoint_url="http://127.0.0.1:9", region="us-east-1")


def test_store_urls_that_would_pick_another_folder_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="names host 'relative'"):
        open_store("file://relative/sub")
    with pytest.raises(ValueError, match="empty store URL"):
        open_store("")
    monkeypatch.chdir(tmp_path)
    assert open_store("here") is open_store(str(tmp_path / "here"))  # one folder, one store object
    assert open_store(f"file://{tmp_path}/here").root == tmp_path / "here"


def test_local_store_keeps_the_flat_namespace(local_store):
    local_store.put("dir/x", b"1")
    local_store.delete("dir")  # a folder is not an object: nothing to delete, no error
    assert local_store.get("dir/x") == b"1"
    with pytest.raises(StoreError, match="a part of the key is already an object"):
        local_store.put("dir/x/y", b"2")
    with pytest.raises(ValueError, match="invalid store prefix"):
        list(local_store.list("../"))
