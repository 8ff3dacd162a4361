"""The tile codec: a small self-describing header, the raw bytes, and a checksum.

Layout (version 3)::

    b"NWTILE3\\n" | uint32 header length | uint32 CRC32 | JSON header, space-padded | raw array bytes

The JSON header holds dtype (numpy's ``dtype.str``: ``<f8``, ``<f4``, ``<c16``, ``<c8``), shape, byte
count and memory order, and the
tile's *binding*: the matrix key, the matrix generation, the block index and
the run that wrote it. The binding is under the checksum, so a tile copied to
another position or matrix, or left by another run or an older generation of
the matrix, is refused by the reader (:class:`StaleTileError`) instead of being
returned as a value. The header is padded
so that the array bytes start at a multiple of ``ALIGN`` (64) bytes. A tile read
into an aligned buffer (LocalStore maps files, and mappings are page-aligned)
is then used in place by BLAS: numpy copies misaligned operands before a
matmul, which cost ~10% of GEMM throughput with the unpadded version 1.

The CRC32 covers the header *and* the array bytes, so a corrupt, truncated or
tampered tile is reported by name, never returned as garbage. (The CRC
detects accidents, not an attacker who can write the store and recompute it:
the store is a trust boundary, see the README's Security section.) Encoding writes
header and array memory as separate parts (no concatenated copy); decoding
returns a read-only view into the fetched buffer (no copy). Version 1 and 2
tiles (no binding) still decode, but a matrix refuses them (no binding, no trust).

A *constant* tile (every element the same value, as the zero upper tiles of a
Cholesky factor) is written from a zero-strided array (``np.broadcast_to``):
its header holds ``"fill": value`` (``[real, imag]`` for a complex dtype) and no array bytes follow, and it decodes to
a zero-strided read-only view again, so it costs a few hundred bytes to store
and no memory to read.

The checksum is zlib's CRC32; with the optional ``isal`` package installed
the same value is computed ~10x faster (ISA-L's hardware-accelerated CRC32),
which matters because verifying is most of the cost of reading a cached tile.
"""
from __future__ import annotations

import json
import math
import operator
import struct

import numpy as np

try:  # same polynomial and values as zlib.crc32, with SIMD (PCLMUL) acceleration
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - exercised where isal is missing
    from zlib import crc32

MAGIC = b"NWTILE3\n"
MAGIC_V2 = b"NWTILE2\n"
MAGIC_V1 = b"NWTILE1\n"
BINDING = ("matrix", "gen", "block", "run")  # header fields that say what a tile is
ALIGN = 64  # cache line and AVX-512 vector size; the array bytes start on this boundary
_PREFIX = struct.Struct("<II")  # header length, CRC32 of header + body
_LEN_V1 = struct.Struct("<I")
MAX_NDIM, MAX_DIM = 32, 2**48  # a header outside these is corrupt (numpy's own limits, and 256 TiB of bytes)


class CorruptTileError(ValueError):
    """A stored tile failed its integrity check (truncated, overwritten, or not a tile)."""


class StaleTileError(CorruptTileError):
    """A valid tile that is not the one asked for: another matrix, position, generation or run wrote it."""


class InputChangedError(StaleTileError):
    """A matrix was rewritten (new generation) while a job, or a handle, still read the old one."""


def encode(tile: np.ndarray, binding: dict | None = None) -> list:
    """Return the parts of a stored tile (prefix + padded header, then the array's own memory).

    ``binding`` (matrix, gen, block, run) is stored under the checksum.

    C- and Fortran-contiguous arrays are stored as they are (the header records
    the order), so writing a transposed view costs no copy; anything else is
    made C-contiguous first.
    """
    tile = np.asarray(tile)
    if tile.dtype.hasobject or tile.dtype.fields is not None:
        raise TypeError(f"tiles hold plain numeric arrays, not dtype {tile.dtype}")
    if tile.size == 0:
        raise ValueError(f"a tile must hold at least one element, got shape {tile.shape}")
    if is_constant(tile):
        fill = _fill_value(tile.flat[0])
        return [_with_prefix(json.dumps({"dtype": tile.dtype.str, "shape": list(tile.shape), "order": "C",
                                         "nbytes": 0, "fill": fill, **_bound(binding)}).encode(), b"")]
    fortran = tile.ndim > 1 and tile.flags.f_contiguous and not tile.flags.c_contiguous
    if not (fortran or tile.flags.c_contiguous):
        tile = np.ascontiguousarray(tile)
    body = memoryview(tile.T if fortran else tile).cast("B")
    header = json.dumps({"dtype": tile.dtype.str, "shape": list(tile.shape),
                         "order": "F" if fortran else "C", "nbytes": tile.nbytes, **_bound(binding)}).encode()
    return [_with_prefix(header, body), body]


def is_constant(tile: np.ndarray) -> bool:
    """A zero-strided (broadcast) array: stored as its one value (see the module docstring)."""
    return tile.ndim > 0 and tile.size > 1 and not any(tile.strides)


def _fill_value(value):
    """A constant tile's value as JSON: a number, or [real, imag] for a complex dtype (JSON has no complex)."""
    value = value.item()
    return [value.real, value.imag] if isinstance(value, complex) else value


def stored_nbytes(tile: np.ndarray) -> int:
    """Array bytes a tile takes in the store (0 for a constant tile)."""
    return 0 if is_constant(tile) else tile.nbytes


def _bound(binding: dict | None) -> dict:
    return {k: binding[k] for k in BINDING if binding and k in binding}


def _with_prefix(header: bytes, body) -> bytes:
    """Magic, lengths and CRC32 in front of the header, padded so the array bytes start aligned."""
    header += b" " * (-(len(MAGIC) + _PREFIX.size + len(header)) % ALIGN)
    return MAGIC + _PREFIX.pack(len(header), crc32(body, crc32(header))) + header


def decode(data, where: str = "tile") -> np.ndarray:
    """Check and view stored bytes as an array; ``where`` names the tile in errors.

    ``data`` is any buffer (bytes, mmap, memoryview). The result is a read-only
    view of it; its array bytes are 64-byte aligned when ``data`` is.
    """
    return decode_with_binding(data, where)[0]


def decode_with_binding(data, where: str = "tile") -> tuple[np.ndarray, dict | None]:
    """:func:`decode`, plus the tile's binding (None for tiles older than version 3)."""
    magic, header_bytes, body, crc, (dtype, shape, order, _nbytes, header) = _split(data, where)
    _check_crc(body, header_bytes, header, crc, where)
    return _view(body, dtype, shape, order, header), _binding(magic, header)


#: Bytes of a tile :func:`decode_rows` checks and hands on at a time: a few hundred KB stay in a core's
#: L2 between the checksum and the kernel (benchmarks/README.md "Reductions: one pass over each tile").
ROW_BLOCK_BYTES = 256 << 10


def decode_rows(data, where: str = "tile", block_bytes: int | None = None):
    """:func:`decode_with_binding` for a kernel that reads a tile once, row by row: one pass over memory.

    Returns ``(binding, shape, dtype, blocks)``; ``blocks`` yields ``(first row, read-only rows)`` of a
    2-D C-ordered tile in order, each checksummed just before it is handed on, and raises
    :class:`CorruptTileError` **after** the last block if the checksum fails: whatever was computed from
    the blocks may be used only once the iteration has ended without an error. Other tiles (constant,
    Fortran-ordered, not 2-D) are checked whole and come as one block.
    """
    magic, header_bytes, body, crc, (dtype, shape, order, _nbytes, header) = _split(data, where)
    array = _view(body, dtype, shape, order, header)
    if "fill" in header or order != "C" or array.ndim != 2 or array.shape[0] == 0:
        _check_crc(body, header_bytes, header, crc, where)
        return _binding(magic, header), shape, dtype, iter([(0, array)])

    def blocks():
        row_bytes = array.shape[1] * dtype.itemsize
        rows = max(1, (block_bytes or ROW_BLOCK_BYTES) // max(1, row_bytes))
        running = 0 if crc is None else crc32(header_bytes)   # version 1: the CRC covers the body only
        for r in range(0, array.shape[0], rows):
            running = crc32(body[r * row_bytes:(r + rows) * row_bytes], running)
            yield r, array[r:r + rows]
        expected = header.get("crc32") if crc is None else crc
        if running != expected:
            raise CorruptTileError(f"{where}: checksum mismatch (the tile's bytes were altered)")
    return _binding(magic, header), shape, dtype, blocks()


def _split(data, where: str):
    """The parts of stored tile bytes, checked for form (prefix, header, length) but not yet checksummed."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    magic, start, hlen, crc = _prefix(view, where)
    if start + hlen > len(view):
        raise CorruptTileError(f"{where}: truncated tile ({len(view)} bytes, header claims {hlen})")
    header_bytes = view[start:start + hlen]
    parsed = _parse_header(header_bytes, where)
    body = view[start + hlen:]
    nbytes = parsed[3]
    if len(body) != nbytes:
        kind = "truncated tile" if len(body) < nbytes else "tile with trailing bytes"
        raise CorruptTileError(f"{where}: {kind} ({len(body)} of {nbytes} array bytes)")
    return magic, header_bytes, body, crc, parsed


def _check_crc(body, header_bytes, header: dict, crc, where: str) -> None:
    if crc is None:  # version 1: the header carries the body's CRC
        crc, actual = header.get("crc32"), crc32(body)
    else:
        actual = crc32(body, crc32(header_bytes))
    if actual != crc:
        raise CorruptTileError(f"{where}: checksum mismatch (the tile's bytes were altered)")


def _view(body, dtype, shape, order, header) -> np.ndarray:
    """The tile's array over ``body`` (read-only); a constant tile is a zero-strided view of its value."""
    if "fill" in header:
        fill = header["fill"]
        value = complex(*fill) if isinstance(fill, list) else fill
        return np.broadcast_to(np.array(value, dtype=dtype), shape)
    array = np.frombuffer(body, dtype=dtype).reshape(shape, order=order)
    array.flags.writeable = False  # whatever the buffer: a tile read is never a place to write
    return array


#: How many leading bytes of a tile always hold its prefix and header (headers are a few hundred bytes).
HEADER_PEEK_BYTES = 4096


def peek_binding(head, total_size: int, where: str = "tile") -> tuple[dict | None, tuple, np.dtype]:
    """Check a tile's header and length without reading its array bytes.

    ``head`` is the tile's first bytes (at least its header; HEADER_PEEK_BYTES
    suffice), ``total_size`` the object's size. Returns (binding, shape, dtype).
    Used to verify tiles a job skips or has just written, at the cost of a
    small read each; the array's checksum is checked when the tile is read.
    """
    view = memoryview(head).cast("B")
    magic, start, hlen, _crc = _prefix(view, where)
    if start + hlen > len(view):
        raise CorruptTileError(f"{where}: truncated tile header ({len(view)} bytes, header claims {hlen})")
    dtype, shape, _order, nbytes, header = _parse_header(view[start:start + hlen], where)
    if total_size != start + hlen + nbytes:
        raise CorruptTileError(f"{where}: {total_size} bytes, but its header describes {start + hlen + nbytes}")
    return _binding(magic, header), shape, dtype


def _prefix(view: memoryview, where: str):
    magic = bytes(view[:len(MAGIC)])
    if magic not in (MAGIC, MAGIC_V2, MAGIC_V1):
        raise CorruptTileError(f"{where}: not a numpywren tile (bad magic {magic!r})")
    fixed = _LEN_V1 if magic == MAGIC_V1 else _PREFIX
    start = len(MAGIC) + fixed.size
    if len(view) < start:
        raise CorruptTileError(f"{where}: truncated tile ({len(view)} bytes, shorter than its prefix)")
    if magic == MAGIC_V1:
        (hlen,), crc = _LEN_V1.unpack_from(view, len(MAGIC)), None
    else:
        hlen, crc = _PREFIX.unpack_from(view, len(MAGIC))
    return magic, start, hlen, crc


def _binding(magic: bytes, header: dict) -> dict | None:
    if magic != MAGIC:
        return None
    return {k: header.get(k) for k in BINDING}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_header(raw: memoryview, where: str):
    try:
        header = json.loads(bytes(raw))
        dtype, shape = np.dtype(header["dtype"]), tuple(operator.index(s) for s in header["shape"])
        order, nbytes = header.get("order", "C"), operator.index(header["nbytes"])
    except (ValueError, KeyError, TypeError, OverflowError) as e:
        raise CorruptTileError(f"{where}: unreadable tile header ({e})") from None
    # Sizes in Python ints (numpy's int64 product wraps around): an absurd header is corrupt, not a crash.
    fill = header.get("fill")
    constant = (_is_number(fill) or (dtype.kind == "c" and isinstance(fill, list) and len(fill) == 2
                                     and all(map(_is_number, fill))))
    if (dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.itemsize == 0
            or order not in ("C", "F") or len(shape) > MAX_NDIM or not all(0 <= s < MAX_DIM for s in shape)
            or ("fill" in header and not constant)
            or nbytes != (0 if constant else math.prod(shape) * dtype.itemsize)):
        raise CorruptTileError(f"{where}: inconsistent tile header {header}")
    return dtype, shape, order, nbytes, header
