"""Object stores: the only state shared between the driver and the workers."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from numpywren.storage.base import KeyNotFoundError, ObjectInfo, Store, StoreError
from numpywren.storage.local import LocalStore

__all__ = ["Store", "LocalStore", "S3Store", "StoreError", "KeyNotFoundError", "ObjectInfo", "open_store",
           "default_store_url"]


def default_store_url() -> str:
    """``$NUMPYWREN_STORE`` if set, else a folder in the user's home."""
    return os.environ.get("NUMPYWREN_STORE") or str(Path("~/.numpywren/store").expanduser())


def open_store(url: "str | os.PathLike | Store | None" = None) -> Store:
    """Open a store from a URL: ``file:///path``, a plain path, or ``s3://bucket/prefix``.

    For S3 the endpoint comes from the URL's ``?endpoint=`` query, else from
    ``$NUMPYWREN_S3_ENDPOINT`` or ``$AWS_ENDPOINT_URL`` (for S3-compatible servers).
    Opening the same URL twice in a process returns the same store object.

    Parameters
    ----------
    url : str or os.PathLike or Store, optional
        A path, ``file:///path`` or ``s3://bucket/prefix[?endpoint=...]``; a Store is returned as is;
        ``None`` opens the default store.

    Returns
    -------
    Store
        A LocalStore or an S3Store.

    Raises
    ------
    ValueError
        An empty or unsupported URL.
    StoreError
        An unreachable S3 endpoint or a missing bucket (the URL is named).
    """
    if isinstance(url, Store):
        return url
    url = os.fspath(url) if url is not None else default_store_url()
    if not url.strip():
        raise ValueError("empty store URL: use a path, file:///path or s3://bucket/prefix")
    if "://" not in url and not url.startswith("file:"):  # a plain path: the same folder gives the same store
        url = str(Path(url).expanduser().resolve())
    return _open_cached(url)


@lru_cache(maxsize=32)
def _open_cached(url: str) -> Store:
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from numpywren.storage.s3 import S3Store

        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        endpoint = (query.get("endpoint") or os.environ.get("NUMPYWREN_S3_ENDPOINT")
                    or os.environ.get("AWS_ENDPOINT_URL"))
        if not parsed.netloc:
            raise ValueError(f"S3 store URL {url!r} names no bucket (expected s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint,
                       region=query.get("region") or os.environ.get("AWS_DEFAULT_REGION"))
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"store URL {url!r} names host {parsed.netloc!r}; a local folder is "
                             f"file:///absolute/path (three slashes) or a plain path")
        return LocalStore(unquote(parsed.path))
    if parsed.scheme in ("", ) or len(parsed.scheme) == 1:  # plain path (or a Windows drive)
        return LocalStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use a path, file:///path or s3://bucket/prefix")


def __getattr__(name):  # S3Store imports boto3 lazily: the local path should not pay for it
    if name == "S3Store":
        from numpywren.storage.s3 import S3Store

        return S3Store
    raise AttributeError(name)
