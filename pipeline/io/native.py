"""The ``native`` codec: top-k as typed Parquet columns that any Parquet reader decodes (polars, DuckDB, datasets).

Per row (one sample of n positions)::

    topk_ids       list<fixed_size_list<int32, k>>     n lists of k token ids
    topk_logprobs  list<fixed_size_list<float32, k>>   their log-probs (log-softmax over the full vocabulary),
                                                       sorted descending, rounded to fp16

polars reads them as ``List(Array(Int32, k))`` / ``List(Array(Float32, k))``, DuckDB as ``INTEGER[][]`` /
``FLOAT[][]``, ``datasets`` as ``List(List(Value("int32"), length=k))``; no logitfuse needed. The fixed-size inner
list keeps one position's top-k together (a row of an (n, k) matrix) instead of a flat n*k list a reader must cut.

Values: rounded to fp16, what the lossless codec stores, so a native shard holds exactly the values ``lossless``
decodes to (max error vs the float32 capture: half an fp16 ulp, 2^-7 nats for |log-prob| < 32). A ``quantized``
shard converted to native keeps its grid values rounded to fp16 (error step/2 + 2^-7 nats). They are *stored* as
float32: an fp16-exact float32 has 13 zero mantissa bits, so with BYTE_STREAM_SPLIT its lowest byte plane is all
zeros and the next nearly so, and zstd makes it smaller than plain fp16 (``tests/benchmarks/bench_codec.py``). fp16
with BYTE_STREAM_SPLIT is smaller still, but DuckDB (2.0) refuses that encoding on fp16 columns, and older polars
has no fp16 type; every reader knows float32.

Encodings (``parquet_options``): zstd at the spec's ``zstd_level`` (9) on both top-k columns, BYTE_STREAM_SPLIT on
the log-probs, no dictionary.
pyarrow applies per-column encodings only when named by the leaf path (``topk_logprobs.list.element.list.element``);
the top-level name is silently ignored.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.errors import SchemaError
from schemas import logit_shard

NAME = logit_shard.NATIVE
LEAF = ".list.element.list.element"  # Parquet leaf path below a list<fixed_size_list<…>> column


def encode(ids: np.ndarray, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (n, k) ids and float32 log-probs -> the cells of one row: (int32 (n, k), float32 (n, k) holding
    fp16 values)."""
    return np.ascontiguousarray(ids, np.int32), logprobs.astype(np.float16).astype(np.float32)


def decode(k: int, vocab_size: int, ids, logprobs, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One row's cells (lists of k-lists as Python, polars or Arrow give them, or arrays) -> (ids int32 (n, k),
    logprobs float32 (n, k)); SchemaError when they do not hold n rows of k ids in [0, vocab_size)."""
    out = []
    for what, cell, dtype in (("ids", ids, np.int32), ("log-prob", logprobs, np.float32)):
        if isinstance(cell, (bytes, bytearray)):
            raise SchemaError(f"native {what} column holds a codec blob: the shard's metadata says native but its "
                              f"columns are binary (corrupted metadata)")
        try:
            a = np.asarray(cell.to_pylist() if hasattr(cell, "to_pylist") else cell, dtype=dtype)
        except (TypeError, ValueError) as e:  # ragged inner lists, nulls
            raise SchemaError(f"native {what} cell is not an (n, k={k}) matrix: {e}") from None
        if a.size == 0:
            a = a.reshape(0, k)
        if a.shape != (n, k):
            raise SchemaError(f"native {what} cell has shape {a.shape}, expected (n_positions={n}, k={k})")
        out.append(a)
    if out[0].size and (int(out[0].min()) < 0 or int(out[0].max()) >= vocab_size):
        raise SchemaError(f"native ids outside [0, vocab_size={vocab_size}) (another vocabulary, or corrupted)")
    return out[0], out[1]


def column(cells: list[np.ndarray], type_: pa.DataType) -> pa.Array:
    """A list<fixed_size_list<…, k>> column from per-row (n, k) arrays (of the value type of ``type_``)."""
    inner = type_.value_type
    k = inner.list_size
    flat = np.concatenate([c.reshape(-1) for c in cells]) if cells else np.zeros(0)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in cells])]).astype(np.int32)
    values = pa.FixedSizeListArray.from_arrays(pa.array(flat.astype(inner.value_type.to_pandas_dtype()),
                                                        inner.value_type), k)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=type_)


def is_native(schema: pa.Schema) -> bool:
    """Whether a logit-shard schema declares the native codec."""
    return (schema.metadata or {}).get(b"codec") == NAME.encode()


def parquet_options(schema: pa.Schema, base: dict) -> dict:
    """``pq.write_table`` options for a shard of ``schema``: ``base`` unchanged unless it is native, else per-column
    encodings for the two top-k columns on top of it (the other columns keep ``base``)."""
    if not is_native(schema):
        return base
    ids, lps = f"topk_ids{LEAF}", f"topk_logprobs{LEAF}"
    names = _leaves(schema)
    level, topk = base.get("compression_level"), int(schema.metadata.get(b"codec_zstd_level", b"9"))
    return base | {
        "compression": {n: "zstd" for n in names},
        "compression_level": {n: topk if n in (ids, lps) else level for n in names},
        # BYTE_STREAM_SPLIT: the byte planes of a float (zero low mantissa bytes, repeating sign/exponent bytes)
        # compress apart far better than interleaved; a dictionary of the ids saved 2 % at zstd-9 on the benchmark
        # data and cost 5 % at 19 (bench_codec.py): off.
        "use_dictionary": [n for n in names if n not in (ids, lps)],
        "use_byte_stream_split": [lps],
    }


def _leaves(schema: pa.Schema) -> list[str]:
    """Parquet leaf column paths of an Arrow schema (the names per-column write options take)."""
    out = []

    def walk(prefix: str, t: pa.DataType) -> None:
        if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
            walk(f"{prefix}.list.element", t.value_type)
        elif pa.types.is_struct(t):
            for f in t:
                walk(f"{prefix}.{f.name}", f.type)
        else:
            out.append(prefix)

    for f in schema:
        walk(f.name, f.type)
    return out
