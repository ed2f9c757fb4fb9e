"""Logit shard: one row per sample of one model's capture run (``<out>/<model>/part-NNNNN.parquet``).

Per response position t (the positions whose *target* is a response token) the shard stores the target id (implied by
``input_ids[response_start + t]``), the character span of that target token in the response text, and the model's
top-k token ids and log-probabilities (log-softmax over the full vocabulary) encoded by the codec named in the
schema metadata (``pipeline.io.codec``). ``k = 0`` captures tokens and offsets only (the pivot's tokenisation).

Version 2: ``char_start`` of a target token that begins inside the prompt is its true (negative) start; version 1
clipped it to 0, so its first position may claim to start at the response's first byte when it does not. Version 1
shards stay readable; align treats their first position at 0 as of unknown start and masks it.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.common import check, with_metadata

NAME, VERSION = "logit_shard", 2
READABLE = (1, 2)  # versions this logitfuse reads (see above for what version 1 lacks)

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
    pa.field("topk_ids", pa.binary(), nullable=False),  # codec blob, n_positions x k ids
    pa.field("topk_logprobs", pa.binary(), nullable=False),  # codec blob, n_positions x k log-probs
])

STATUSES = ("ok", "truncated", "skipped")


def schema(extra: dict[str, str]) -> pa.Schema:
    """The shard schema with run metadata (codec, k, model and tokenizer fingerprints) attached."""
    return with_metadata(COLUMNS, NAME, VERSION, extra)


def version(s: pa.Schema) -> int:
    """The schema version a shard was written with (0 when its metadata has none)."""
    v = (s.metadata or {}).get(b"schema_version", b"")
    return int(v) if v.isdigit() else 0


def validate(s: pa.Schema, where: str = "") -> None:
    """Raise SchemaError with the reason when ``s`` is not a logit shard of a version this logitfuse reads."""
    v = version(s)
    check(s, COLUMNS, NAME, v if v in READABLE else VERSION, where)
