"""Vocabulary map: one row per source-tokenizer id, the pivot id it is re-expressed in and how that was decided.

The two tokenizer fingerprints live in the schema metadata so that a map is never applied to other tokenizers.
Version 2: edit distances and tie-breaks on canonical bytes, pivot tokens that are a byte prefix of the source token
first. Version 1 maps (distances on decoded strings, which sent multi-byte tokens to unrelated ids such as ``!``)
are refused: rerun align with ``overwrite=true`` to rebuild them.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.errors import SchemaError

NAME, VERSION = "vocab_map", 2
METHODS = ("exact", "edit", "stats", "special", "none")  # dictionary values, in this order
METHOD_TYPE = pa.dictionary(pa.int8(), pa.string())
FIELDS = [
    pa.field("source_id", pa.int32(), nullable=False),
    pa.field("pivot_id", pa.int32(), nullable=False),  # -1: no pivot token
    pa.field("method", METHOD_TYPE, nullable=False),
    pa.field("distance", pa.int32(), nullable=False),  # edit distance of the canonical bytes; -1 when unmapped
]
REQUIRED_METADATA = (b"schema", b"schema_version", b"source_fingerprint", b"pivot_fingerprint",
                     b"source_vocab_size", b"pivot_vocab_size")
SCHEMA = pa.schema(FIELDS, metadata={b"schema": NAME.encode(), b"schema_version": str(VERSION).encode()})


def schema(source_fingerprint: str, pivot_fingerprint: str, source_vocab_size: int,
           pivot_vocab_size: int) -> pa.Schema:
    """The schema of one map, with both tokenizers' fingerprints and vocabulary sizes in its metadata."""
    return SCHEMA.with_metadata({
        **SCHEMA.metadata,
        b"source_fingerprint": source_fingerprint.encode(),
        b"pivot_fingerprint": pivot_fingerprint.encode(),
        b"source_vocab_size": str(source_vocab_size).encode(),
        b"pivot_vocab_size": str(pivot_vocab_size).encode(),
    })


def validate(s: pa.Schema) -> None:
    """Raise SchemaError naming what differs from a vocab_map schema of this version."""
    meta = s.metadata or {}
    if meta.get(b"schema") != NAME.encode():
        raise SchemaError(f"not a {NAME} table: schema metadata is {meta.get(b'schema')!r}")
    if meta.get(b"schema_version") != str(VERSION).encode():
        hint = "; it was built on decoded strings (multi-byte tokens mapped to unrelated ids): rerun align with " \
               "overwrite=true to rebuild it" if meta.get(b"schema_version") == b"1" else ""
        raise SchemaError(f"{NAME} schema_version {meta.get(b'schema_version')!r} is not supported "
                          f"(this version reads {VERSION}){hint}")
    missing = [k.decode() for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise SchemaError(f"{NAME} metadata lacks {missing}")
    for k in (b"source_vocab_size", b"pivot_vocab_size"):
        if not meta[k].isdigit():
            raise SchemaError(f"{NAME} metadata {k.decode()}={meta[k]!r} is not a non-negative integer")
    names = [f.name for f in FIELDS]
    if s.names != names:
        raise SchemaError(f"{NAME} columns are {s.names}, expected {names}")
    for f in FIELDS:
        got = s.field(f.name).type
        if got != f.type:
            raise SchemaError(f"{NAME} column {f.name!r} has type {got}, expected {f.type}")
