"""Unnamed results that delete themselves: a temporary matrix goes from the store with its last handle.

An operator's result (``A + B``, ``A @ B``) gets a key under ``matrices/`` and an
owner token shared by its handle and its views (``.T`` copies the handle's
``__dict__``); when the last of them is garbage, a ``weakref.finalize`` on the
token deletes the matrix. The owners are also registered by place (store URL,
key), so that writing a job's output there (``out=`` the temporary or its key)
makes it permanent: a job's named result is never deleted behind the user's back.

A driver that is killed runs no finalizer. So each temporary is also registered in
the store, as ``jobs/<driver>/temporaries/<key>`` under this process's own owner id,
whose heartbeat (numpywren.heartbeat) says the process is alive; ``numpywren store
gc`` deletes the temporaries registered by an owner whose heartbeat stopped, with
the rest of its objects. ``keep()`` and adoption by a job remove the registration.
"""
from __future__ import annotations

import logging
import threading
import weakref
from urllib.parse import quote, unquote

from numpywren import protocol
from numpywren.heartbeat import Heartbeat
from numpywren.storage import open_store

log = logging.getLogger(__name__)

_owners: "weakref.WeakValueDictionary[tuple[str, str], _Owner]" = weakref.WeakValueDictionary()
_lock = threading.Lock()
_driver = protocol.new_id("driver")  # this process, as the owner of its temporaries in every store
_heartbeats: dict = {}  # store URL -> the Heartbeat of this process there
TEMPORARIES = "temporaries"


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
    _register(M.store, M.key)
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
        _unregister(store_url, key)


def registration_key(owner: str, key: str) -> str:
    """Where ``owner`` registers its temporary ``key`` (under the owner's prefix: gc finds it there)."""
    return f"{protocol.owner_prefix(owner)}{TEMPORARIES}/{quote(key, safe='')}"


def registered_key(store_key: str) -> str | None:
    """The temporary matrix a registration names (None if ``store_key`` is not a registration)."""
    parts = store_key.split("/")
    if len(parts) == 4 and parts[0] == protocol.JOBS and parts[2] == TEMPORARIES:
        return unquote(parts[3])
    return None


def _register(store, key: str) -> None:
    with _lock:
        if store.url not in _heartbeats:
            _heartbeats[store.url] = Heartbeat(store, _driver, info={"temporaries": True})
    store.put(registration_key(_driver, key), b"")


def _unregister(store_url: str, key: str) -> None:
    try:
        open_store(store_url).delete(registration_key(_driver, key))
    except Exception as e:  # noqa: BLE001 - gc would delete it with the rest of this driver's objects
        log.debug("could not unregister temporary %s in %s: %r", key, store_url, e)


def _delete_quietly(url: str, key: str) -> None:
    try:
        store = open_store(url)
        store.delete_prefix(f"{key}/")
        store.delete(registration_key(_driver, key))
    except Exception as e:  # noqa: BLE001 - at interpreter exit the store may be gone; gc finds what is left
        log.debug("could not delete temporary %s in %s: %r", key, url, e)
