"""``numpywren store gc``: remove what finished or dead drivers left under ``jobs/``, never what a live one needs.

Everything the runtime writes lives under ``jobs/<owner>/`` (numpywren.protocol),
where the owner is an executor session or a run (of a plan). A live session or run
refreshes ``jobs/<owner>/heartbeat`` every ``HEARTBEAT_SECONDS``, so its
newest object is always recent. An owner whose newest object (heartbeat
included) is older than ``older_than`` is dead or finished: its objects go,
and so do the unnamed temporary results (``A @ B``) it registered under
``jobs/<owner>/temporaries/`` (numpywren.temporaries): a killed driver's
temporaries. Other matrices are user data and are never touched.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from numpywren import protocol, temporaries
from numpywren.heartbeat import HEARTBEAT_SECONDS
from numpywren.storage import Store, open_store

#: gc refuses thresholds that a live owner's heartbeat could fall behind.
MIN_OLDER_THAN = 3 * HEARTBEAT_SECONDS


@dataclass
class Collected:
    """What gc found: owners removed (with object counts) and owners kept because they are live."""

    removed: dict[str, int] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(self.removed.values())


def collect(store: "Store | str", older_than: float = 3600.0, dry_run: bool = False,
            now: float | None = None) -> Collected:
    """Delete (or with ``dry_run`` only list) the objects of owners idle for ``older_than`` seconds."""
    if older_than < MIN_OLDER_THAN:
        raise ValueError(f"--older-than must be at least {MIN_OLDER_THAN:.0f} s (three heartbeats), "
                         f"got {older_than:g}")
    store = open_store(store)
    now = time.time() if now is None else now
    groups: dict[str, list] = {}
    for info in store.list_info(protocol.JOBS + "/"):
        owner = info.key.split("/")[1]
        groups.setdefault(owner, []).append(info)
    result = Collected()
    for owner, infos in sorted(groups.items()):
        if max(i.mtime for i in infos) > now - older_than:
            result.kept.append(owner)
            continue
        result.removed[owner] = len(infos)
        if not dry_run:
            for info in infos:  # the driver's temporaries first: their registrations go with the rest
                matrix = temporaries.registered_key(info.key)
                if matrix is not None:
                    store.delete_prefix(f"{matrix}/")
            store.delete_many([i.key for i in infos])
    return result


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"bad age {text!r}: use a number with an optional unit s, m, h or d (e.g. 1h)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_arguments_store(parser) -> None:
    sub = parser.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    gc = sub.add_parser("gc", help="remove what finished or dead runs left under jobs/",
                        description=__doc__.splitlines()[0])
    gc.add_argument("--store", default=None, help="store URL or path (default: $NUMPYWREN_STORE or ~/.numpywren/store)")
    gc.add_argument("--older-than", default="1h", type=parse_age,
                    help="remove owners idle this long (default 1h; units s, m, h, d)")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def run_store(args) -> int:
    result = collect(args.store, args.older_than, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for owner, count in result.removed.items():
        print(f"{verb} jobs/{owner}/ ({count} objects)")
    print(f"{verb} {result.objects} objects of {len(result.removed)} finished or dead runs/sessions; "
          f"kept {len(result.kept)} live")
    return 0
