"""The one interface every store implements: bytes in, bytes out, by key.

Everything a worker needs or produces goes through a store, so the interface is
kept to what both a folder and S3 can do well: whole-object get/put, existence,
prefix listing, deletion and an atomic put-if-absent (used for task leases).
"""
from __future__ import annotations

import abc
from typing import Iterable, Iterator, NamedTuple, Sequence, Union

Buffer = Union[bytes, bytearray, memoryview]
#: A value to store: one buffer, or several written back to back (header + tile)
#: so callers never have to concatenate large arrays just to store them.
Payload = Union[Buffer, Sequence[Buffer]]


class StoreError(RuntimeError):
    """A store could not be reached or refused an operation."""


def store_error(operation: str, key: str, url: str, cause: BaseException) -> StoreError:
    """The StoreError for a failed operation: it names the operation, key, store and cause."""
    error = StoreError(f"{operation} {key!r} in {url} failed: {type(cause).__name__}: {cause}")
    error.__cause__ = cause
    return error


class KeyNotFoundError(StoreError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "key not found"


class ObjectInfo(NamedTuple):
    """One listed object: enough to tell its age and which write put it there."""

    key: str
    size: int
    mtime: float  # POSIX seconds
    etag: str  # changes whenever the object is rewritten; compare only within one store


def check_key(key: str) -> str:
    """Refuse keys that a folder and a bucket would read differently ("", "/a", "a//b", "./a", "a/../b")."""
    if not isinstance(key, str) or not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid store key {key!r}: use '/'-separated names, none empty, '.' or '..'")
    return key


def as_parts(data: Payload) -> list[memoryview]:
    """Normalise a payload to a list of byte views (no copies).

    Only a list or tuple is several parts: anything else with the buffer
    protocol (bytes, memoryview, a contiguous numpy array) is one part, never
    iterated element by element.
    """
    parts = data if isinstance(data, (list, tuple)) else [data]
    return [memoryview(part).cast("B") for part in parts]


class Store(abc.ABC):
    """A flat key -> bytes namespace. Keys use '/' as a separator."""

    #: A URL from which :func:`numpywren.storage.open_store` re-opens this store
    #: (this is how workers find it: the URL travels in the task event).
    url: str

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise KeyNotFoundError if it is missing."""

    def get_buffer(self, key: str) -> Buffer:
        """Return the object's bytes as a read-only buffer, as cheaply as the store allows.

        The default is :meth:`get`; LocalStore maps the file instead of copying
        it (the tile read path uses this). Treat the result as read-only.
        """
        return self.get(key)

    def get_head(self, key: str, size: int) -> tuple[bytes, int]:
        """The object's first ``size`` bytes (or all of it, if shorter) and its total length.

        Lets a caller check a tile's header without reading its array; the
        default reads the whole object, stores override it with a ranged read.
        """
        data = self.get(key)
        return bytes(data[:size]), len(data)

    @abc.abstractmethod
    def put(self, key: str, data: Payload) -> None:
        """Write the object atomically: readers see the old or the new value, never half."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: Payload) -> bool:
        """Atomically create the object; return False (and write nothing) if it exists."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True if the key exists."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the key; a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix``, in lexicographic order."""

    def fits(self, key: str) -> bool:
        """Whether an object can be stored under ``key`` here (an over-long name is refused by the backend)."""
        return True

    def list_after(self, prefix: str, start_after: str) -> Iterator[str]:
        """Like :meth:`list`, only keys sorting after ``start_after`` (S3: ``StartAfter``, so the
        requests grow with the keys returned, not with the keys skipped)."""
        return (key for key in self.list(prefix) if key > start_after)

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Like :meth:`list`, but yield an :class:`ObjectInfo` (size, mtime, etag) per key."""
        raise NotImplementedError(f"{type(self).__name__} does not implement list_info")

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every key under ``prefix``."""
        self.delete_many(list(self.list(prefix)))

    def __reduce__(self):
        # Stores travel to workers as their URL, never as live connections.
        from numpywren.storage import open_store

        return (open_store, (self.url,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
