import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from numpywren.storage import KeyNotFoundError, LocalStore, StoreError, open_store

ROOT = str(Path(__file__).resolve().parents[1])


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


# -- store failures are StoreErrors naming the operation, key and store ----------------------------
def _every_operation(store):
    """Each store operation on key 'k/x', as (name, call)."""
    return [("get", lambda: store.get("k/x")), ("get_buffer", lambda: store.get_buffer("k/x")),
            ("put", lambda: store.put("k/x", b"1")), ("put_if_absent", lambda: store.put_if_absent("k/x", b"1")),
            ("exists", lambda: store.exists("k/x")), ("delete", lambda: store.delete("k/x")),
            ("delete_many", lambda: store.delete_many(["k/x"])), ("list", lambda: list(store.list("k/x"))),
            ("list_info", lambda: list(store.list_info("k/x")))]


def test_a_bucket_deleted_after_open_is_a_store_error_not_a_missing_key(s3_store, moto_endpoint):
    import boto3

    s3_store.put("k/x", b"1")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.delete_object(Bucket=s3_store.bucket, Key="numpywren/k/x")
    s3.delete_bucket(Bucket=s3_store.bucket)
    for name, call in _every_operation(s3_store):
        with pytest.raises(StoreError, match=rf"^{name} 'k/x' in s3://{s3_store.bucket}/numpywren.* failed") as info:
            call()
        assert not isinstance(info.value, KeyNotFoundError), name


def test_an_unreachable_endpoint_is_a_store_error_for_every_operation(monkeypatch):
    from botocore.config import Config

    from numpywren.storage import s3

    monkeypatch.setattr(s3, "RETRY_CONFIG", Config(retries={"total_max_attempts": 1}))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = s3.S3Store("b1", "p", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1", check=False)
    for name, call in _every_operation(store):
        with pytest.raises(StoreError, match=rf"^{name} 'k/x' in s3://b1/p.*failed: EndpointConnectionError"):
            call()


def test_delete_many_reports_the_keys_s3_refused(s3_store):
    class Refusing:  # delete_objects answers 200 and lists per-key failures in "Errors"
        def delete_objects(self, Bucket, Delete):
            return {"Errors": [{"Key": o["Key"], "Code": "AccessDenied", "Message": "Access Denied"}
                               for o in Delete["Objects"]]}

    s3_store._client = Refusing()
    with pytest.raises(StoreError, match=r"delete_many 'a' in s3://.* AccessDenied: Access Denied \(and 1 more"):
        s3_store.delete_many(["a", "b"])


def test_a_local_root_that_is_a_file_is_a_store_error(tmp_path):
    (tmp_path / "file").write_bytes(b"not a folder")
    with pytest.raises(StoreError, match=r"cannot open file://.*/file: .* is not a folder"):
        LocalStore(tmp_path / "file")
    under = LocalStore(tmp_path / "file" / "store")  # cannot exist: reads as empty, writes fail
    with pytest.raises(KeyNotFoundError):
        under.get("k/x")
    assert list(under.list()) == [] and not under.exists("k/x")
    for name in ("put", "put_if_absent"):
        with pytest.raises(StoreError, match=rf"^{name} 'k/x' in file://.*/file/store failed: NotADirectoryError"):
            getattr(under, name)("k/x", b"1")


def test_a_local_root_that_cannot_be_created_is_a_store_error():
    store = LocalStore(f"/proc/numpywren-test-{uuid.uuid4().hex[:8]}")  # mkdir under /proc fails, even for root
    with pytest.raises(StoreError, match=r"^put 'k' in file:///proc/numpywren-test-.* failed: FileNotFoundError"):
        store.put("k", b"1")


@pytest.mark.parametrize("bad", ["file", "file/under"])
def test_the_cli_prints_one_line_for_a_store_error(tmp_path, bad):
    (tmp_path / "file").write_bytes(b"not a folder")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "numpywren", "demo", "--n", "8", "--tile", "4",
                           "--store", str(tmp_path / bad)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpywren demo: error: ") and str(tmp_path / bad) in lines[0]


# -- a local store appears on disk only when written ----------------------------------------------
def test_opening_a_local_store_creates_nothing(tmp_path):
    from numpywren import BigMatrix, MatrixNotFoundError

    root = tmp_path / "typo-store"
    store = LocalStore(root)
    with pytest.raises(KeyNotFoundError):
        store.get("a")
    assert list(store.list()) == [] and list(store.list_info("x/")) == [] and not store.exists("a")
    store.delete("a")
    with pytest.raises(MatrixNotFoundError, match=rf"no matrix at 'A' in {store.url}"):
        BigMatrix.open(str(root), "A")
    assert not root.exists()
    store.put("a", b"1")
    assert store.get("a") == b"1"


def test_local_deletes_remove_the_folders_they_empty(local_store):
    for key in ("a/b/c/k", "a/b/c/l", "a/x", "top"):
        local_store.put(key, b"1")
    local_store.delete("a/b/c/k")
    assert (local_store.root / "a/b/c").is_dir()  # still holds l
    local_store.delete("a/b/c/l")
    assert not (local_store.root / "a/b").exists() and (local_store.root / "a").is_dir()
    local_store.delete_prefix("a/")
    assert sorted(p.name for p in local_store.root.iterdir()) == ["top"]
    local_store.delete("top")
    assert local_store.root.is_dir() and not any(local_store.root.iterdir())  # the root stays


def test_a_local_write_survives_its_folder_being_removed_meanwhile(local_store, monkeypatch):
    """A delete may remove the folder a writer has just created, before its temporary file is in it."""
    from numpywren.storage import local

    real, calls = tempfile.mkstemp, []

    def racing_mkstemp(dir, **kwargs):
        if not calls:
            calls.append(dir)
            local_store.delete("d/e/other")  # the folder's last object goes...
            if os.path.isdir(dir):
                os.rmdir(dir)  # ...and a deleter removes the empty folder
        return real(dir=dir, **kwargs)

    local_store.put("d/e/other", b"0")
    monkeypatch.setattr(local.tempfile, "mkstemp", racing_mkstemp)
    local_store.put("d/e/k", b"1")
    assert local_store.get("d/e/k") == b"1" and calls


def test_a_local_delete_prefix_of_a_folder_tree_hides_every_key_at_once_and_removes_the_files(local_store):
    """A folder holding folders is moved out of the store (one rename) and removed on a background thread."""
    from numpywren.storage import local

    mark = uuid.uuid4().hex  # names this test's files wherever they are moved to
    keys = [f"jobs/r/leases/{h:02x}/{mark}{h}@1" for h in range(20)] + ["jobs/r/heartbeat", "jobs/s/keep", "top"]
    for key in keys:
        local_store.put(key, b"1")
    local_store.delete_prefix("jobs/r/")
    assert sorted(local_store.list("")) == ["jobs/s/keep", "top"]  # at once, whatever the remover does
    assert not local_store.exists("jobs/r/heartbeat") and list(local_store.list_info("jobs/")) != []
    local_store.put("jobs/r/leases/00/x@2", b"2")  # the prefix is usable again at once
    assert local_store.get("jobs/r/leases/00/x@2") == b"2"
    assert sorted(p.name for p in local_store.root.iterdir()) == ["jobs", "top"]  # nothing else in the store
    assert sorted(p.name for p in (local_store.root / "jobs").iterdir()) == ["r", "s"]
    local.drain_removals()
    assert not list(Path(tempfile.gettempdir()).glob(f"numpywren-deleted-{os.getpid()}-*/**/{mark}*"))  # and the files are gone


def test_a_local_write_survives_a_delete_prefix_renaming_its_folder_away(local_store, monkeypatch):
    """A writer's temporary file is in a folder that delete_prefix renames away before the write lands:
    the write is done again (it comes after the delete), never lost to an error."""
    from numpywren.storage import local

    real, calls = os.replace, []

    def racing_replace(src, dst):
        if not calls:
            calls.append(src)
            local_store.delete_prefix("d/")  # renames d/ (it holds folders), temporary file included
        return real(src, dst)

    local_store.put("d/e/other", b"0")
    monkeypatch.setattr(local.os, "replace", racing_replace)
    local_store.put("d/e/k", b"1")
    assert calls and local_store.get("d/e/k") == b"1" and not local_store.exists("d/e/other")
    local.drain_removals()


def test_a_local_write_survives_a_delete_prefix_even_when_another_writer_made_its_folder_again(local_store,
                                                                                            monkeypatch):
    """The folder is renamed away under a writer, and a second writer creates it again before the first one
    notices: the first write is still done again (its temporary file went with the rename), not an error."""
    from numpywren.storage import local

    real, calls = os.replace, []

    def racing_replace(src, dst):
        if not calls:
            calls.append(src)
            local_store.delete_prefix("d/")          # renames d/, the temporary file of d/e/k included
            local_store.put("d/e/z", b"2")           # another writer makes d/e/ again
        return real(src, dst)

    local_store.put("d/e/other", b"0")
    monkeypatch.setattr(local.os, "replace", racing_replace)
    local_store.put("d/e/k", b"1")
    assert calls and local_store.get("d/e/k") == b"1" and local_store.get("d/e/z") == b"2"
    assert not local_store.exists("d/e/other")
    local.drain_removals()


def test_a_local_delete_prefix_deletes_when_the_folder_for_deleted_trees_vanished(local_store, monkeypatch):
    """The private folder the trees are renamed into can go between choosing a name in it and the rename
    (drain_removals at exit removes it, or a temporary-folder cleaner): the keys are still deleted, not kept
    as if someone had deleted them meanwhile."""
    from numpywren.storage import local

    local_store.put("jobs/r/leases/00/a@1", b"1")
    local_store.put("jobs/r/heartbeat", b"1")
    monkeypatch.setattr(local, "_trash_beside",
                        lambda root: Path(tempfile.gettempdir()) / f"numpywren-gone-{uuid.uuid4().hex}" / "x")
    local_store.delete_prefix("jobs/r/")
    assert list(local_store.list("")) == []


def test_drain_removals_removes_every_deleted_tree_even_when_the_remover_is_not_done(local_store, monkeypatch):
    """At exit the deleted trees go before the process does, however long the background removal would still
    take (an interpreter exit kills the daemon thread mid-tree: the rest would stay in the temporary folder)."""
    from numpywren.storage import local

    mark = uuid.uuid4().hex
    for h in range(3):
        local_store.put(f"m/tiles/{h:02x}/{mark}{h}", b"1")
    monkeypatch.setattr(local._Remover, "remove", classmethod(lambda cls, folder: None))  # the thread is behind
    monkeypatch.setattr(local._Remover, "_pending", 1)   # ...and still busy with another tree
    local_store.delete_prefix("m/tiles/")
    assert list(local_store.list("")) == []
    local.drain_removals(timeout=0)
    assert not list(Path(tempfile.gettempdir()).glob(f"numpywren-deleted-{os.getpid()}-*/**/{mark}*"))


def test_a_local_delete_prefix_removes_the_deleted_trees_a_killed_process_left(local_store, monkeypatch):
    """A process killed before its exit handler leaves its private folder of deleted trees in the temporary
    folder; the next process to delete a tree removes it (the trees in it were deleted: nothing is lost)."""
    from numpywren.storage import local

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    left = Path(tempfile.mkdtemp(prefix=f"numpywren-deleted-{dead}-", dir=tempfile.gettempdir()))
    (left / "tree" / "00").mkdir(parents=True)
    (left / "tree" / "00" / "tile").write_bytes(b"1")
    mine = Path(tempfile.mkdtemp(prefix=f"numpywren-deleted-{os.getpid()}-", dir=tempfile.gettempdir()))
    monkeypatch.setattr(local, "_trash_folder", [])   # as in a new process
    try:
        local_store.put("jobs/r/leases/00/a@1", b"1")
        local_store.delete_prefix("jobs/r/")
        local.drain_removals()
        assert not left.exists() and mine.is_dir()    # a live process's folder stays
    finally:
        shutil.rmtree(left, ignore_errors=True)
        mine.rmdir()


# -- list_info: size, modification time and etag per key -----------------------------------------
def test_list_info(store):
    from numpywren.storage import ObjectInfo

    store.put("i/a", b"12345")
    store.put("i/b/c", b"1")
    store.put("j", b"1")
    infos = list(store.list_info("i/"))
    assert [i.key for i in infos] == list(store.list("i/")) == ["i/a", "i/b/c"]
    assert all(isinstance(i, ObjectInfo) and isinstance(i.mtime, float) and i.etag for i in infos)
    assert [i.size for i in infos] == [5, 1]
    assert abs(infos[0].mtime - time.time()) < 3600  # POSIX seconds, not milliseconds
    assert [i.etag for i in store.list_info("i/a")] == [infos[0].etag]  # unchanged object, same etag
    store.put("i/a", b"54321")
    assert [i.etag for i in store.list_info("i/a")] != [infos[0].etag]  # rewritten: another etag


def test_s3_slow_down_is_retried_and_counted(s3_store):
    """S3's 503 SlowDown (too many requests on one prefix) is a throttle: botocore retries, we count."""
    from botocore.awsrequest import AWSResponse

    from numpywren.scheduler import Report
    from numpywren.storage.s3 import throttled_requests

    left = [2]

    class Raw:
        def stream(self, **kw):
            yield b""

    def slow_down(request, **kwargs):
        if request.method == "PUT" and left[0] > 0:
            left[0] -= 1
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            response = AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, Raw())
            response._content = body
            return response
        return None

    s3_store.client.meta.events.register("before-send.s3", slow_down, unique_id="test-slow-down")
    before = throttled_requests()
    s3_store.put("a/b", b"payload")
    assert s3_store.get("a/b") == b"payload" and left == [0]
    assert throttled_requests() - before == 2
    report = Report(run="j", workers=1)
    report.add({"flops": 1.0, "throttled": 2})
    report.add({"skipped": True, "throttled": 1})
    assert report.throttled == 3
