"""Vocabulary map source → pivot: every source id gets the pivot id whose canonical bytes match it best.

Order of decision, per source id:

1. ``special``: a special token maps to the pivot's token of the same role (eos→eos, bos→bos, …), else to the pivot
   special token with the same content, else to nothing.
2. ``exact``: the pivot token with the same canonical bytes (a regular token is preferred to a ``<0xNN>`` one).
3. ``edit``: the longest pivot token whose bytes are a prefix of the source token's (the token the pivot would start
   the same bytes with), else the nearest by Levenshtein distance over the canonical **bytes** among the pivot tokens
   starting with the same byte (:mod:`pipeline.align.nearest`). ``distance`` is the byte edit distance.
4. ``stats``: with co-occurrence counts (:func:`gather_cooc`), the ``edit_candidates`` best candidates of step 3 are
   re-ranked by how often they were aligned with the source token in real text; the most frequent wins.
5. ``none``: no pivot id (unused ids, specials without a counterpart, nothing within ``max_distance``).

:func:`fan_in` counts, per pivot id, the source ids mapped onto it: a pivot id receiving thousands of unrelated
source ids is the sign of a broken map, so align reports the largest in its summary and manifest.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pipeline.align.nearest import candidates
from pipeline.errors import AlignmentError, SchemaError
from pipeline.io.atomic import write_parquet
from pipeline.io.fs import Location, location
from pipeline.modeling.canonical import ROLES, CanonicalVocab, canonicalize, tokenizer_fingerprint
from schemas import vocab_map as schema_mod
from schemas.vocab_map import METHODS

EXACT, EDIT, STATS, SPECIAL, NONE = (METHODS.index(m) for m in ("exact", "edit", "stats", "special", "none"))


def _pivot_index(piv: CanonicalVocab) -> dict[bytes, int]:
    """Canonical bytes → the pivot id to use for them: regular tokens before <0xNN> ones, then the lowest id."""
    index: dict[bytes, int] = {}
    order = np.lexsort((np.arange(len(piv)), piv.byte_fallback))
    for j in order.tolist():
        if not piv.special[j]:
            index.setdefault(piv.token_bytes[j], j)
    return index


def _map_specials(src: CanonicalVocab, piv: CanonicalVocab, pivot_id, method, distance) -> None:
    by_name = {piv.tokens[j]: j for j in np.flatnonzero(piv.special).tolist() if piv.tokens[j]}
    for i in np.flatnonzero(src.special).tolist():
        roles = [r for r in ROLES if src.roles.get(r) == i]
        j = next((piv.roles[r] for r in roles if r in piv.roles), by_name.get(src.tokens[i], -1))
        if src.tokens[i] and j >= 0:
            pivot_id[i], method[i], distance[i] = j, SPECIAL, 0


def build_vocab_map(src_tok, pivot_tok, *, edit_candidates: int = 8, max_distance: int | None = None,
                    cooc: Mapping[tuple[int, int], int] | None = None) -> pa.Table:
    """The source→pivot map as a ``vocab_map`` table (one row per source id, in id order).

    ``edit_candidates``: how many nearest pivot tokens co-occurrence counts may choose among (0: no edit stage).
    ``max_distance``: leave tokens with nothing closer unmapped. ``cooc``: counts of (source_id, pivot_id) pairs.
    """
    src, piv = canonicalize(src_tok), canonicalize(pivot_tok)
    n = len(src)
    pivot_id = np.full(n, -1, np.int32)
    method = np.full(n, NONE, np.int8)
    distance = np.full(n, -1, np.int32)
    _map_specials(src, piv, pivot_id, method, distance)
    index = _pivot_index(piv)
    todo = []
    for i in np.flatnonzero(~src.special).tolist():
        j = index.get(src.token_bytes[i])
        if j is None:
            todo.append(i)
        else:
            pivot_id[i], method[i], distance[i] = j, EXACT, 0
    if todo and edit_candidates > 0:
        choice_ids = np.fromiter(index.values(), np.int64, len(index))
        by_src: dict[int, dict[int, int]] = defaultdict(dict)
        for (s, p), c in (cooc or {}).items():
            by_src[int(s)][int(p)] = int(c)
        k = edit_candidates if cooc else 1
        found = candidates([src.token_bytes[i] for i in todo], [piv.token_bytes[j] for j in choice_ids], k=k,
                           max_distance=max_distance)
        for i, (cand, dist) in zip(todo, found):
            if not cand.size:
                continue
            ids, pick, how = choice_ids[cand], 0, EDIT
            counts = by_src.get(i)
            if counts:
                c = np.array([counts.get(int(p), 0) for p in ids])
                if c.max() > 0:
                    pick, how = int(np.argmax(c)), STATS  # argmax keeps the nearest among equal counts
            pivot_id[i], method[i], distance[i] = ids[pick], how, dist[pick]
    table = pa.table({
        "source_id": pa.array(np.arange(n, dtype=np.int32)),
        "pivot_id": pa.array(pivot_id),
        "method": pa.DictionaryArray.from_arrays(pa.array(method, pa.int8()), pa.array(METHODS)),
        "distance": pa.array(distance),
    })
    return table.cast(schema_mod.schema(tokenizer_fingerprint(src_tok), tokenizer_fingerprint(pivot_tok), n,
                                        len(piv)))


def gather_cooc(src_ids, pivot_ids, src_index, counts: Counter | None = None) -> Counter:
    """Add the (source_id, pivot_id) pairs of one offset-aligned sample to ``counts``.

    ``src_index[j]`` is the source position aligned with pivot position ``j`` (-1: masked), as returned by
    :func:`pipeline.align.offsets.align_offsets`.
    """
    counts = Counter() if counts is None else counts
    src_index = np.asarray(src_index)
    keep = np.flatnonzero(src_index >= 0)
    if not keep.size:
        return counts
    s = np.asarray(src_ids, np.int64)[src_index[keep]]
    p = np.asarray(pivot_ids, np.int64)[keep]
    width = int(p.max()) + 1
    codes, c = np.unique(s * width + p, return_counts=True)
    for code, m in zip(codes.tolist(), c.tolist()):
        counts[divmod(code, width)] += m
    return counts


def map_array(table: pa.Table) -> np.ndarray:
    """int32 [source vocab]: source id → pivot id (-1 none), the form :mod:`pipeline.align.remap` takes."""
    out = np.full(table.num_rows, -1, np.int32)
    out[table.column("source_id").to_numpy()] = table.column("pivot_id").to_numpy()
    return out


def summarize(table: pa.Table) -> dict[str, float]:
    """Share of source ids decided by each method."""
    idx = table.column("method").combine_chunks().indices.to_numpy(zero_copy_only=False)
    counts = np.bincount(idx, minlength=len(METHODS))
    total = max(int(counts.sum()), 1)
    return {m: float(c) / total for m, c in zip(METHODS, counts.tolist())}


def fan_in(table: pa.Table, top: int = 5) -> list[tuple[int, int]]:
    """(pivot id, number of source ids mapped onto it) for the ``top`` pivot ids receiving the most, most first."""
    ids = table.column("pivot_id").to_numpy()
    ids = ids[ids >= 0]
    if not ids.size:
        return []
    pivots, counts = np.unique(ids, return_counts=True)
    order = np.lexsort((pivots, -counts))[:top]
    return [(int(pivots[i]), int(counts[i])) for i in order]


FAN_IN_PREFIX = "map_fan_in/"  # manifest counts key of one pivot id's fan-in: map_fan_in/<pivot id>


def fan_in_counts(table: pa.Table, top: int = 5) -> dict[str, int]:
    """:func:`fan_in` as manifest counts (``map_fan_in/<pivot id>``: source ids)."""
    return {f"{FAN_IN_PREFIX}{p}": c for p, c in fan_in(table, top)}


def check_map_matches(table: pa.Table, src_tok, pivot_tok) -> None:
    """Raise AlignmentError unless ``table`` was built for these tokenizers (objects or their fingerprints)."""
    meta = table.schema.metadata or {}
    for side, tok in (("source", src_tok), ("pivot", pivot_tok)):
        want = tok if isinstance(tok, str) else tokenizer_fingerprint(tok)
        got = meta.get(f"{side}_fingerprint".encode(), b"").decode()
        if got != want:
            raise AlignmentError(f"mapping table made for other tokenizers: its {side} tokenizer fingerprint is "
                                 f"{got[:16] or 'missing'}…, the {side} tokenizer here is {want[:16]}…; rebuild it")


def validate_table(table: pa.Table) -> None:
    """Schema plus content checks: one row per source id in order, pivot ids in range, -1 exactly when 'none'."""
    schema_mod.validate(table.schema)
    meta = table.schema.metadata
    n_src, n_piv = int(meta[b"source_vocab_size"]), int(meta[b"pivot_vocab_size"])
    if table.num_rows != n_src:
        raise SchemaError(f"vocab_map has {table.num_rows} rows for a source vocabulary of {n_src}")
    if table.column("method").null_count or table.column("pivot_id").null_count:
        raise SchemaError("vocab_map has null methods or pivot ids")
    if not np.array_equal(table.column("source_id").to_numpy(), np.arange(n_src)):
        raise SchemaError("vocab_map source_id must be 0..n-1 in order")
    pid = table.column("pivot_id").to_numpy()
    if pid.size and (pid.min() < -1 or pid.max() >= n_piv):
        raise SchemaError(f"vocab_map pivot_id outside -1..{n_piv - 1}")
    methods = table.column("method").combine_chunks()
    if methods.dictionary.to_pylist() != list(METHODS):
        raise SchemaError(f"vocab_map method dictionary is {methods.dictionary.to_pylist()}, expected {list(METHODS)}")
    if not np.array_equal(pid == -1, methods.indices.to_numpy(zero_copy_only=False) == NONE):
        raise SchemaError("vocab_map pivot_id must be -1 exactly on rows whose method is 'none'")


def write_vocab_map(table: pa.Table, path: str | Path | Location) -> None:
    """Validate ``table`` and write it to ``path`` atomically (temporary name then ``os.replace``; one object PUT on
    an object store)."""
    validate_table(table)
    write_parquet(path, table)


def read_vocab_map(path: str | Path | Location) -> pa.Table:
    """Read and validate a map written by :func:`write_vocab_map` (a local path or an object-store URL)."""
    loc = location(path)
    try:
        table = pq.read_table(loc.path, filesystem=loc.fs)
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{path}: not a readable vocab_map parquet file ({e})") from None
    try:
        validate_table(table)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from None
    return table
