"""Logit shard: one row per sample of one model's capture run (``<out>/<model>/part-NNNNN.parquet``).

Per response position t (the positions whose *target* is a response token) the shard stores the target id (implied by
``input_ids[response_start + t]``), the character span of that target token in the response text, and the model's
top-k token ids and log-probabilities (log-softmax over the full vocabulary) in the form of the codec named in the
schema metadata (``codec``, ``codec_k``): ``lossless`` and ``quantized`` store one binary blob per row in each column
(``pipeline.io.codec``), ``native`` stores typed columns any Parquet reader decodes (``pipeline.io.native``):
``topk_ids`` list<fixed_size_list<int32, k>> and ``topk_logprobs`` list<fixed_size_list<float32, k>> (values
rounded to fp16, as the lossless codec keeps them), one inner list per position, log-probs sorted descending.
``k = 0`` (codec ``none``) captures tokens and offsets only (the pivot's tokenisation); its top-k columns hold empty
blobs.

Version 2: ``char_start`` of a target token that begins inside the prompt is its true (negative) start; version 1
clipped it to 0, so its first position may claim to start at the response's first byte when it does not. Version 1
shards stay readable; align treats their first position at 0 as of unknown start and masks it.

Version 3: the type of the two top-k columns depends on the codec (binary, or the ``native`` list columns); versions
1 and 2 know the blob codecs only. A version 2 blob shard reads exactly as a version 3 one.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.errors import SchemaError
from schemas.common import check, with_metadata

NAME, VERSION = "logit_shard", 3
READABLE = (1, 2, 3)  # versions this logitfuse reads (see above for what version 1 lacks)

COLUMNS = pa.schema([
    pa.field("sample_index", pa.int64(), nullable=False),  # position in the global shard plan
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # ok | truncated | skipped (skipped rows keep the plan)
    pa.field("response_sha256", pa.string(), nullable=False),  # of the UTF-8 response text: align checks it
    pa.field("input_ids", pa.list_(pa.int32()), nullable=False),  # rendered prompt + response tokens
    pa.field("response_start", pa.int32(), nullable=False),  # index in input_ids of the first response token
    pa.field("char_start", pa.list_(pa.int32()), nullable=False),  # per position, in the response text (< 0: in
    # the prompt)
    pa.field("char_end", pa.list_(pa.int32()), nullable=False),
    pa.field("n_positions", pa.int32(), nullable=False),
    pa.field("topk_ids", pa.binary(), nullable=False),  # codec blob, n_positions x k ids (native: see topk_types)
    pa.field("topk_logprobs", pa.binary(), nullable=False),  # codec blob, n_positions x k log-probs
])
TOPK = ("topk_ids", "topk_logprobs")
NATIVE = "native"  # the codec whose top-k columns are typed lists instead of blobs

STATUSES = ("ok", "truncated", "skipped")


def topk_types(codec: str, k: int) -> tuple[pa.DataType, pa.DataType]:
    """Types of (topk_ids, topk_logprobs) for shards of ``codec`` with top-k width ``k``."""
    if codec != NATIVE:
        return pa.binary(), pa.binary()
    return pa.list_(pa.list_(pa.int32(), k)), pa.list_(pa.list_(pa.float32(), k))


def columns(codec: str, k: int) -> pa.Schema:
    """The columns of a shard written with ``codec`` at width ``k``."""
    s = COLUMNS
    for name, t in zip(TOPK, topk_types(codec, k)):
        s = s.set(s.get_field_index(name), pa.field(name, t, nullable=False))
    return s


def schema(extra: dict[str, str]) -> pa.Schema:
    """The shard schema with run metadata (codec, k, model and tokenizer fingerprints) attached."""
    return with_metadata(columns(extra.get("codec", ""), int(extra.get("codec_k", 0))), NAME, VERSION, extra)


def version(s: pa.Schema) -> int:
    """The schema version a shard was written with (0 when its metadata has none)."""
    v = (s.metadata or {}).get(b"schema_version", b"")
    return int(v) if v.isdigit() else 0


def validate(s: pa.Schema, where: str = "") -> None:
    """Raise SchemaError with the reason when ``s`` is not a logit shard of a version this logitfuse reads."""
    v = version(s)
    md = {key.decode(): val.decode() for key, val in (s.metadata or {}).items()}
    codec = md.get("codec", "")
    if codec == NATIVE:
        if v < 3:
            raise SchemaError(f"{f'{where}: ' if where else ''}{NAME} version {v} with codec {NATIVE!r}: native "
                              f"columns exist from version 3 on (corrupted metadata)")
        k = md.get("codec_k", "")
        if not k.isdigit() or int(k) < 1:
            raise SchemaError(f"{f'{where}: ' if where else ''}a {NATIVE} {NAME} needs codec_k >= 1 in its schema "
                              f"metadata, got {k!r}")
    check(s, columns(codec, int(md.get("codec_k", 0)) if codec == NATIVE else 0), NAME,
          v if v in READABLE else VERSION, where)
