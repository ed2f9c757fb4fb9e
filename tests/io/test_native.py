"""The native codec: round trips equal to the lossless codec, the schema per codec, and a native shard read by polars,
DuckDB and `datasets.load_dataset` equal to what logitfuse decodes (no Ray: milliseconds to a few seconds)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io.codec import CodecSpec, decode, encode
from pipeline.errors import SchemaError
from pipeline.io import native
from pipeline.io.reader import ShardSet, decode_topk, verify
from pipeline.io.writer import ShardSetWriter
from schemas import logit_shard
from schemas.manifest import Manifest
from tests.io.test_codec import adversarial_rows, topk_rows

K, VOCAB = 6, 5000
LENGTHS = [7, 0, 31, 1, 12]  # positions per sample; a sample with none included


@pytest.mark.parametrize("k,vocab", [(10, 8192), (1, 50), (6, 151_936), (3, 2**31)])
def test_round_trip_equals_the_lossless_codec(k, vocab):
    ids, lps = topk_rows(200, k, min(vocab, 10_000), seed=k)
    ids[0, 0] = vocab - 1
    nat, lossless = CodecSpec("native", k, vocab), CodecSpec("lossless", k, vocab)
    cells = encode(nat, ids, lps)
    assert cells[0].dtype == np.int32 and cells[1].dtype == np.float32 and cells[0].shape == (200, k)
    assert np.array_equal(cells[1], cells[1].astype(np.float16).astype(np.float32))  # fp16 values
    want = decode(lossless, *encode(lossless, ids, lps), n=200)
    for form in (cells, (cells[0].tolist(), cells[1].tolist())):  # arrays, or lists as readers hand them out
        got = decode(nat, *form, n=200)
        assert got[0].dtype == np.int32 and got[1].dtype == np.float32
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])  # bit for bit
    assert np.abs(got[1] - lps).max() <= nat.max_abs_error == lossless.max_abs_error == 2.0**-7


def test_adversarial_rows_and_zero_rows():
    spec = CodecSpec("native", 10, 100)
    lps = adversarial_rows(10)
    ids = np.tile(np.arange(10), (len(lps), 1))
    got = decode(spec, *encode(spec, ids, lps), n=len(lps))
    assert np.array_equal(got[1], lps.astype(np.float16).astype(np.float32))
    ids0, lps0 = decode(spec, *encode(spec, np.zeros((0, 10), int), np.zeros((0, 10), np.float32)), n=0)
    assert ids0.shape == lps0.shape == (0, 10)
    assert decode(spec, [], [], n=0)[0].shape == (0, 10)


@pytest.mark.parametrize("ids,lps,match", [
    ([[1, 2], [3]], [[-1.0, -2.0], [-1.0]], r"not an \(n, k=2\) matrix"),
    ([[1, 2, 3]], [[-1.0, -2.0, -3.0]], r"shape \(1, 3\), expected \(n_positions=1, k=2\)"),
    ([[1, 2]], [[-1.0, -2.0]], r"shape \(1, 2\), expected \(n_positions=2"),
    ([[1, 200]], [[-1.0, -2.0]], r"outside \[0, vocab_size=100\)"),
    (b"\x28\xb5", [[-1.0, -2.0]], "holds a codec blob"),
])
def test_bad_cells_are_schema_errors(ids, lps, match):
    n = 2 if "n_positions=2" in match else 1
    with pytest.raises(SchemaError, match=match):
        decode(CodecSpec("native", 2, 100), ids, lps, n=n)


def test_encode_checks_values_like_every_codec():
    spec = CodecSpec("native", 2, 100)
    with pytest.raises(SchemaError, match="not sorted descending in row 0"):
        encode(spec, np.array([[1, 2]]), np.array([[-2.0, -1.0]], np.float32))
    with pytest.raises(SchemaError, match="token id outside"):
        encode(spec, np.array([[1, 100]]), np.array([[-1.0, -2.0]], np.float32))


def _extra(codec: str) -> dict[str, str]:
    return {"model": "m", "k": str(K), **CodecSpec(codec, K, VOCAB).to_metadata()}


def test_schema_declares_the_codec_and_checks_column_types():
    s = logit_shard.schema(_extra("native"))
    assert s.field("topk_ids").type == pa.list_(pa.list_(pa.int32(), K))
    assert s.field("topk_logprobs").type == pa.list_(pa.list_(pa.float32(), K))
    logit_shard.validate(s)
    blob = logit_shard.schema(_extra("lossless"))
    assert blob.field("topk_ids").type == pa.binary()
    logit_shard.validate(blob)
    logit_shard.validate(logit_shard.schema({"codec": "none"}))
    # a version 2 blob shard (what logitfuse wrote before native) stays readable
    logit_shard.validate(blob.with_metadata({**blob.metadata, b"schema_version": b"2"}))
    with pytest.raises(SchemaError, match=r"column 'topk_ids' has type binary, expected list<item: fixed_size_list"):
        logit_shard.validate(blob.with_metadata(s.metadata))  # says native, holds blobs
    with pytest.raises(SchemaError, match=r"column 'topk_ids' has type list<.*\[6\]>, expected binary"):
        logit_shard.validate(s.with_metadata(blob.metadata))  # says lossless, holds lists
    wrong_k = logit_shard.schema(_extra("native") | {"codec_k": "5"})
    with pytest.raises(SchemaError, match=r"expected list<item: fixed_size_list<item: int32>\[6\]>"):
        logit_shard.validate(wrong_k.with_metadata(s.metadata))
    with pytest.raises(SchemaError, match="native columns exist from version 3 on"):
        logit_shard.validate(s.with_metadata({**s.metadata, b"schema_version": b"2"}))


def _raw_batch(rng) -> tuple[pa.Table, list[tuple[np.ndarray, np.ndarray]]]:
    """What capture's forward stage hands to its encode stage: flat raw top-k per row."""
    rows = [topk_rows(n, K, VOCAB, seed=int(rng.integers(1 << 30))) for n in LENGTHS]
    return pa.table({
        "sample_index": pa.array(range(len(LENGTHS)), pa.int64()),
        "sample_id": [f"s{i}" for i in range(len(LENGTHS))],
        "status": ["ok"] * len(LENGTHS),
        "response_sha256": ["0" * 64] * len(LENGTHS),
        "input_ids": pa.array([[1] * (n + 1) for n in LENGTHS], pa.list_(pa.int32())),
        "response_start": pa.array([1] * len(LENGTHS), pa.int32()),
        "char_start": pa.array([list(range(n)) for n in LENGTHS], pa.list_(pa.int32())),
        "char_end": pa.array([list(range(1, n + 1)) for n in LENGTHS], pa.list_(pa.int32())),
        "n_positions": pa.array(LENGTHS, pa.int32()),
        "topk_ids_raw": pa.array([r[0].ravel() for r in rows], pa.list_(pa.int32())),
        "topk_lp_raw": pa.array([r[1].ravel() for r in rows], pa.list_(pa.float32())),
    }), rows


@pytest.fixture(scope="module")
def native_shards(tmp_path_factory):
    """A one-shard native set written the way capture writes it (encode stage, schema cast, shard writer)."""
    from pipeline.capture.stages import encode_batch

    folder = tmp_path_factory.mktemp("native") / "m"
    raw, rows = _raw_batch(np.random.default_rng(0))
    spec = {"name": "native", "k": K, "vocab_size": VOCAB, "step": 0.04, "zstd_level": 9}
    schema = logit_shard.schema(_extra("native"))
    table = encode_batch(raw, codec=spec).select(schema.names).cast(schema)
    writer = ShardSetWriter(folder, "fp", {})
    writer.write_shard(0, table, tokens=sum(LENGTHS))
    writer.finalize(Manifest(kind="logits", shard_schema=logit_shard.NAME, shard_schema_version=logit_shard.VERSION,
                             name="m", config_fingerprint="fp", shard_size=len(LENGTHS), num_samples=len(LENGTHS),
                             plan_fingerprint="p", shards=[], codec=_extra("native")))
    return folder, rows


def _logitfuse(folder) -> list[tuple[np.ndarray, np.ndarray]]:
    shards = ShardSet(folder)
    assert verify(folder) == [] and shards.codec().name == "native"
    return [decode_topk(shards.codec(), row) for row in shards.iter_rows()]


def test_shard_holds_the_capture_values_with_the_chosen_encodings(native_shards):
    folder, rows = native_shards
    for (ids, lps), (want_ids, want_lps) in zip(_logitfuse(folder), rows):
        assert np.array_equal(ids, want_ids) and np.array_equal(lps, want_lps.astype(np.float16).astype(np.float32))
    md = pq.ParquetFile(folder / "part-00000.parquet").metadata.row_group(0)
    cols = {md.column(i).path_in_schema: md.column(i) for i in range(md.num_columns)}
    lp, ids = cols[f"topk_logprobs{native.LEAF}"], cols[f"topk_ids{native.LEAF}"]
    assert "BYTE_STREAM_SPLIT" in lp.encodings and not lp.has_dictionary_page and not ids.has_dictionary_page
    assert lp.compression == ids.compression == "ZSTD"
    assert cols["sample_id"].has_dictionary_page  # the other columns keep the writer's defaults


def test_polars_duckdb_and_datasets_read_what_logitfuse_decodes(native_shards, tmp_path):
    import datasets
    import duckdb
    import polars as pl

    folder, _ = native_shards
    want = _logitfuse(folder)
    path = str(folder / "part-00000.parquet")

    frame = pl.read_parquet(path)
    assert frame.schema["topk_ids"] == pl.List(pl.Array(pl.Int32, K))
    got_pl = [(np.array(i.to_list(), np.int32).reshape(-1, K), np.array(p.to_list(), np.float32).reshape(-1, K))
              for i, p in zip(frame["topk_ids"], frame["topk_logprobs"])]

    con = duckdb.connect()
    got_db = [(np.array(i, np.int32).reshape(-1, K), np.array(p, np.float32).reshape(-1, K)) for i, p in con.execute(
        f"SELECT topk_ids, topk_logprobs FROM read_parquet('{path}') ORDER BY sample_index").fetchall()]
    top1 = con.execute(f"SELECT list_transform(topk_ids, lambda x: x[1]) FROM read_parquet('{path}') "
                       f"ORDER BY sample_index").fetchall()  # SQL over the positions, no decoding
    assert [list(t[0]) for t in top1] == [list(ids[:, 0]) for ids, _ in want]

    ds = datasets.load_dataset("parquet", data_files=path, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.features["topk_ids"].feature.length == K
    got_ds = [(np.array(r["topk_ids"], np.int32).reshape(-1, K),
               np.array(r["topk_logprobs"], np.float32).reshape(-1, K)) for r in ds]
    got_np = [(r["topk_ids"].reshape(-1, K), r["topk_logprobs"].reshape(-1, K)) for r in ds.with_format("numpy")]

    for got in (got_pl, got_db, got_ds, got_np):
        assert len(got) == len(want) == len(LENGTHS)
        for (a, b), (c, d) in zip(got, want):
            assert np.array_equal(a, c) and np.array_equal(b.astype(np.float32), d)
