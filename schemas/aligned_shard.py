"""Aligned shard: one source model's top-k re-expressed at the pivot's positions (``<out>/aligned/<source>/``).

Shard *i* holds the same samples, in the same order, as shard *i* of the pivot's capture. Per pivot response position
t (``n_positions`` of them, flattened row-major with width k):

- ``src_index[t]``: the source position aligned to t (its token starts at the same character), −1 when unaligned;
- ``rank_logprobs[t*k:(t+1)*k]``: the source's own sorted top-k log-probs (rank-space losses need no vocab map);
- ``mapped_ids`` / ``mapped_logprobs``: the source top-k mapped into the pivot vocabulary, duplicates merged with
  logsumexp, sorted descending, padded with id −1 / log-prob −inf.
Unaligned positions hold −1 / −inf everywhere. ``target_logprob[t]``: the source's log-prob of its own target token
when that token is in its top-k, else NaN (used by MinCE source selection).
"""

from __future__ import annotations

import pyarrow as pa

from schemas.common import check, with_metadata

NAME, VERSION = "aligned_shard", 1

COLUMNS = pa.schema([
    pa.field("sample_index", pa.int64(), nullable=False),
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("n_positions", pa.int32(), nullable=False),  # pivot response positions
    pa.field("n_aligned", pa.int32(), nullable=False),
    pa.field("src_index", pa.list_(pa.int32()), nullable=False),
    pa.field("rank_logprobs", pa.list_(pa.float16()), nullable=False),
    pa.field("mapped_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("mapped_logprobs", pa.list_(pa.float16()), nullable=False),
    pa.field("target_logprob", pa.list_(pa.float16()), nullable=False),
])


def schema(extra: dict[str, str]) -> pa.Schema:
    """The aligned schema with run metadata (k, source, pivot and map fingerprints) attached."""
    return with_metadata(COLUMNS, NAME, VERSION, extra)


def validate(s: pa.Schema, where: str = "") -> None:
    """Raise SchemaError with the reason when ``s`` is not an aligned shard of this version."""
    check(s, COLUMNS, NAME, VERSION, where)
