"""Which pivot tokens a source token without an exact match may map to, best first (plain Python, no Ray).

Everything works on canonical **bytes**, never on decoded strings: a multi-byte character (CJK, Hangul, emoji, é) then
shares its leading bytes with the pivot's byte pieces instead of being one opaque character at distance 1 from
every other single character (which made the lowest id, ``!``, win thousands of ties).

:func:`candidates` ranks, per source token:

1. the pivot tokens whose bytes are a **prefix** of the source token's, longest first: the token the pivot would
   start the same bytes with (its distance is the number of bytes left over). Its log-prob then stands for "the
   text continues with these bytes", the right mass to merge at that position; a token at a smaller edit distance
   that diverges from the source bytes (`` ÁsÁ`` → `` über``) would put that mass on text that does not follow;
2. when the pivot has no such token (its alphabet lacks the first byte): the nearest by Levenshtein distance
   (:func:`nearest`) among the pivot tokens that start with the same byte, else among all of them.

Nearest neighbours are searched in rounds d = 1, 2, 4, …: a pivot token within distance d of a query has a length
within ±d of it, so each round compares a query only with the pivot tokens of those lengths (``cdist``) and stops for
the queries that found one. Ties go to the longest common prefix, then to a choice that is a prefix of the query,
then to the lowest index.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein, Prefix

_CELLS = 1 << 24  # distance-matrix cells per cdist call (64 MiB of int32)
_PARALLEL_CELLS = 1 << 16  # below this many cells one thread is faster than starting a pool
_EMPTY = (np.empty(0, np.int64), np.empty(0, np.int32))


def candidates(queries: list[bytes], choices: list[bytes], *, k: int = 1,
               max_distance: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: (choice indices, byte edit distances) of at most ``k`` candidates, best first (module doc)."""
    index: dict[bytes, int] = {}
    for j, c in enumerate(choices):
        index.setdefault(c, j)
    out: list[tuple[np.ndarray, np.ndarray]] = [_EMPTY] * len(queries)
    rest = []
    for q, b in enumerate(queries):
        found = prefixes(b, index, k, max_distance)
        if found:
            out[q] = (np.asarray([j for j, _ in found], np.int64), np.asarray([d for _, d in found], np.int32))
        else:
            rest.append(q)
    for q, hit in zip(rest, nearest_same_start([queries[q] for q in rest], choices, k=k, max_distance=max_distance)):
        out[q] = hit
    return out


def prefixes(query: bytes, index: dict[bytes, int], k: int, max_distance: int | None) -> list[tuple[int, int]]:
    """(choice index, distance) of the choices that are a proper prefix of ``query``, longest first, at most k."""
    out = []
    shortest = 1 if max_distance is None else max(1, len(query) - max_distance)
    for n in range(len(query) - 1, shortest - 1, -1):
        j = index.get(query[:n])
        if j is not None:
            out.append((j, len(query) - n))
            if len(out) == k:
                break
    return out


def nearest_same_start(queries: list[bytes], choices: list[bytes], *, k: int = 1,
                       max_distance: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`nearest`, each query searched among the choices that begin with its first byte (all choices when none
    does): a smaller search, and a mapped token that starts the same bytes as the source token."""
    out: list[tuple[np.ndarray, np.ndarray]] = [_EMPTY] * len(queries)
    by_first: dict[int, list[int]] = defaultdict(list)
    for j, c in enumerate(choices):
        if c:
            by_first[c[0]].append(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for q, b in enumerate(queries):
        groups[b[0] if b and b[0] in by_first else -1].append(q)
    for first, qs in groups.items():
        ids = np.asarray(by_first[first] if first >= 0 else range(len(choices)), np.int64)
        found = nearest([queries[q] for q in qs], [choices[j] for j in ids], k=k, max_distance=max_distance)
        for q, (idx, dist) in zip(qs, found):
            out[q] = (ids[idx], dist)
    return out


def _ranked(query: bytes, row: np.ndarray, cutoff: int, k: int, window: list[bytes]) -> np.ndarray:
    """Window indices of the ``k`` nearest choices within ``cutoff``: by distance, then longest common prefix, then
    whether the choice is a prefix of the query (a token the pivot could start the query's bytes with), then index."""
    ok = np.flatnonzero(row <= cutoff)
    if ok.size > k:  # keep every choice tied with the k-th nearest so that the prefix decides among them
        kth = np.partition(row[ok], k - 1)[k - 1]
        ok = ok[row[ok] <= kth]
    if ok.size > 1:
        cand = [window[i] for i in ok]
        prefix = process.cdist([query], cand, scorer=Prefix.similarity, dtype=np.int32)[0]
        inside = prefix == np.fromiter(map(len, cand), np.int32, len(cand))
        ok = ok[np.lexsort((ok, ~inside, -prefix, row[ok]))]
    return ok[:k]


def nearest(queries: list[bytes], choices: list[bytes], *, k: int = 1,
            max_distance: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: (choice indices, distances) of its ``k`` nearest choices by Levenshtein distance, best first.

    Queries and choices are byte strings (or any sequences rapidfuzz takes, e.g. str). Only choices within the
    distance of the round that found the nearest one are ranked; a query with nothing within ``max_distance`` gets
    empty arrays.
    """
    out: list[tuple[np.ndarray, np.ndarray]] = [_EMPTY] * len(queries)
    if not queries or not choices:
        return out
    clen = np.fromiter(map(len, choices), np.int64, len(choices))
    order = np.argsort(clen, kind="stable")
    sorted_len, sorted_choices = clen[order], [choices[i] for i in order]
    qlen = np.fromiter(map(len, queries), np.int64, len(queries))
    longest = int(max(qlen.max(), clen.max()))
    pending, d = np.arange(len(queries)), 1
    while pending.size:
        cutoff = d if max_distance is None else min(d, max_distance)
        resolved = []
        for length in np.unique(qlen[pending]).tolist():
            qs = pending[qlen[pending] == length]
            lo = int(np.searchsorted(sorted_len, length - cutoff, side="left"))
            hi = int(np.searchsorted(sorted_len, length + cutoff, side="right"))
            if hi <= lo:
                continue
            window = sorted_choices[lo:hi]
            step = max(1, _CELLS // len(window))
            for a in range(0, qs.size, step):
                rows = qs[a:a + step]
                dist = process.cdist([queries[q] for q in rows], window, scorer=Levenshtein.distance,
                                     score_cutoff=cutoff, dtype=np.int32, workers=_workers(rows.size, len(window)))
                for q, row in zip(rows.tolist(), dist):
                    if row.min() <= cutoff:
                        best = _ranked(queries[q], row, cutoff, k, window)
                        out[q] = (order[lo + best], row[best])
                        resolved.append(q)
        pending = np.setdiff1d(pending, resolved, assume_unique=True)
        if cutoff >= longest or cutoff == max_distance:
            break  # every distance is at most the longer length: nothing further can resolve
        d *= 2
    return out


def _workers(n_queries: int, n_choices: int) -> int:
    """Threads for one cdist call: all cores for big matrices, one for small ones (thread start-up dominates)."""
    return -1 if n_queries * n_choices >= _PARALLEL_CELLS else 1
