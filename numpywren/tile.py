"""The tile codec: a small self-describing header, the raw bytes, and a checksum.

Layout: ``b"NWTILE1\\n"`` | uint32 header length | JSON header | raw C-order bytes.
The header holds dtype, shape and the CRC32 of the raw bytes, so a corrupt or
truncated tile is detected on read and reported by key, never returned as garbage.
Encoding writes header and array memory as separate parts (no concatenated copy);
decoding returns a read-only view into the fetched bytes (no copy).
"""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np

MAGIC = b"NWTILE1\n"
_LEN = struct.Struct("<I")


class CorruptTileError(ValueError):
    """A stored tile failed its integrity check (truncated, overwritten, or not a tile)."""


def encode(tile: np.ndarray) -> list:
    """Return the parts of a stored tile (header bytes, then the array's own memory)."""
    tile = np.ascontiguousarray(tile)
    body = memoryview(tile).cast("B")
    header = json.dumps({"dtype": tile.dtype.str, "shape": list(tile.shape),
                         "crc32": zlib.crc32(body), "nbytes": tile.nbytes}).encode()
    return [MAGIC + _LEN.pack(len(header)) + header, body]


def decode(data: bytes, where: str = "tile") -> np.ndarray:
    """Check and view stored bytes as an array; ``where`` names the tile in errors."""
    view = memoryview(data)
    start = len(MAGIC) + _LEN.size
    if len(data) < start or bytes(view[:len(MAGIC)]) != MAGIC:
        raise CorruptTileError(f"{where}: not a numpywren tile (bad magic)")
    (hlen,) = _LEN.unpack_from(view, len(MAGIC))
    try:
        header = json.loads(bytes(view[start:start + hlen]))
        dtype, shape, crc, nbytes = (np.dtype(header["dtype"]), tuple(header["shape"]),
                                     header["crc32"], header["nbytes"])
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptTileError(f"{where}: unreadable tile header ({e})") from None
    body = view[start + hlen:]
    if len(body) != nbytes:
        raise CorruptTileError(f"{where}: truncated tile ({len(body)} of {nbytes} bytes)")
    if zlib.crc32(body) != crc:
        raise CorruptTileError(f"{where}: checksum mismatch (the tile's bytes were altered)")
    return np.frombuffer(body, dtype=dtype).reshape(shape)
