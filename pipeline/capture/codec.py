"""Per-sample codec: top-k (ids, log-probs) of one sample <-> two zstd blobs for the shard's binary columns.

Both blobs are one zstd frame each (content size and checksum in the frame header/footer); the spec, stored once in
the Parquet schema metadata, and the row count n tell the decoder everything else. Inside the frames:

ids blob (both codecs)   byte planes of the ids at the narrowest width the vocabulary allows (1, 2, 3 or 4 bytes),
                         rank-major: all rank-1 ids, then all rank-2 ids, ...
lossless log-prob blob   fp16 log-probs, exact. Values are <= 0 and sorted, so the sign bit is dropped and the 15-bit
                         magnitudes, non-decreasing within a row, are delta coded (first magnitude, then differences:
                         exact integers); the 16-bit deltas are stored as byte planes, rank-major.
quantized log-prob blob  per row the top-1 log-prob as an fp16 magnitude (uint16 planes; 0xFFFF = this row's anchor is
                         in the float32 list because fp16 would miss it by more than step/2), then the other k-1 values
                         on a grid of `step` measured from that anchor, q_j = round((anchor - lp_j) / step), stored as
                         gaps q_j - q_(j-1) >= 0 in one byte each, rank-major (255 = "255 + next uint32 escape").
                         Layout: anchors | gaps | float32 anchors | uint32 escapes.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import zstandard

from pipeline.capture import bitpack
from pipeline.errors import ConfigError, SchemaError

CODECS = ("lossless", "quantized")
VERSION = 1  # bump when the blob layout changes; readers refuse versions they do not know
FP16_MAX = 65504.0  # log-probs below -FP16_MAX (probability e^-65504, zero in any float) are refused
ANCHOR_ESCAPE = 0xFFFF  # not a finite fp16 magnitude (those are <= 0x7BFF)
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

        quantized: step/2 for every value (the top-1 is kept in fp16, or float32 where fp16 would miss by more than
        step/2; the others sit on a grid of `step` from the stored anchor), plus the float32 rounding of the
        decoded value, <= 2^-24 |lp| (< 1e-6 nats above -16).
        lossless: fp16 rounding, half an fp16 ulp: 2^-7 for |lp| < 32 (p > 1.3e-14), 2^-11 |lp| below that.
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


def _compress(spec: CodecSpec, payload: bytes) -> bytes:
    return _zstd(spec.zstd_level)[0].compress(payload) if payload else b""


def _decompress(spec: CodecSpec, blob: bytes, what: str, min_size: int, max_size: int) -> memoryview:
    """Frame -> payload whose size must lie in [min_size, max_size]; SchemaError for anything else."""
    if not blob:
        if min_size:
            raise SchemaError(f"{what} blob is empty but {min_size} bytes were expected")
        return memoryview(b"")
    try:
        size = zstandard.frame_content_size(blob)
        if not min_size <= size <= max_size:  # also refuses -1 (unknown size) before allocating anything
            raise SchemaError(f"{what} blob holds {size} bytes, expected {min_size}..{max_size} (corrupted, or "
                              f"written with another spec or row count)")
        return memoryview(_zstd(spec.zstd_level)[1].decompress(bytes(blob)))
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
    """(ids (n, k) ints in [0, V), logprobs (n, k) float32 <= 0 sorted descending) -> (ids blob, log-prob blob)."""
    ids, lps = _check(spec, ids, logprobs)
    width = bitpack.id_width(spec.vocab_size)
    id_blob = _compress(spec, bitpack.to_planes(ids.T, width))
    if spec.name == "lossless":
        mag = (lps.astype(np.float16).view(np.uint16) & 0x7FFF).astype(np.int32)
        payload = bitpack.to_planes(np.diff(mag, axis=1, prepend=0).T, 2)
    else:
        payload = _quantize(spec, lps)
    return id_blob, _compress(spec, payload)


def decode(spec: CodecSpec, ids_blob: bytes, lp_blob: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Blobs of `n` rows -> (ids int32 (n, k), logprobs float32 (n, k)); SchemaError if they do not decode."""
    k, width = spec.k, bitpack.id_width(spec.vocab_size)
    raw = _decompress(spec, ids_blob, "ids", n * k * width, n * k * width)
    ids = bitpack.from_planes(raw, n * k, width).reshape(k, n).T
    if ids.size and int(ids.max()) >= spec.vocab_size:
        raise SchemaError(f"ids blob decodes to token id {int(ids.max())} >= vocab_size={spec.vocab_size}")
    if spec.name == "lossless":
        raw = _decompress(spec, lp_blob, "log-prob", 2 * n * k, 2 * n * k)
        mag = np.cumsum(bitpack.from_planes(raw, n * k, 2).reshape(k, n).T, axis=1, dtype=np.int64)
        if mag.size and int(mag.max()) > 0x7BFF:
            raise SchemaError("log-prob blob decodes to a non-finite fp16 value (corrupted)")
        bits = np.where(mag > 0, mag | 0x8000, 0).astype(np.uint16)  # sign back on, 0 stays +0.0
        lps = bits.view(np.float16).astype(np.float32)
    else:
        lps = _dequantize(spec, lp_blob, n)
    return np.ascontiguousarray(ids, dtype=np.int32), np.ascontiguousarray(lps)


def _quantize(spec: CodecSpec, lps: np.ndarray) -> bytes:
    n, k = lps.shape
    top = lps[:, 0]
    anchor16 = top.astype(np.float16)
    exact = np.abs(anchor16.astype(np.float64) - top) <= spec.step / 2  # else keep this anchor as float32
    anchor = np.where(exact, anchor16.astype(np.float64), top.astype(np.float64))
    mags = np.where(exact, anchor16.view(np.uint16) & 0x7FFF, ANCHOR_ESCAPE)
    # rint is monotone, so q is non-decreasing along a sorted row and the gaps are >= 0; anchor - lp >= -step/2
    q = np.maximum(np.rint((anchor[:, None] - lps[:, 1:]) / spec.step), 0).astype(np.int64)
    small, escaped = bitpack.escape_u8(np.diff(q, axis=1, prepend=0).T)  # rank-major gaps
    return b"".join([bitpack.to_planes(mags, 2), small.tobytes(), top[~exact].astype("<f4").tobytes(),
                     escaped.tobytes()])


def _dequantize(spec: CodecSpec, blob: bytes, n: int) -> np.ndarray:
    k = spec.k
    fixed = 2 * n + n * (k - 1)
    raw = _decompress(spec, blob, "log-prob", fixed, fixed + 4 * n * k)
    mags = bitpack.from_planes(raw[: 2 * n], n, 2)
    small = np.frombuffer(raw, np.uint8, count=n * (k - 1), offset=2 * n)
    n_anchor, n_gap = int((mags == ANCHOR_ESCAPE).sum()), int((small == bitpack.ESCAPE).sum())
    if len(raw) != fixed + 4 * (n_anchor + n_gap):
        raise SchemaError(f"log-prob blob holds {len(raw)} bytes, expected {fixed + 4 * (n_anchor + n_gap)} for "
                          f"{n} rows with {n_anchor} float32 anchors and {n_gap} escaped gaps (corrupted)")
    wide = np.frombuffer(raw, "<f4", count=n_anchor, offset=fixed).astype(np.float64)
    escaped = np.frombuffer(raw, "<u4", count=n_gap, offset=fixed + 4 * n_anchor)
    if (mags[mags != ANCHOR_ESCAPE] > 0x7BFF).any() or not (np.isfinite(wide) & (wide <= 0)).all():
        raise SchemaError("log-prob blob decodes to a non-finite or positive anchor (corrupted)")
    anchor = 0.0 - (mags.astype(np.uint16) & 0x7FFF).view(np.float16).astype(np.float64)  # 0.0 - 0.0 is +0.0
    anchor[mags == ANCHOR_ESCAPE] = wide
    q = np.cumsum(bitpack.unescape_u8(small, escaped).reshape(k - 1, n).T, axis=1)
    out = np.empty((n, k), dtype=np.float32)
    out[:, 0] = anchor
    out[:, 1:] = anchor[:, None] - q * spec.step
    return out
