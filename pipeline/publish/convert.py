"""Re-encode a logit shard set's top-k into another codec while staging (``publish --codec native``).

Every other column, the row order and the schema metadata (model, fingerprints, k) stay as captured; the codec
entries are replaced and ``converted_from`` names the codec the values came from. Conversion is deterministic (same
shard, same pyarrow: same bytes), so re-staging keeps converted files that already match.

Precision: lossless -> native and native -> lossless keep every value (both hold fp16); quantized -> native keeps
the grid values rounded to fp16 (error step/2 + half an fp16 ulp vs the capture).
"""

from __future__ import annotations

import copy

import pyarrow as pa

from pipeline.io.codec import CodecSpec, decode, encode
from pipeline.errors import PublishError
from pipeline.io import native
from pipeline.io.reader import ShardSet
from schemas import logit_shard
from schemas.manifest import Manifest

TARGETS = ("native", "lossless")  # what `publish --codec` writes: readable by anyone, or compact and exact
_CODEC_KEYS = ("codec", "codec_version", "codec_k", "codec_vocab_size", "codec_zstd_level", "codec_step",
               "converted_from")


def needs_conversion(shards: ShardSet, target: str | None) -> bool:
    """Whether publishing ``shards`` with ``--codec target`` re-encodes them (logit sets of another codec only)."""
    m = shards.manifest
    return bool(target) and m.kind == "logits" and m.codec.get("codec") not in (None, "none", target)


def target_spec(shards: ShardSet, target: str) -> CodecSpec:
    """The spec a set is converted to: same k and vocabulary; PublishError for shards that cannot be."""
    if target not in TARGETS:
        raise PublishError(f"publish codec must be one of {TARGETS}, got {target!r}")
    if any(logit_shard.version(shards.schema(i)) < 2 for i in range(len(shards))):
        # v1 clipped char_start; a v3 file would hide that from align (see schemas/logit_shard.py)
        raise PublishError(f"{shards.folder}: logit_shard version 1 shards cannot be converted (their first "
                           f"offsets are clipped, which only version 1 declares); recapture, or publish them as "
                           f"captured (no --codec)")
    src = shards.codec()
    # zstd-9, as capture writes: 19 made native columns ~15 % smaller but wrote ~16x slower (bench_codec.py), hours
    # of CPU for a multi-GB set to save a minute of upload
    return CodecSpec(name=target, k=src.k, vocab_size=src.vocab_size)


def codec_metadata(shards: ShardSet, spec: CodecSpec) -> dict[str, str]:
    """The run metadata of the converted set: as captured, with the codec entries of ``spec``."""
    src = shards.manifest.codec
    kept = {k: v for k, v in src.items() if k not in _CODEC_KEYS}
    return kept | spec.to_metadata() | {"converted_from": src.get("converted_from", src["codec"])}


def convert_shard(shards: ShardSet, index: int, spec: CodecSpec) -> pa.Table:
    """Shard ``index`` with its top-k re-encoded as ``spec`` (every sample decoded, checked and encoded again)."""
    src = shards.codec()
    table = shards.read(index)
    schema = logit_shard.schema(codec_metadata(shards, spec))
    ids_cells, lp_cells = [], []
    for row in table.select(["sample_id", "n_positions", "topk_ids", "topk_logprobs"]).to_pylist():
        ids, lps = decode(src, row["topk_ids"], row["topk_logprobs"], row["n_positions"])
        a, b = encode(spec, ids, lps)
        ids_cells.append(a)
        lp_cells.append(b)
    ids_type, lp_type = (schema.field(n).type for n in logit_shard.TOPK)
    if spec.name == native.NAME:
        cols = native.column(ids_cells, ids_type), native.column(lp_cells, lp_type)
    else:
        cols = pa.array(ids_cells, pa.binary()), pa.array(lp_cells, pa.binary())
    for name, col in zip(logit_shard.TOPK, cols):
        table = table.set_column(table.schema.get_field_index(name), name, col)
    return table.cast(schema)


def converted_manifest(shards: ShardSet, spec: CodecSpec, entries: list) -> Manifest:
    """The manifest of the converted set: new codec, schema version, sizes and checksums; the rest as captured."""
    m = copy.deepcopy(shards.manifest)
    m.codec = codec_metadata(shards, spec)
    m.shard_schema_version = logit_shard.VERSION
    m.shards = entries
    m.stats["bytes_per_token"] = m.total_bytes / max(m.total_tokens, 1)
    return m

