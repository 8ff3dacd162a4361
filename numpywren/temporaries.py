"""Unnamed results that delete themselves: a temporary matrix goes from the store with its last handle.

An operator's result (``A + B``, ``A @ B``) gets a key under ``matrices/`` and an
owner token shared by its handle and its views (``.T`` copies the handle's
``__dict__``); when the last of them is garbage, a ``weakref.finalize`` on the
token deletes the matrix. The owners are also registered by place (store URL,
key), so that writing a job's output there (``out=`` the temporary or its key)
makes it permanent: a job's named result is never deleted behind the user's back.
"""
from __future__ import annotations

import logging
import threading
import weakref

from numpywren.storage import open_store

log = logging.getLogger(__name__)

_owners: "weakref.WeakValueDictionary[tuple[str, str], _Owner]" = weakref.WeakValueDictionary()
_lock = threading.Lock()


class _Owner:
    """Shared by a temporary result and its views; when the last goes, the finalizer deletes the matrix."""

    __slots__ = ("finalizer", "__weakref__")


def temporary(M):
    """Mark ``M`` (an unnamed result) to be deleted from the store when no handle refers to it any more."""
    owner = _Owner()
    owner.finalizer = weakref.finalize(owner, _delete_quietly, M.store.url, M.key)
    M.__dict__["_owner"] = owner
    with _lock:
        _owners[(M.store.url, M.key)] = owner
    return M


def keep(M):
    """Make a temporary result permanent (it stays at ``M.key`` until ``M.delete()``)."""
    owner = M.__dict__.pop("_owner", None)
    if owner is not None:
        owner.finalizer.detach()
    release(M.store.url, M.key)
    return M


def release(store_url: str, key: str) -> None:
    """Whatever temporary lives at (``store_url``, ``key``) is permanent from now on (a job writes there)."""
    with _lock:
        owner = _owners.pop((store_url, key), None)
    if owner is not None:
        owner.finalizer.detach()


def _delete_quietly(url: str, key: str) -> None:
    try:
        open_store(url).delete_prefix(f"{key}/")
    except Exception as e:  # noqa: BLE001 - at interpreter exit the store may be gone; gc finds what is left
        log.debug("could not delete temporary %s in %s: %r", key, url, e)
