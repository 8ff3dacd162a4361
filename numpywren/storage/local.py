"""The embedded default store: a folder on local disk."""
from __future__ import annotations

import mmap
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from numpywren.storage.base import Buffer, KeyNotFoundError, Payload, Store, StoreError, as_parts, check_key

#: Objects at least this large are memory-mapped by get_buffer; smaller ones are read
#: into an aligned buffer (a mapping costs system calls and a descriptor, and saves little there).
MMAP_MIN_BYTES = 1 << 20
#: Python >= 3.13 can map a file without keeping a descriptor open for the mapping's lifetime.
_MMAP_KWARGS = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def _aligned_buffer(size: int, align: int = 64) -> memoryview:
    """A writable buffer of ``size`` bytes starting at a multiple of ``align``."""
    raw = np.empty(size + align, dtype=np.uint8)
    offset = -raw.ctypes.data % align
    return memoryview(raw[offset:offset + size])


class LocalStore(Store):
    """Objects are files under ``root``; a key's '/' separators become folders.

    Writes go to a temporary file in the same folder and are renamed into place
    (put) or hard-linked into place (put_if_absent), so a crashed writer never
    leaves half an object under its final key.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write_temp(self, path: Path, data: Payload) -> str:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"cannot write {path.relative_to(self.root).as_posix()!r} in {self.url}: "
                             "a part of the key is already an object") from None
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix="-" + path.name)
        try:
            with os.fdopen(fd, "wb") as f:
                for part in as_parts(data):
                    f.write(part)
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFoundError(f"no object {key!r} in {self.url}") from None

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
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ, **_MMAP_KWARGS)
                buf = _aligned_buffer(size)
                return buf[:f.readinto(buf)]
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFoundError(f"no object {key!r} in {self.url}") from None

    def get_head(self, key: str, size: int) -> tuple[bytes, int]:
        try:
            with open(self._path(key), "rb") as f:
                return f.read(size), os.fstat(f.fileno()).st_size
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFoundError(f"no object {key!r} in {self.url}") from None

    def put(self, key: str, data: Payload) -> None:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.replace(tmp, path)
        except OSError as e:
            os.unlink(tmp)
            raise StoreError(f"cannot write {key!r} in {self.url}: {e}") from e

    def put_if_absent(self, key: str, data: Payload) -> bool:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)  # atomic, and fails if the target exists
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass  # not an object: a folder is only a key prefix

    def list(self, prefix: str = "") -> Iterator[str]:
        if ".." in prefix.split("/"):
            raise ValueError(f"invalid store prefix {prefix!r}")
        # Walk only the deepest folder the prefix names, not the whole store.
        base = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if not base.is_dir():
            return iter(())
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))
