"""Re-express a source top-k in pivot ids: map every id, merge ids that land on one pivot id, re-sort.

Shapes: ``ids`` int [n, k] in the source vocabulary, ``logprobs`` float32 [n, k]. Source ids that map to the same
pivot id are merged with logsumexp (their probabilities add up); unmapped ids (map value -1, id out of the map's
range, negative padding ids, ``-inf`` log-probabilities) are dropped. Rows come back sorted by descending log-prob,
padded with id -1 / ``-inf``. Everything is vectorised over all rows at once.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import AlignmentError


def gather_aligned(src_index: np.ndarray, ids: np.ndarray, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source top-k rows at each pivot position's aligned source position; masked positions get empty rows."""
    src_index = np.asarray(src_index)
    ok = src_index >= 0
    rows = np.where(ok, src_index, 0)
    out_ids = np.where(ok[:, None], np.asarray(ids)[rows], -1)
    out_lp = np.where(ok[:, None], np.asarray(logprobs, np.float32)[rows], np.float32(-np.inf))
    return out_ids, out_lp


def remap_topk(ids: np.ndarray, logprobs: np.ndarray, id_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pivot ids int32 [n, k] (-1 padding) and log-probs float32 [n, k] (-inf padding); see module doc."""
    ids, logprobs, id_map = np.asarray(ids), np.asarray(logprobs, np.float32), np.asarray(id_map)
    if ids.shape != logprobs.shape or ids.ndim != 2:
        raise AlignmentError(f"ids and logprobs must both be [n, k], got {ids.shape} and {logprobs.shape}")
    n, k = ids.shape
    out_ids = np.full((n, k), -1, np.int32)
    out_lp = np.full((n, k), -np.inf, np.float32)
    if not ids.size:
        return out_ids, out_lp
    in_range = (ids >= 0) & (ids < id_map.size)
    piv = np.where(in_range, id_map[np.where(in_range, ids, 0)], -1).astype(np.int64)
    valid = (piv >= 0) & np.isfinite(logprobs)
    # sort each row by pivot id, invalid entries last, so equal ids are neighbours
    key = np.where(valid, piv, np.iinfo(np.int64).max)
    order = np.argsort(key, axis=1, kind="stable")
    key = np.take_along_axis(key, order, 1).ravel()
    lp = np.take_along_axis(logprobs, order, 1).astype(np.float64).ravel()
    row = np.repeat(np.arange(n), k)
    ok = np.take_along_axis(valid, order, 1).ravel()
    key, lp, row = key[ok], lp[ok], row[ok]
    if not key.size:
        return out_ids, out_lp
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]) | (row[1:] != row[:-1])])
    peak = np.maximum.reduceat(lp, starts)
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, key.size]))
    merged = peak + np.log(np.add.reduceat(np.exp(lp - peak[group]), starts))
    g_row, g_id = row[starts], key[starts]
    # rank within the row by descending log-prob (ties: lower pivot id first)
    by = np.lexsort((g_id, -merged, g_row))
    g_row, g_id, merged = g_row[by], g_id[by], merged[by]
    first_of_row = np.searchsorted(g_row, g_row, side="left")
    col = np.arange(g_row.size) - first_of_row
    out_ids[g_row, col] = g_id
    out_lp[g_row, col] = merged
    return out_ids, out_lp
