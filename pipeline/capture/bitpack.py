"""Byte-level transforms the codec puts in front of zstd: byte planes and a uint8 stream with escapes.

zstd finds repeats and entropy-codes bytes; it does neither well on multi-byte integers whose high bytes are nearly
constant and whose low bytes are noisy. Splitting an array into byte planes (blosc's "shuffle") puts the
predictable bytes next to each other, and small non-negative integers cost one byte with a rare escape.
"""

from __future__ import annotations

import numpy as np

ESCAPE = 255  # a uint8 stream value that means "the real value is the next one in the escape list"


def id_width(vocab_size: int) -> int:
    """Narrowest whole number of bytes that holds every id in [0, vocab_size)."""
    return max(1, (int(vocab_size - 1).bit_length() + 7) // 8)


def to_planes(values: np.ndarray, width: int) -> bytes:
    """Little-endian byte planes of non-negative integers: all lowest bytes first, then the next bytes, ..."""
    le = np.ascontiguousarray(values, dtype="<u4").reshape(-1).view(np.uint8).reshape(-1, 4)
    return np.ascontiguousarray(le[:, :width].T).tobytes()


def from_planes(buf: bytes | memoryview, count: int, width: int) -> np.ndarray:
    """Inverse of `to_planes`: `count` integers of `width` bytes as uint32 (the caller checks the length)."""
    planes = np.frombuffer(buf, dtype=np.uint8, count=count * width).reshape(width, count)
    out = np.zeros((count, 4), dtype=np.uint8)
    out[:, :width] = planes.T
    return out.view("<u4").reshape(count)


def escape_u8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative ints -> (uint8 stream where values >= ESCAPE read ESCAPE, those values minus ESCAPE as uint32)."""
    big = values >= ESCAPE
    small = np.where(big, ESCAPE, values).astype(np.uint8)
    return small, (values[big] - ESCAPE).astype("<u4")


def unescape_u8(small: np.ndarray, escaped: np.ndarray) -> np.ndarray:
    """Inverse of `escape_u8` as int64; `escaped` must hold exactly one value per ESCAPE byte."""
    out = small.astype(np.int64)
    out[small == ESCAPE] += escaped
    return out
