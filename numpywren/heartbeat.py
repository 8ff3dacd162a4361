"""Heartbeats: how a live executor session or run tells ``numpywren store gc`` to keep its objects."""
from __future__ import annotations

import logging
import threading
import time

from numpywren import protocol
from numpywren.storage import Store

log = logging.getLogger(__name__)
#: How often a live session or run refreshes ``jobs/<owner>/heartbeat``.
HEARTBEAT_SECONDS = 60.0


class Heartbeat:
    """Refreshes ``jobs/<owner>/heartbeat`` on a daemon thread while a session or run is alive.

    ``numpywren store gc`` removes only what no fresh heartbeat protects.
    """

    def __init__(self, store: Store, owner: str, every: float = HEARTBEAT_SECONDS, info: dict | None = None):
        self.store, self.key, self.every = store, protocol.heartbeat_key(owner), every
        self.info = info or {}
        self._stop = threading.Event()
        self.beat()
        self._thread = threading.Thread(target=self._run, name=f"numpywren-heartbeat-{owner}", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        try:
            self.store.put(self.key, protocol.dumps_json({"ok": True, "time": time.time(), **self.info}))
        except Exception:  # noqa: BLE001 - a missed beat only makes gc more careful later
            log.warning("could not refresh heartbeat %s", self.key, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def stop(self, delete: bool = False) -> None:
        self._stop.set()
        if delete:
            try:
                self.store.delete(self.key)
            except Exception:  # noqa: BLE001 - gc removes it once it is old
                log.warning("could not delete heartbeat %s", self.key, exc_info=True)
