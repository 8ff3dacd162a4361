"""The embedded default store: a folder on local disk."""
from __future__ import annotations

import atexit
import errno
import mmap
import os
import queue
import shutil
import stat
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from numpywren.storage.base import (Buffer, KeyNotFoundError, ObjectInfo, Payload, Store, StoreError, as_parts,
                                    check_key, store_error)

#: Objects at least this large are memory-mapped by get_buffer; smaller ones are read
#: into an aligned buffer (a mapping costs system calls and a descriptor, and saves little there).
MMAP_MIN_BYTES = 1 << 20
#: Python >= 3.13 can map a file without keeping a descriptor open for the mapping's lifetime.
_MMAP_KWARGS = {"trackfd": False} if sys.version_info >= (3, 13) else {}
#: A tile is read whole (its checksum covers every byte): on Linux the mapping is populated in one system
#: call (MAP_POPULATE) instead of page faults on first touch (1-3% of a reduction's CPU per 32 MB tile
#: here; benchmarks/README.md "Reductions: one pass over each tile").
if hasattr(mmap, "MAP_POPULATE"):
    _MMAP_KWARGS.update(flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
else:
    _MMAP_KWARGS["access"] = mmap.ACCESS_READ
#: Names starting with this are never keys (listings skip them): the temporary files of writes.
HIDDEN = ".tmp-"


def _aligned_buffer(size: int, align: int = 64) -> memoryview:
    """A writable buffer of ``size`` bytes starting at a multiple of ``align``."""
    raw = np.empty(size + align, dtype=np.uint8)
    offset = -raw.ctypes.data % align
    return memoryview(raw[offset:offset + size])


class LocalStore(Store):
    """Objects are files under ``root``; a key's '/' separators become folders.

    Writes go to a temporary file in the same folder and are renamed into place
    (put) or hard-linked into place (put_if_absent), so a crashed writer never
    leaves half an object under its final key. The root is created by the first
    write, not on open (a mistyped path must not appear on disk); a missing root
    reads as an empty store. Deletes remove folders they leave empty.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"cannot open {self.url}: {self.root} exists and is not a folder")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def fits(self, key: str) -> bool:
        # file names stop at 255 bytes, and a write goes through ".tmp-XXXXXXXX-<name>" first
        return all(len(part.encode()) <= 255 - 14 for part in key.split("/"))

    def _error(self, operation: str, key: str, cause: OSError) -> StoreError:
        return store_error(operation, key, self.url, cause)

    def _write(self, operation: str, key: str, data: Payload, place: Callable[[str, Path], bool]) -> bool:
        """Write ``data`` to a temporary file beside the key's path, then ``place`` it under the key.

        A delete may remove the (empty) folder between our mkdir and our temporary
        file; that is retried once. Errors other than that become StoreError.
        """
        path = self._path(key)
        for attempt in (1, 2):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix="-" + path.name)
                break
            except FileNotFoundError as e:
                if attempt == 2 or not self.root.is_dir():
                    raise self._error(operation, key, e) from e
            except (FileExistsError, NotADirectoryError) as e:
                if not self.root.is_dir():
                    raise self._error(operation, key, e) from e
                raise StoreError(f"cannot write {key!r} in {self.url}: "
                                 "a part of the key is already an object") from None
            except OSError as e:
                raise self._error(operation, key, e) from e
        moved = False
        try:
            try:
                with os.fdopen(fd, "wb") as f:
                    for part in as_parts(data):
                        f.write(part)
                return place(tmp, path)
            finally:
                moved = not os.path.lexists(tmp)
                if not moved:
                    os.unlink(tmp)
        except FileNotFoundError as e:
            if not moved or not self.root.is_dir():
                raise self._error(operation, key, e) from e
            # a delete_prefix renamed the folder away, temporary file and all (whether or not another writer
            # has made the folder again since): the write comes after the delete
            return self._write(operation, key, data, place)
        except OSError as e:
            raise self._error(operation, key, e) from e

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFoundError(f"no object {key!r} in {self.url}") from None
        except OSError as e:
            raise self._error("get", key, e) from e

    def get_buffer(self, key: str) -> Buffer:
        """Map the file read-only instead of copying it (page-aligned, so tiles decode in place);
        files under ``MMAP_MIN_BYTES`` are read into a 64-byte aligned buffer instead.

        Safe against concurrent writers: put and put_if_absent replace a file by
        rename or link, never rewrite it in place, so a mapping keeps seeing the
        old, complete object. The mapping lives as long as the arrays viewing it
        (on Python < 3.13 it holds a file descriptor as long, too).
        """
        try:
            with open(self._path(key), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size >= MMAP_MIN_BYTES:
                    return mmap.mmap(f.fileno(), 0, **_MMAP_KWARGS)
                buf = _aligned_buffer(size)
                return buf[:f.readinto(buf)]
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFoundError(f"no object {key!r} in {self.url}") from None
        except OSError as e:
            if e.errno == errno.ENOMEM:  # the process's memory (e.g. a worker's memory_mb), not the store, failed
                raise MemoryError(f"get_buffer {key!r} in {self.url}: cannot map the object: {e}") from e
            raise self._error("get_buffer", key, e) from e

    def get_head(self, key: str, size: int) -> tuple[bytes, int]:
        try:
            with open(self._path(key), "rb") as f:
                return f.read(size), os.fstat(f.fileno()).st_size
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFoundError(f"no object {key!r} in {self.url}") from None

    def put(self, key: str, data: Payload) -> None:
        self._write("put", key, data, lambda tmp, path: os.replace(tmp, path))

    def put_if_absent(self, key: str, data: Payload) -> bool:
        def link(tmp: str, path: Path) -> bool:
            try:
                os.link(tmp, path)  # atomic, and fails if the target exists
                return True
            except FileExistsError:
                return False

        return self._write("put_if_absent", key, data, link)

    def exists(self, key: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(self._path(key)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as e:
            raise self._error("exists", key, e) from e

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return  # not an object: a folder is only a key prefix
        except OSError as e:
            raise self._error("delete", key, e) from e
        self._remove_empty_folders(path.parent)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every key under ``prefix``. A prefix naming a folder that holds folders (``jobs/<run>/``:
        leases and results spread over hash folders) is moved out of the store in one rename, into the
        system's temporary folder when it is on the same file system, and removed there on a background
        thread: removing a folder costs 0.3-1.4 ms on ext4 mounted with ``discard`` (measured,
        benchmarks/README.md "Small jobs"), so a small job's bookkeeping took longer to delete than to
        compute. The keys are gone from the store at once; the files, before this process exits. The trees
        wait in a folder only this user can open (``numpywren-deleted-<pid>-*``, mode 0700); a process
        killed before it removed them leaves that folder, and the next one to delete a tree removes it."""
        try:
            folder = self._path(prefix[:-1]) if prefix.endswith("/") else None
        except ValueError:  # not a key's folder ("a//"): the general way names the problem
            folder = None
        trash = _trash_beside(self.root)
        if folder is None or trash is None or not _holds_folders(folder):
            return super().delete_prefix(prefix)
        try:
            os.rename(folder, trash)
        except OSError:
            # the folder deleted meanwhile, or the trash's folder gone (drain_removals, a temporary-folder
            # cleaner), another file system: the general way, which is a no-op for a folder already gone
            return super().delete_prefix(prefix)
        self._remove_empty_folders(folder.parent)
        _Remover.remove(trash)

    def _remove_empty_folders(self, folder: Path) -> None:
        """Remove ``folder`` and its parents while they are empty, up to (not including) the root.

        Best effort and race-free: rmdir refuses a folder that a writer has just
        put a file in, and a writer whose folder vanished retries (see _write).
        """
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter([key for key, _path in self._walk(prefix, "list")])

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Size and mtime from stat; the etag is (inode, size, mtime in ns) in hex, so any rewrite changes it."""
        infos = []
        for key, path in self._walk(prefix, "list_info"):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # deleted since the listing
            except OSError as e:
                raise self._error("list_info", key, e) from e
            etag = f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"
            infos.append(ObjectInfo(key, st.st_size, st.st_mtime, etag))
        return iter(infos)

    def _walk(self, prefix: str, operation: str) -> list[tuple[str, str]]:
        """(key, path) of every object under ``prefix``, sorted by key; a missing root or folder is empty."""
        if ".." in prefix.split("/"):
            raise ValueError(f"invalid store prefix {prefix!r}")
        # Walk only the deepest folder the prefix names, not the whole store.
        base = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root

        def failed(e: OSError) -> None:
            if not isinstance(e, (FileNotFoundError, NotADirectoryError)):  # gone: removed since listed
                raise self._error(operation, prefix, e) from e

        found = []
        for dirpath, _dirs, files in os.walk(base, onerror=failed):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(HIDDEN):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    found.append((key, os.path.join(dirpath, name)))
        return sorted(found)


_trash_folder: list = []   # this process's private folder for deleted trees (created on first use)
#: The private folders' names: this prefix, the process id, "-", a random part.
TRASH_PREFIX = "numpywren-deleted-"


def _trash_beside(root: Path) -> Path | None:
    """A new path in this process's private folder (mode 0700, in the system's temporary folder) if that is on
    ``root``'s file system, so that a rename moves a tree there in one step; else None. Private, because a
    store's own folder may be what keeps its files from other users."""
    temp = tempfile.gettempdir()
    try:
        if os.stat(temp).st_dev != os.stat(root).st_dev:
            return None
        with _Remover._lock:
            first = not _trash_folder
            if first or not os.path.isdir(_trash_folder[0]):
                _trash_folder[:] = [tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{os.getpid()}-", dir=temp)]
    except OSError:
        return None
    if first:
        _remove_orphans(temp)
    return Path(_trash_folder[0]) / uuid.uuid4().hex


def _remove_orphans(temp: str) -> None:
    """Queue for removal this user's folders of deleted trees whose process is gone (killed before its exit
    handler ran). Safe whatever they hold: only deleted trees, and a rename into a folder removed meanwhile
    deletes in place instead."""
    try:
        entries = list(os.scandir(temp))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(TRASH_PREFIX):].partition("-")[0] if entry.name.startswith(TRASH_PREFIX) else ""
        try:
            if (not pid.isdigit() or _alive(int(pid)) or not entry.is_dir(follow_symlinks=False)
                    or entry.stat(follow_symlinks=False).st_uid != os.getuid()):
                continue
        except OSError:
            continue
        _Remover.remove(Path(entry.path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True   # exists, another user's
    return True


def _holds_folders(folder: Path) -> bool:
    """``folder`` is a folder with at least one folder in it (else deleting in place costs one rmdir)."""
    try:
        with os.scandir(folder) as entries:
            return any(entry.is_dir(follow_symlinks=False) for entry in entries)
    except OSError:
        return False


class _Remover:
    """One daemon thread removing renamed-away folders; whatever is left is removed before the process exits."""

    _queue: "queue.SimpleQueue[Path]" = queue.SimpleQueue()
    _thread: threading.Thread | None = None
    _lock = threading.Lock()
    _pending = 0

    @classmethod
    def remove(cls, folder: Path) -> None:
        with cls._lock:
            cls._pending += 1
            if cls._thread is None or not cls._thread.is_alive():
                cls._thread = threading.Thread(target=cls._run, name="numpywren-store-remover", daemon=True)
                cls._thread.start()
        cls._queue.put(folder)

    @classmethod
    def _run(cls) -> None:
        while True:
            folder = cls._queue.get()
            shutil.rmtree(folder, ignore_errors=True)
            with cls._lock:
                cls._pending -= 1

    @classmethod
    def drain(cls, timeout: float = 60.0) -> None:
        """Remove what is still queued on the calling thread, and wait for the folder in progress (at exit)."""
        while True:
            try:
                folder = cls._queue.get_nowait()
            except queue.Empty:
                break
            shutil.rmtree(folder, ignore_errors=True)
            with cls._lock:
                cls._pending -= 1
        deadline = time.monotonic() + timeout
        while cls._pending > 0 and time.monotonic() < deadline:
            time.sleep(0.01)


def drain_removals(timeout: float = 60.0) -> None:
    """Finish removing what delete_prefix renamed away, and its private folder (done at exit; tests call it
    to look at the folder). What the background thread has not removed within ``timeout`` is removed here,
    on the calling thread: an exit kills that thread mid-tree, and the rest would stay in the temporary
    folder for good (two removals of one tree are harmless; a delete_prefix renaming into the folder as it
    goes deletes in place instead)."""
    _Remover.drain(timeout)
    with _Remover._lock:
        folder = _trash_folder.pop() if _trash_folder else None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(drain_removals)
