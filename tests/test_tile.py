"""The tile codec: exact round trips, 64-byte aligned array bytes, and loud failures on damaged tiles."""
from __future__ import annotations

import io
import json
import mmap
import struct
import zlib

import numpy as np
import pytest

from numpywren import tile
from numpywren.storage import LocalStore
from numpywren.tile import ALIGN, MAGIC, CorruptTileError, decode, encode


def stored(array) -> bytes:
    return b"".join(bytes(p) for p in encode(array))


def aligned_copy(data: bytes) -> memoryview:
    """The bytes at a 64-byte aligned address, as a mapped file or an aligned read gives them."""
    raw = np.empty(len(data) + ALIGN, np.uint8)
    off = -raw.ctypes.data % ALIGN
    raw[off:off + len(data)] = np.frombuffer(data, np.uint8)
    return memoryview(raw[off:off + len(data)])


def body_offset(data: bytes) -> int:
    hlen, _ = struct.unpack_from("<II", data, len(MAGIC))
    return len(MAGIC) + 8 + hlen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 64), (100, 37), (5,), (2, 3, 4)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_round_trip_is_exact(dtype, shape, order):
    a = np.asarray(np.random.default_rng(0).standard_normal(shape), dtype=dtype, order=order)
    data = stored(a)
    assert body_offset(data) % ALIGN == 0
    b = decode(data)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)


def test_fortran_input_is_stored_without_a_copy_and_read_back_in_its_order():
    a = np.random.default_rng(1).standard_normal((30, 20))
    parts = encode(a.T)  # a transposed view is F-contiguous
    assert np.shares_memory(np.frombuffer(parts[1], np.uint8), a)
    b = decode(b"".join(bytes(p) for p in parts))
    assert b.flags.f_contiguous and not b.flags.c_contiguous
    np.testing.assert_array_equal(b, a.T)


def test_non_contiguous_input_round_trips():
    a = np.arange(200.0).reshape(10, 20)[::2, 3:17:3]
    np.testing.assert_array_equal(decode(stored(a)), a)


def test_decode_views_the_buffer_without_copying_and_is_read_only():
    a = np.random.default_rng(2).standard_normal((40, 50))
    buf = aligned_copy(stored(a))
    b = decode(buf)
    assert np.shares_memory(b, np.frombuffer(buf, np.uint8))
    assert not b.flags.writeable
    assert b.ctypes.data % ALIGN == 0 and b.flags.aligned


def test_decoded_body_is_aligned_when_read_through_a_mapped_file(tmp_path):
    store = LocalStore(tmp_path)
    a = np.random.default_rng(3).standard_normal((512, 300))  # > 1 MB: LocalStore maps it
    store.put("t", encode(a))
    buf = store.get_buffer("t")
    assert isinstance(buf, mmap.mmap)
    b = decode(buf)
    assert b.ctypes.data % ALIGN == 0
    np.testing.assert_array_equal(b, a)


def test_empty_and_object_arrays_are_rejected():
    with pytest.raises(ValueError, match="at least one element"):
        encode(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="object"):
        encode(np.array([[1, None]], dtype=object))


def test_a_changed_byte_in_the_body_is_detected():
    data = bytearray(stored(np.ones((16, 16))))
    data[body_offset(data) + 100] ^= 0x01
    with pytest.raises(CorruptTileError, match=r"block \(0, 1\).*checksum mismatch"):
        decode(bytes(data), where="block (0, 1)")


@pytest.mark.parametrize("keep", [0, 5, 15, 40, -1])
def test_truncated_tiles_are_detected(keep):
    data = stored(np.ones((16, 16)))
    with pytest.raises(CorruptTileError, match="tile-x"):
        decode(data[:keep] if keep >= 0 else data[:-8], where="tile-x")


def test_trailing_bytes_are_detected():
    with pytest.raises(CorruptTileError, match="trailing"):
        decode(stored(np.ones(4)) + b"\0" * 8)


def test_wrong_magic_is_detected():
    npy = io.BytesIO()
    np.save(npy, np.ones(3))  # a .npy file is not a tile
    with pytest.raises(CorruptTileError, match="bad magic"):
        decode(npy.getvalue())
    with pytest.raises(CorruptTileError, match="bad magic"):
        decode(b"NWTILE9\n" + stored(np.ones(3))[8:])


def _retag(data: bytes, **changes) -> bytes:
    """Rewrite header fields keeping the length (and the old CRC): a tampered header."""
    start = len(MAGIC) + 8
    hlen = struct.unpack_from("<I", data, len(MAGIC))[0]
    header = json.loads(data[start:start + hlen])
    header.update(changes)
    new = json.dumps(header).encode().ljust(hlen)
    assert len(new) == hlen
    return data[:start] + new + data[start + hlen:]


@pytest.mark.parametrize("changes", [{"shape": [8, 2]}, {"dtype": "<i8"}, {"order": "F"}])
def test_a_tampered_header_fails_the_checksum(changes):
    # Same byte count, so only the checksum over the header can tell.
    data = stored(np.arange(16.0).reshape(2, 8))
    with pytest.raises(CorruptTileError, match="checksum"):
        decode(_retag(data, **changes))


def test_an_inconsistent_or_unreadable_header_is_detected():
    data = stored(np.arange(16.0).reshape(2, 8))
    with pytest.raises(CorruptTileError, match="inconsistent"):
        decode(_retag(data, nbytes=64))
    start = len(MAGIC) + 8
    with pytest.raises(CorruptTileError, match="unreadable"):
        decode(data[:start] + b"x" + data[start + 1:])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("value", [0.0, -2.5, np.inf])
def test_a_constant_tile_is_stored_as_its_value(dtype, value):
    """A zero-strided array (np.broadcast_to) is stored as one value and read back as one, bound and checked."""
    binding = {"matrix": "L", "gen": "g1", "block": [0, 3], "run": "r1"}
    data = b"".join(bytes(p) for p in encode(np.broadcast_to(np.array(value, dtype), (512, 384)), binding))
    assert len(data) < 512
    array, bound = tile.decode_with_binding(data)
    assert array.shape == (512, 384) and array.dtype == dtype and not array.flags.writeable and bound == binding
    np.testing.assert_array_equal(array, np.full((512, 384), value, dtype))
    assert tile.peek_binding(data, len(data)) == (binding, (512, 384), np.dtype(dtype))
    with pytest.raises(CorruptTileError, match="checksum"):
        decode(_retag(data, fill=value + 1 if np.isfinite(value) else 0.0))   # the value is under the CRC
    with pytest.raises(CorruptTileError, match="trailing bytes"):
        decode(data + b"\0" * 8)
    for bad in ({"fill": "0"}, {"fill": True}, {"nbytes": 8}):
        with pytest.raises(CorruptTileError, match="inconsistent"):
            decode(_retag(data, **bad))
    assert tile.stored_nbytes(np.broadcast_to(np.array(value, dtype), (4, 4))) == 0
    assert tile.stored_nbytes(np.full((4, 4), value, dtype)) == 16 * np.dtype(dtype).itemsize  # only views


def test_version_1_tiles_are_still_readable():
    a = np.random.default_rng(4).standard_normal((6, 5))
    header = json.dumps({"dtype": a.dtype.str, "shape": list(a.shape), "crc32": zlib.crc32(a.tobytes()),
                         "nbytes": a.nbytes}).encode()
    v1 = tile.MAGIC_V1 + struct.pack("<I", len(header)) + header + a.tobytes()
    np.testing.assert_array_equal(decode(v1), a)
    damaged = bytearray(v1)
    damaged[-1] ^= 0x80
    with pytest.raises(CorruptTileError, match="checksum"):
        decode(bytes(damaged))


def test_checksum_matches_zlib():
    # The optional isal CRC32 must give zlib's values, or tiles would not be portable.
    data = np.random.default_rng(5).integers(0, 255, 10_000, dtype=np.uint8)
    assert tile.crc32(data, 12345) == zlib.crc32(data, 12345)


def _signed(header: dict, body: bytes = b"") -> bytes:
    """A hand-made version 2 tile with a valid checksum: only the header's own checks can refuse it."""
    raw = json.dumps(header).encode()
    crc = zlib.crc32(body, zlib.crc32(raw))
    return MAGIC + struct.pack("<II", len(raw), crc) + raw + body


@pytest.mark.parametrize("header,body", [
    ({"dtype": "<f8", "shape": [2**40, 2**40], "order": "C", "nbytes": 0}, b""),  # int64 product wraps to 0
    ({"dtype": "<f8", "shape": [2**63, 2], "order": "C", "nbytes": 0}, b""),      # uint64 product wraps to 0
    ({"dtype": "<f8", "shape": [1], "order": "C", "nbytes": 1e400}, b""),         # JSON's Infinity
    ({"dtype": "<f8", "shape": [2**47, 2**47], "order": "C", "nbytes": 2**97}, b""),  # consistent, but absurd
    ({"dtype": "<f8", "shape": [1] * 100, "order": "C", "nbytes": 8}, bytes(8)),  # more dimensions than numpy has
])
def test_a_header_with_overflowing_sizes_is_corrupt(header, body):
    with pytest.raises(CorruptTileError, match="inconsistent tile header|unreadable tile header|truncated tile"):
        decode(_signed(header, body))
    assert decode(_signed({**header, "shape": [1], "nbytes": 8}, bytes(8))).shape == (1,)  # the rest is fine


def _pieces(data, block_bytes):
    binding, shape, dtype, blocks = tile.decode_rows(data, where="tile-r", block_bytes=block_bytes)
    return shape, dtype, list(blocks)


@pytest.mark.parametrize("block_bytes", [1, 8 * 37, 8 * 37 * 7, 1 << 20])
def test_decode_rows_hands_on_the_tile_in_row_pieces_that_cover_it(block_bytes):
    a = np.random.default_rng(6).standard_normal((100, 37))
    shape, dtype, pieces = _pieces(aligned_copy(stored(a)), block_bytes)
    assert (shape, dtype) == ((100, 37), np.dtype("float64"))
    assert [first for first, _ in pieces] == list(range(0, 100, max(1, block_bytes // (8 * 37))))
    assert all(not rows.flags.writeable for _, rows in pieces)
    np.testing.assert_array_equal(np.concatenate([rows for _, rows in pieces]), a)


@pytest.mark.parametrize("where", ["first", "middle", "last", "stored crc"])
def test_decode_rows_fails_after_the_last_piece_when_a_byte_changed(where):
    a = np.random.default_rng(7).standard_normal((64, 16))
    data = bytearray(stored(a))
    start = body_offset(data)
    at = {"first": start, "middle": start + a.nbytes // 2, "last": len(data) - 1, "stored crc": len(MAGIC) + 4}[where]
    data[at] ^= 0x04
    binding, shape, dtype, blocks = tile.decode_rows(bytes(data), where="tile-r", block_bytes=16 * 8 * 4)
    seen = []
    with pytest.raises(CorruptTileError, match="tile-r: checksum mismatch"):
        for first, rows in blocks:
            seen.append(first)
    assert seen == list(range(0, 64, 4))   # every piece was handed on before the error: use nothing of them


def test_decode_rows_checks_other_tiles_whole_first():
    constant = stored(np.broadcast_to(np.float64(2.5), (8, 8)))
    fortran = stored(np.asfortranarray(np.arange(12.0).reshape(3, 4)))
    for data, want in ((constant, np.full((8, 8), 2.5)), (fortran, np.arange(12.0).reshape(3, 4))):
        _, _, pieces = _pieces(data, 8)
        assert len(pieces) == 1 and pieces[0][0] == 0
        np.testing.assert_array_equal(pieces[0][1], want)
        damaged = bytearray(data)
        damaged[len(MAGIC) + 4] ^= 0x01   # the stored CRC (a constant tile has no body to damage)
        with pytest.raises(CorruptTileError, match="checksum"):
            tile.decode_rows(bytes(damaged), block_bytes=8)   # before any piece is handed on
    a = np.random.default_rng(4).standard_normal((6, 5))
    header = json.dumps({"dtype": a.dtype.str, "shape": list(a.shape), "crc32": zlib.crc32(a.tobytes()),
                         "nbytes": a.nbytes}).encode()
    v1 = tile.MAGIC_V1 + struct.pack("<I", len(header)) + header + a.tobytes()
    np.testing.assert_array_equal(np.concatenate([r for _, r in _pieces(v1, 8 * 5 * 2)[2]]), a)
    damaged = bytearray(v1)
    damaged[-1] ^= 0x80
    with pytest.raises(CorruptTileError, match="checksum"):
        _pieces(bytes(damaged), 8 * 5 * 2)
