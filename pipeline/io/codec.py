"""Per-sample codec: top-k (ids, log-probs) of one sample <-> two zstd blobs for the shard's binary columns.

Each blob is one zstd frame (content size in the header, checksum at the end) or b"" for a sample with no
positions. The spec, stored once in the Parquet schema metadata, and the row count n tell the decoder the rest.
Inside a frame the payload is a few parts back to back; every part ends a zstd block, so each gets its own Huffman
table (a byte plane of high bytes and one of low bytes have nothing in common). "Planes" below means the little-endian
bytes of an integer array split by significance: all lowest bytes, then all next bytes, ... (blosc's shuffle).

ids blob (both codecs)   u32 U = number of distinct ids in the sample | the U sorted distinct ids as Rice coded gaps
                         (`bitpack.rice_encode`, see below) | each of the n*k ids as its index in that table,
                         row-major, planes at the table's width. A sample reuses few ids (U is a few hundred for
                         thousands of positions), so the index is one or two narrow bytes instead of the id's width.
log-prob blob            an (n, k) matrix of non-negative integers, Rice coded rank by rank (`bitpack.rice_encode`):
                         k parameter bytes | unary high parts | raw low bits | uint32 escapes.
  lossless               exact fp16. Values are <= 0 and sorted, so the sign is dropped and the 15-bit magnitudes,
                         non-decreasing along a row, are delta coded in integer space: column 1 the top-1's
                         magnitude, column j its difference to rank j-1.
  quantized              q_j = round(-lp_j / step) for every rank (one grid, so each value is within step/2 and the
                         errors do not add up along the row; decoded rows stay sorted): column 1 q_1, column j the
                         gap q_j - q_(j-1) >= 0. The top-1 sits on the grid too: fp16 would cost ~12 bits a row,
                         the grid ~6, for a bound that is step/2 either way.
native                   no blobs: typed Parquet list columns any reader decodes (`pipeline.io.native`); encode and
                         decode hand the two columns' cells to that module after the same checks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import zstandard

from pipeline.io import bitpack
from pipeline.errors import ConfigError, SchemaError
from pipeline.io import native

CODECS = ("lossless", "quantized", native.NAME)
VERSION = 1  # bump when the blob layout changes; readers refuse versions they do not know
FP16_MAX = 65504.0  # log-probs below -FP16_MAX (probability e^-65504, zero in any float) are refused
LOSSLESS_RANGE = 32.0  # max_abs_error of the lossless codec holds for |log-prob| < this (p > 1.3e-14)


@dataclass(frozen=True)
class CodecSpec:
    """Which codec, for which top-k width and vocabulary; stored in the shard's schema metadata."""

    name: str
    k: int
    vocab_size: int
    step: float = 0.04
    zstd_level: int = 9

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if self.name not in CODECS:
            raise ConfigError(f"codec.name must be one of {CODECS}, got {self.name!r}")
        for field in ("k", "vocab_size", "zstd_level"):
            if not isinstance(getattr(self, field), (int, np.integer)) or isinstance(getattr(self, field), bool):
                raise ConfigError(f"codec.{field} must be an integer, got {getattr(self, field)!r}")
        if self.k < 1:
            raise ConfigError(f"codec.k must be >= 1, got {self.k}")
        if not self.k <= self.vocab_size <= 2**31:
            raise ConfigError(f"codec.vocab_size must be in [k={self.k}, 2**31] (ids decode to int32),"
                              f" got {self.vocab_size}")
        if not isinstance(self.step, (int, float)) or not 1e-4 <= self.step <= 10:
            raise ConfigError(f"codec.step must be a number in [1e-4, 10] nats (quantisation grid; max error is "
                              f"step/2), got {self.step!r}")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError(f"codec.zstd_level must be in [1, 22], got {self.zstd_level}")

    def to_metadata(self) -> dict[str, str]:
        """Parquet schema metadata entries (all strings); `from_metadata` reads them back."""
        md = {"codec": self.name, "codec_version": str(VERSION), "codec_k": str(self.k),
              "codec_vocab_size": str(self.vocab_size), "codec_zstd_level": str(self.zstd_level)}
        if self.name == "quantized":
            md["codec_step"] = repr(float(self.step))  # repr round-trips a float exactly
        return md

    @classmethod
    def from_metadata(cls, md: dict[bytes | str, bytes | str]) -> "CodecSpec":
        """Spec from schema metadata (keys/values bytes or str); SchemaError if missing, unknown or bad."""
        text = {(key.decode() if isinstance(key, bytes) else key): (v.decode() if isinstance(v, bytes) else v)
                for key, v in (md or {}).items()}
        if "codec" not in text:
            raise SchemaError("schema metadata has no 'codec' entry: not a logit shard, or written without a codec")
        if text["codec"] not in CODECS:
            raise SchemaError(f"unknown codec {text['codec']!r} in schema metadata (this version reads {CODECS})")
        if text.get("codec_version") != str(VERSION):
            raise SchemaError(f"codec_version {text.get('codec_version')!r} in schema metadata; this version reads "
                              f"{VERSION}")
        need = ["codec_k", "codec_vocab_size"] + (["codec_step"] if text["codec"] == "quantized" else [])
        missing = [key for key in need if key not in text]
        if missing:
            raise SchemaError(f"schema metadata of a {text['codec']} codec lacks {missing}")
        try:
            spec = cls(name=text["codec"], k=int(text["codec_k"]), vocab_size=int(text["codec_vocab_size"]),
                       step=float(text.get("codec_step", cls.step)),
                       zstd_level=int(text.get("codec_zstd_level", cls.zstd_level)))
            spec.validate()
        except (ValueError, ConfigError) as e:
            raise SchemaError(f"bad codec entry in schema metadata: {e}") from None
        return spec

    @property
    def max_abs_error(self) -> float:
        """Bound on |decoded - float32 input| in nats.

        quantized: step/2 for every value, the top-1 included (all sit on one grid of `step`), plus the float32
        rounding of the decoded value, <= 2^-24 |lp| (< 1e-6 nats above -16).
        lossless and native (both keep fp16 values): fp16 rounding, half an fp16 ulp: 2^-7 for |lp| < 32
        (p > 1.3e-14), 2^-11 |lp| below that.
        """
        if self.name == "quantized":
            return self.step / 2
        return LOSSLESS_RANGE * 2.0**-12


# ---------------------------------------------------------------------------------------------------- zstd
_local = threading.local()  # zstd contexts are not thread-safe; one per thread and level


def _zstd(level: int) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    cache = _local.__dict__.setdefault("ctx", {})
    if level not in cache:
        cache[level] = (zstandard.ZstdCompressor(level=level, write_checksum=True), zstandard.ZstdDecompressor())
    return cache[level]


def _compress(spec: CodecSpec, parts: list[bytes]) -> bytes:
    """One zstd frame holding the parts back to back, each ending a zstd block so it gets its own Huffman table."""
    total = sum(map(len, parts))
    if not total:
        return b""
    stream = _zstd(spec.zstd_level)[0].compressobj(size=total)  # pledged size: the header records it
    out = []
    for part in parts:
        out += [stream.compress(part), stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)]
    return b"".join(out + [stream.flush()])


def _decompress(spec: CodecSpec, blob: bytes, what: str, min_size: int, max_size: int) -> bitpack.Cursor:
    """Frame -> payload cursor; SchemaError unless the payload size lies in [min_size, max_size]."""
    if not blob:
        if min_size:
            raise SchemaError(f"{what} blob is empty but {min_size} bytes were expected")
        return bitpack.Cursor(b"", what)
    try:
        size = zstandard.frame_content_size(blob)
        if not min_size <= size <= max_size:  # also refuses -1 (unknown size) before allocating anything
            raise SchemaError(f"{what} blob holds {size} bytes, expected {min_size}..{max_size} (corrupted, or "
                              f"written with another spec or row count)")
        return bitpack.Cursor(_zstd(spec.zstd_level)[1].decompress(bytes(blob)), what)
    except zstandard.ZstdError as e:
        raise SchemaError(f"{what} blob is not a valid zstd frame (truncated or corrupted): {e}") from None


# ---------------------------------------------------------------------------------------------------- checks
def _check(spec: CodecSpec, ids: np.ndarray, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (ids int64, logprobs float32), both (n, k); SchemaError names the problem and the first row."""
    ids, lps = np.asarray(ids), np.asarray(logprobs)
    for name, a in (("ids", ids), ("logprobs", lps)):
        if a.ndim != 2 or a.shape[1] != spec.k:
            raise SchemaError(f"{name} must have shape (n, k={spec.k}), got {a.shape}")
    if ids.shape != lps.shape:
        raise SchemaError(f"ids {ids.shape} and logprobs {lps.shape} must have the same shape")
    if ids.dtype.kind not in "iu":
        raise SchemaError(f"ids must be integers, got {ids.dtype}")
    if lps.dtype.kind != "f":
        raise SchemaError(f"logprobs must be floats, got {lps.dtype}")
    ids, lps = ids.astype(np.int64, copy=False), lps.astype(np.float32, copy=False)

    def fail(bad: np.ndarray, what: str) -> None:
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size:
            raise SchemaError(f"{what} in row {rows[0]} ({rows.size} bad rows of {len(bad)})")

    fail((ids < 0) | (ids >= spec.vocab_size), f"token id outside [0, vocab_size={spec.vocab_size})")
    fail(~np.isfinite(lps), "log-prob is NaN or infinite")
    fail(lps > 0, "log-prob is positive")
    fail(lps < -FP16_MAX, f"log-prob below -{FP16_MAX:g} (outside fp16, probability 0)")
    fail(np.diff(lps, axis=1) > 0, "log-probs not sorted descending")
    return ids, lps


# ---------------------------------------------------------------------------------------------------- codec
def encode(spec: CodecSpec, ids: np.ndarray, logprobs: np.ndarray) -> tuple[bytes, bytes]:
    """(ids (n, k) ints in [0, V), logprobs (n, k) float32 <= 0 sorted descending) -> (ids blob, log-prob blob);
    native: the row's two cells, (int32 (n, k), float32 (n, k) holding fp16 values)."""
    spec.validate()
    ids, lps = _check(spec, ids, logprobs)
    if spec.name == native.NAME:
        return native.encode(ids, lps)
    lp_parts = _lossless_parts(lps) if spec.name == "lossless" else _quantized_parts(spec, lps)
    return _compress(spec, _id_parts(spec, ids)), _compress(spec, lp_parts)


def decode(spec: CodecSpec, ids_blob: bytes, lp_blob: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Blobs of `n` rows -> (ids int32 (n, k), logprobs float32 (n, k)); SchemaError if they do not decode."""
    spec.validate()
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise SchemaError(f"row count must be a non-negative integer, got {n!r}")
    if spec.name == native.NAME:  # the cells of the two list columns, not blobs
        return native.decode(spec.k, spec.vocab_size, ids_blob, lp_blob, int(n))
    ids = _decode_ids(spec, ids_blob, int(n))
    lps = _decode_lossless(spec, lp_blob, int(n)) if spec.name == "lossless" else _decode_quantized(spec, lp_blob,
                                                                                                       int(n))
    return ids, lps


# ids: the sample's distinct ids (sorted, gaps Rice coded), then every id as its index in that table (byte planes at
# the table's width, row-major so repeated rows stay repeats for zstd's matcher).
def _id_parts(spec: CodecSpec, ids: np.ndarray) -> list[bytes]:
    if not ids.size:
        return []
    table, index = np.unique(ids.ravel(), return_inverse=True)
    header = np.uint32(len(table)).tobytes() + bitpack.rice_encode(np.diff(table, prepend=0)[:, None])
    return [header, *bitpack.to_planes(index, bitpack.id_width(len(table)))]


def _decode_ids(spec: CodecSpec, blob: bytes, n: int) -> np.ndarray:
    k = spec.k
    if n == 0:
        _decompress(spec, blob, "ids", 0, 0)
        return np.zeros((0, k), np.int32)
    cur = _decompress(spec, blob, "ids", 6 + n * k, 7 + 16 * n * k)
    size = int(cur.array("<u4", 1)[0])
    if not 1 <= size <= n * k:
        raise SchemaError(f"ids blob has a table of {size} distinct ids for {n * k} ids (corrupted)")
    table = np.cumsum(bitpack.rice_decode(cur, size, 1)[:, 0])
    index = bitpack.from_planes(cur.take(n * k * bitpack.id_width(size)), n * k, bitpack.id_width(size))
    cur.done()
    if table[-1] >= spec.vocab_size:
        raise SchemaError(f"ids blob decodes to token id {int(table[-1])} >= vocab_size={spec.vocab_size} "
                          f"(another vocabulary, or corrupted)")
    if int(index.max()) >= size:
        raise SchemaError(f"ids blob points at entry {int(index.max())} of a table of {size} ids (corrupted)")
    return table[index].astype(np.int32).reshape(n, k)


# log-probs: a non-negative (n, k) integer matrix, Rice coded per rank. lossless: the 15-bit fp16 magnitude of the
# top-1 (the sign is always -), then each rank's difference to the previous one (>= 0 along a sorted row).
# quantized: q_j = round(-lp_j / step) for every rank, the top-1 as is, then q_j - q_(j-1) (>= 0: rint is monotone).
def _lossless_parts(lps: np.ndarray) -> list[bytes]:
    mag = (lps.astype(np.float16).view(np.uint16) & 0x7FFF).astype(np.int64)
    return [bitpack.rice_encode(np.diff(mag, axis=1, prepend=0))] if len(lps) else []


def _quantized_parts(spec: CodecSpec, lps: np.ndarray) -> list[bytes]:
    q = np.rint(lps.astype(np.float64) / -spec.step).astype(np.int64)
    return [bitpack.rice_encode(np.diff(q, axis=1, prepend=0))] if len(lps) else []


def _decode_lossless(spec: CodecSpec, blob: bytes, n: int) -> np.ndarray:
    mag = _decode_rows(spec, blob, n, limit=0x7BFF)  # the largest finite fp16 magnitude
    bits = np.where(mag > 0, mag | 0x8000, 0).astype(np.uint16)  # sign back on; 0 stays +0.0
    return bits.view(np.float16).astype(np.float32)


def _decode_quantized(spec: CodecSpec, blob: bytes, n: int) -> np.ndarray:
    q = _decode_rows(spec, blob, n, limit=int(FP16_MAX / spec.step) + 1)
    return (0.0 - q * spec.step).astype(np.float32)  # 0.0 - 0.0 is +0.0


def _decode_rows(spec: CodecSpec, blob: bytes, n: int, limit: int) -> np.ndarray:
    """The (n, k) matrix of per-row running sums; SchemaError when a sum passes `limit` (no such input exists)."""
    k = spec.k
    if n == 0:
        _decompress(spec, blob, "log-prob", 0, 0)
        return np.zeros((0, k), dtype=np.int64)
    # each value costs 1..89 bits: a unary part of 1..UNARY_CAP + 1, up to MAX_PARAM low bits, a 32-bit escape
    cur = _decompress(spec, blob, "log-prob", k + (n * k + 7) // 8, k + 2 + 12 * n * k)
    rows = np.cumsum(bitpack.rice_decode(cur, n, k), axis=1)
    cur.done()
    if rows.size and int(rows.max()) > limit:
        raise SchemaError(f"log-prob blob decodes to a value beyond what any input gives (corrupted)")
    return rows
