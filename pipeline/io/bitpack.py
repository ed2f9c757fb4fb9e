"""Integer transforms behind the codec: byte planes for ids, Rice codes for log-prob integers, a payload cursor.

Byte planes (blosc's "shuffle"): the little-endian bytes of an integer array split by significance, so zstd sees
nearly constant high bytes together and noisy low bytes together.

Rice codes: a sorted top-k row turns into small non-negative integers (fp16 steps or grid steps between ranks) whose
spread depends on the rank. Each column gets its own parameter p: the value's low p bits go out raw, the rest
(v >> p) in unary. Per sample that costs one byte per column, where zstd's Huffman table for the same bytes costs
~100, and for these near-geometric values it comes within a few percent of the entropy. Both streams are built and
read with whole-array numpy operations.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import SchemaError

MAX_PARAM = 24  # Rice parameters 0..24 cover values up to 2**32 with short unary parts
UNARY_CAP = 32  # a high part >= this is written as UNARY_CAP and stored whole in the escape list


def id_width(count: int) -> int:
    """Narrowest whole number of bytes that holds every integer in [0, count)."""
    return max(1, (int(count - 1).bit_length() + 7) // 8)


def to_planes(values, width: int) -> list[bytes]:
    """Little-endian byte planes of non-negative integers (< 2**32): the lowest bytes, then the next bytes, ..."""
    le = np.ascontiguousarray(values, dtype="<u4").reshape(-1).view(np.uint8).reshape(-1, 4)
    return [le[:, i].tobytes() for i in range(width)]


def from_planes(buf, count: int, width: int) -> np.ndarray:
    """Inverse of `to_planes` on the joined planes: `count` integers of `width` bytes as uint32."""
    planes = np.frombuffer(buf, dtype=np.uint8, count=count * width).reshape(width, count)
    out = np.zeros((count, 4), dtype=np.uint8)
    out[:, :width] = planes.T
    return out.view("<u4").reshape(count)


def rice_encode(matrix: np.ndarray) -> bytes:
    """(n, c) non-negative ints < 2**32 -> c parameters | unary high parts | raw low bits | escaped high parts."""
    cols = np.ascontiguousarray(matrix.T, dtype=np.int64)  # column-major: one parameter per column
    params = np.array([_best_param(col) for col in cols], dtype=np.int64).reshape(-1, 1)
    high = cols >> params
    capped = np.minimum(high, UNARY_CAP).ravel()
    unary = np.ones(int(capped.sum()) + capped.size, dtype=np.uint8)
    unary[np.cumsum(capped + 1) - 1] = 0  # each value: `capped` ones, then a zero
    low = [(col[:, None] >> np.arange(p - 1, -1, -1)) & 1 for col, p in zip(cols, params[:, 0])]
    low_bits = np.concatenate([b.ravel() for b in low]) if low else np.zeros(0, np.int64)
    return b"".join([params.astype(np.uint8).tobytes(), np.packbits(unary).tobytes(),
                     np.packbits(low_bits.astype(np.uint8)).tobytes(), high[high >= UNARY_CAP].astype("<u4").tobytes()])


def rice_decode(cur: "Cursor", n: int, c: int) -> np.ndarray:
    """Inverse of `rice_encode`: read an (n, c) int64 matrix from the cursor."""
    params = cur.array(np.uint8, c).astype(np.int64)
    if (params > MAX_PARAM).any():
        raise SchemaError(f"{cur.what} blob has Rice parameter {int(params.max())} > {MAX_PARAM} (corrupted)")
    bits = np.unpackbits(np.frombuffer(cur.rest(), dtype=np.uint8))
    ends = np.flatnonzero(bits == 0)[: n * c]
    if len(ends) < n * c:
        raise SchemaError(f"{cur.what} blob ends inside its unary codes (truncated or corrupted)")
    high = np.diff(ends, prepend=-1) - 1
    cur.take(-(-(int(ends[-1]) + 1) // 8) if n * c else 0)
    n_low = n * int(params.sum())
    low_bits = np.unpackbits(cur.array(np.uint8, -(-n_low // 8)))[:n_low].astype(np.int64)
    cols, offset = np.empty((c, n), dtype=np.int64), 0
    for j, p in enumerate(params):
        chunk = low_bits[offset: offset + n * p].reshape(n, p)
        cols[j] = chunk @ (1 << np.arange(p - 1, -1, -1)) if p else 0
        offset += n * p
    high = high.reshape(c, n)
    escaped = high == UNARY_CAP
    high[escaped] = cur.array("<u4", int(escaped.sum()))
    if (high[escaped] < UNARY_CAP).any():
        raise SchemaError(f"{cur.what} blob has an escaped value that is not one (corrupted)")
    return ((high << params[:, None]) | cols).T


def _best_param(col: np.ndarray) -> int:
    """Rice parameter with the fewest bits for this column (an escape counts as 32 extra bits)."""
    if not col.size:
        return 0
    params = np.arange(MAX_PARAM + 1)[:, None]
    high = col[None, :] >> params
    bits = np.minimum(high, UNARY_CAP).sum(axis=1) + 32 * (high >= UNARY_CAP).sum(axis=1) + col.size * params[:, 0]
    return int(np.argmin(bits))


class Cursor:
    """Reads a decompressed payload front to back; SchemaError (naming the blob) when it is too short or too long."""

    def __init__(self, buf: bytes, what: str):
        self.buf, self.pos, self.what = memoryview(buf), 0, what

    def take(self, nbytes: int) -> memoryview:
        if self.pos + nbytes > len(self.buf):
            raise SchemaError(f"{self.what} blob ends after {len(self.buf)} bytes, {self.pos + nbytes} needed "
                              f"(corrupted, or written with another spec or row count)")
        self.pos += nbytes
        return self.buf[self.pos - nbytes: self.pos]

    def rest(self) -> memoryview:
        """The unread bytes, without consuming them."""
        return self.buf[self.pos:]

    def array(self, dtype, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype, count=count)

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise SchemaError(f"{self.what} blob has {len(self.buf) - self.pos} bytes left over (corrupted)")
