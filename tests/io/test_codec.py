"""Codec round trips, error bounds on adversarial rows, metadata, bad inputs and corrupted blobs."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from pipeline.io import bitpack
from pipeline.io.codec import CodecSpec, decode, encode
from pipeline.errors import ConfigError, SchemaError


def topk_rows(n: int, k: int, vocab: int, seed: int = 0, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Realistic-looking rows: distinct ids, log-softmax of random logits, sorted descending."""
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.choice(vocab, size=k, replace=False) for _ in range(n)]) if n else np.zeros((0, k), int)
    logits = rng.standard_normal((n, k + 5)) * scale
    lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return ids, -np.sort(-lp, axis=1)[:, :k].astype(np.float32)


def adversarial_rows(k: int) -> np.ndarray:
    """Rows the quantizer must survive: ties, huge gaps, tiny gaps, values down to -1e4, zeros, half-steps."""
    rng = np.random.default_rng(1)
    rows = [
        np.zeros(k), np.full(k, -1e4), np.full(k, -3.0),                       # all ties
        np.r_[0.0, np.full(k - 1, -1e4)], np.r_[-1e-7, np.full(k - 1, -9999.5)],  # one huge gap
        -np.linspace(0, 1e4, k), -np.linspace(100, 9000, k),                 # many huge gaps, far anchor
        -np.cumsum(np.full(k, 0.02)), -np.cumsum(np.full(k, 0.06)),          # gaps at half / one and a half steps
        -np.cumsum(rng.exponential(0.01, k)), -np.cumsum(rng.exponential(30, k)),
        np.r_[-100.03, -np.linspace(100.1, 101, k - 1)],                     # fp16 would miss -100.03 by 0.03
        -np.sort(rng.uniform(0, 1e4, k)), -np.sort(rng.uniform(0, 1e-3, k)),
    ]
    return np.stack([np.sort(np.asarray(r, np.float64)[:k])[::-1] for r in rows]).astype(np.float32)


@pytest.mark.parametrize("k,vocab", [(10, 8192), (1, 50), (5, 200), (10, 151_936), (3, 2**31)])
def test_lossless_round_trip_is_exact_in_fp16(k, vocab):
    spec = CodecSpec("lossless", k=k, vocab_size=vocab)
    ids, lp = topk_rows(300, k, min(vocab, 10**6), seed=k)
    ids[0, 0] = vocab - 1
    blobs = encode(spec, ids, lp)
    dec_ids, dec_lp = decode(spec, *blobs, n=len(ids))
    assert dec_ids.dtype == np.int32 and dec_lp.dtype == np.float32
    np.testing.assert_array_equal(dec_ids, ids)
    np.testing.assert_array_equal(dec_lp, lp.astype(np.float16).astype(np.float32))
    assert np.abs(dec_lp - lp).max() <= spec.max_abs_error


def test_lossless_keeps_adversarial_rows_and_int32_ids():
    spec = CodecSpec("lossless", k=10, vocab_size=70_000)
    lp = adversarial_rows(10)
    ids = np.tile(np.arange(69_990, 70_000, dtype=np.int32), (len(lp), 1))
    dec_ids, dec_lp = decode(spec, *encode(spec, ids, lp), n=len(lp))
    np.testing.assert_array_equal(dec_ids, ids)
    np.testing.assert_array_equal(dec_lp, lp.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("k,vocab,step", [(10, 8192, 0.04), (1, 100, 0.04), (10, 70_000, 0.04), (4, 300, 0.5),
                                          (10, 32_000, 1e-3)])
def test_quantized_error_bound_holds_for_every_value(k, vocab, step):
    spec = CodecSpec("quantized", k=k, vocab_size=vocab, step=step)
    ids, lp = topk_rows(200, k, vocab, seed=3)
    lp = np.concatenate([lp, adversarial_rows(k)])
    ids = np.concatenate([ids, np.tile(np.arange(k), (len(lp) - len(ids), 1))])
    dec_ids, dec_lp = decode(spec, *encode(spec, ids, lp), n=len(lp))
    np.testing.assert_array_equal(dec_ids, ids)
    err = np.abs(dec_lp.astype(np.float64) - lp)
    # the stated bound, plus the float32 rounding of the decoded value (documented on max_abs_error)
    assert (err <= spec.max_abs_error + np.spacing(np.abs(lp))).all(), err.max()
    assert (np.diff(dec_lp, axis=1) <= 0).all(), "decoded rows must stay sorted descending"
    assert (dec_lp <= 0).all()
    on_grid = dec_lp.astype(np.float64) / -step
    assert (np.abs(on_grid - np.rint(on_grid)) <= 1e-3 + np.spacing(np.abs(dec_lp)) / step).all()


def test_quantized_is_smaller_than_lossless():
    ids, lp = topk_rows(500, 10, 8192, seed=5)
    sizes = {name: sum(map(len, encode(CodecSpec(name, 10, 8192), ids, lp))) for name in ("lossless", "quantized")}
    assert sizes["quantized"] < sizes["lossless"] < 500 * 10 * 4


@pytest.mark.parametrize("name", ["lossless", "quantized"])
def test_zero_rows_round_trip(name):
    spec = CodecSpec(name, k=10, vocab_size=1000)
    blobs = encode(spec, np.zeros((0, 10), np.int64), np.zeros((0, 10), np.float32))
    assert blobs == (b"", b"")
    ids, lp = decode(spec, *blobs, n=0)
    assert ids.shape == lp.shape == (0, 10) and ids.dtype == np.int32 and lp.dtype == np.float32


def test_metadata_round_trip_with_bytes_keys():
    for spec in (CodecSpec("quantized", 10, 151_936, step=0.03, zstd_level=3), CodecSpec("lossless", 1, 2)):
        md = spec.to_metadata()
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in md.items())
        as_parquet = {k.encode(): v.encode() for k, v in {**md, "schema": "logit_shard"}.items()}
        assert CodecSpec.from_metadata(as_parquet) == spec == CodecSpec.from_metadata(md)


@pytest.mark.parametrize("md,match", [
    ({}, "no 'codec'"),
    ({"codec": "zfp", "codec_version": "1"}, "unknown codec"),
    ({"codec": "lossless", "codec_version": "9", "codec_k": "10", "codec_vocab_size": "5"}, "codec_version"),
    ({"codec": "quantized", "codec_version": "1", "codec_k": "10", "codec_vocab_size": "50"}, "codec_step"),
    ({"codec": "lossless", "codec_version": "1", "codec_k": "ten", "codec_vocab_size": "50"}, "bad codec"),
    ({"codec": "lossless", "codec_version": "1", "codec_k": "0", "codec_vocab_size": "50"}, "codec.k"),
])
def test_bad_metadata_raises_schema_error(md, match):
    with pytest.raises(SchemaError, match=match):
        CodecSpec.from_metadata(md)


@pytest.mark.parametrize("kwargs,field", [
    (dict(name="zip", k=10, vocab_size=100), "name"), (dict(name="lossless", k=0, vocab_size=100), "k"),
    (dict(name="lossless", k=10.0, vocab_size=100), "k"), (dict(name="lossless", k=10, vocab_size=5), "vocab_size"),
    (dict(name="quantized", k=10, vocab_size=100, step=0.0), "step"),
    (dict(name="quantized", k=10, vocab_size=100, step=float("nan")), "step"),
    (dict(name="lossless", k=10, vocab_size=100, zstd_level=30), "zstd_level"),
])
def test_validate_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"codec.{field} "):
        CodecSpec(**kwargs).validate()
    CodecSpec("quantized", 10, 100).validate()


def _with(a: np.ndarray, row: int, col: int, value) -> np.ndarray:
    a = a.copy()
    a[row, col] = value
    return a


@pytest.mark.parametrize("name", ["lossless", "quantized"])
def test_bad_inputs_name_what_and_row(name):
    spec = CodecSpec(name, k=4, vocab_size=100)
    ids, lp = topk_rows(6, 4, 100, seed=9)
    cases = [
        (ids[:, :3], lp, r"shape \(n, k=4\)"), (ids, lp[:5], "same shape"), (ids[0], lp[0], "shape"),
        (ids.astype(np.float32), lp, "integers"), (ids, lp.astype(np.int64), "floats"),
        (_with(ids, 2, 1, 100), lp, r"outside \[0, vocab_size=100\) in row 2"),
        (_with(ids, 4, 0, -1), lp, "in row 4"),
        (ids, _with(lp, 3, 2, np.nan), "NaN or infinite in row 3"),
        (ids, _with(lp, 1, 3, -np.inf), "NaN or infinite in row 1"),
        (ids, _with(lp, 5, 0, 0.5), "positive in row 5"),
        (ids, _with(lp, 0, 1, 0.0), "not sorted descending in row 0"),
        (ids, _with(lp, 2, 3, -1e6), "below -65504 .* in row 2"),
    ]
    for bad_ids, bad_lp, match in cases:
        with pytest.raises(SchemaError, match=match):
            encode(spec, bad_ids, bad_lp)


@pytest.mark.parametrize("name", ["lossless", "quantized"])
def test_corrupted_or_mismatched_blobs_raise_schema_error(name):
    spec = CodecSpec(name, k=10, vocab_size=8192)
    ids, lp = topk_rows(50, 10, 8192, seed=11)
    id_blob, lp_blob = encode(spec, ids, lp)
    flipped = bytearray(lp_blob)
    flipped[len(flipped) // 2] ^= 0x40
    bad = [
        (id_blob[:-5], lp_blob, 50), (id_blob, lp_blob[: len(lp_blob) // 2], 50), (id_blob, bytes(flipped), 50),
        (b"garbage!" * 4, lp_blob, 50), (id_blob, b"", 50), (b"", b"", 50), (id_blob, lp_blob, 49),
        (id_blob, lp_blob, 0), (lp_blob, id_blob, 50),
    ]
    for ib, lb, n in bad:
        with pytest.raises(SchemaError):
            decode(spec, ib, lb, n)
    other = CodecSpec(name, k=5, vocab_size=8192)
    with pytest.raises(SchemaError):
        decode(other, id_blob, lp_blob, 50)


def test_well_formed_frame_with_wrong_content_is_caught():
    """Not bit rot but a frame written for another vocab, or a bad payload: still SchemaError, never garbage."""
    lp = np.array([[-0.1, -2.0]], np.float32)
    id_blob, lp_blob = encode(CodecSpec("lossless", 2, 2**24), np.array([[70_000, 5]]), lp)
    with pytest.raises(SchemaError, match="token id 70000 >= vocab_size=70000"):
        decode(CodecSpec("lossless", 2, 70_000), id_blob, lp_blob, 1)  # same 3-byte width, id out of range
    with pytest.raises(SchemaError):
        decode(CodecSpec("lossless", 2, 1_000), id_blob, lp_blob, 1)  # 2-byte width: sizes differ
    rows = bitpack.rice_encode(np.array([[0x7000, 0x7000]]))  # running sum: past the largest finite fp16
    frame = zstandard.ZstdCompressor().compress(rows)
    with pytest.raises(SchemaError, match="beyond what any input gives"):
        decode(CodecSpec("lossless", 2, 2**24), id_blob, frame, 1)


def test_rice_round_trip_with_escapes_and_extremes():
    rng = np.random.default_rng(2)
    cols = [np.zeros(50), rng.geometric(0.02, 50), np.full(50, 2**32 - 1), rng.integers(0, 2**32, 50),
            np.r_[np.zeros(49), 10**9]]
    m = np.stack(cols, axis=1).astype(np.int64)
    cur = bitpack.Cursor(bitpack.rice_encode(m), "test")
    np.testing.assert_array_equal(bitpack.rice_decode(cur, 50, 5), m)
    cur.done()
