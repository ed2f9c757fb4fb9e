"""Align one shard: the source's top-k re-expressed at the pivot's positions (plain numpy, no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.align.dtw import dtw_align
from pipeline.align.offsets import RELATIONS, align_offsets
from pipeline.align.remap import gather_aligned, remap_topk
from pipeline.errors import AlignmentError
from pipeline.io.reader import decode_topk

F16_LIST, I32_LIST = pa.list_(pa.float16()), pa.list_(pa.int32())


def _target_logprob(ids: np.ndarray, lps: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per source position: log-prob of its own target when in its top-k, else NaN."""
    hit = ids == targets[:, None]
    return np.where(hit.any(1), np.where(hit, lps, 0).sum(1), np.nan).astype(np.float32)


def known_starts(char_start: list[int], clipped: bool) -> list[int]:
    """``char_start`` with a first start of 0 marked unknown (-1) when ``clipped``: logit_shard v1 clipped the start of
    a token beginning inside the prompt to 0, so such a position may not start at the response's first byte."""
    if clipped and char_start and char_start[0] == 0:
        return [-1, *char_start[1:]]
    return char_start


def align_row(piv: dict, src: dict, codec, id_map: np.ndarray, k: int, *, require_same_span: bool,
              dtw_fallback: bool, src_tokens=None, piv_tokens=None, src_clipped: bool = False,
              piv_clipped: bool = False) -> tuple[dict, dict[str, int]]:
    """One aligned row and its relation counts. ``src_tokens``/``piv_tokens``: token strings for DTW;
    ``*_clipped``: that side's shards are logit_shard v1 (see :func:`known_starts`)."""
    where = f"sample {piv['sample_id']!r}"
    if piv["sample_id"] != src["sample_id"]:
        raise AlignmentError(f"{where}: the source shard holds {src['sample_id']!r} at this row (shard plans differ)")
    if piv["response_sha256"] != src["response_sha256"]:
        raise AlignmentError(f"{where}: the response text differs between source and pivot (sha256 "
                             f"{src['response_sha256'][:12]}… vs {piv['response_sha256'][:12]}…)")
    n = piv["n_positions"]
    counts = {name: 0 for name in RELATIONS.values()}
    skipped = piv["status"] == "skipped" or src["status"] == "skipped" or src["n_positions"] == 0
    if skipped:
        src_index = np.full(n, -1, np.int32)
        counts["masked"] = n
    else:
        ids, lps = decode_topk(codec, src)
        has_offsets = len(src["char_start"]) == src["n_positions"] and len(piv["char_start"]) == n
        if has_offsets:
            al = align_offsets(known_starts(src["char_start"], src_clipped), src["char_end"],
                               known_starts(piv["char_start"], piv_clipped), piv["char_end"],
                               require_same_span=require_same_span)
        elif dtw_fallback and src_tokens is not None:
            al = dtw_align(src_tokens, piv_tokens)
        else:
            raise AlignmentError(f"{where}: no character offsets in the shards and dtw_fallback is disabled")
        src_index = al.src_index.astype(np.int32)
        counts = al.counts()
    if skipped:
        rank = np.full((n, k), -np.inf, np.float32)
        mids, mlps = np.full((n, k), -1, np.int32), rank.copy()
        tgt = np.full(n, np.nan, np.float32)
    else:
        gids, rank = gather_aligned(src_index, ids, lps)
        mids, mlps = remap_topk(gids, rank, id_map)
        src_targets = np.asarray(src["input_ids"][src["response_start"]:], np.int64)
        own = _target_logprob(ids, lps, src_targets)
        tgt = np.where(src_index >= 0, own[np.maximum(src_index, 0)], np.nan).astype(np.float32)
    row = {
        "sample_index": piv["sample_index"], "sample_id": piv["sample_id"],
        "status": "skipped" if skipped else piv["status"], "n_positions": n,
        "n_aligned": int((src_index >= 0).sum()), "src_index": src_index,
        "rank_logprobs": rank.astype(np.float16).ravel(), "mapped_ids": mids.astype(np.int32).ravel(),
        "mapped_logprobs": mlps.astype(np.float16).ravel(), "target_logprob": tgt.astype(np.float16),
    }
    return row, counts


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Aligned rows → a table of the aligned-shard schema."""
    cols = {name: [r[name] for r in rows] for name in schema.names}
    arrays = []
    for f in schema:
        if pa.types.is_list(f.type):
            arrays.append(pa.array([np.asarray(v) for v in cols[f.name]], f.type))
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=schema)
