"""DTW alignment of two token sequences, the fallback for tokenizers that report no character offsets.

Pass canonical strings (:meth:`CanonicalVocab.texts`) so that ``Ġthe`` and ``▁the`` are equal. The cost of pairing
two tokens is an edit distance of their strings:

* ``"containment"`` (default): ``min(|a|, |b|) - LCS(a, b) + 0.1·[a ≠ b]``, the characters of the shorter token
  missing from the longer one. A token the other tokenizer splits differently pairs with each of its pieces at
  almost no cost, so the path follows the text; plain Levenshtein makes a short piece (``.``) cheaper to pair with
  the *next* token (`` A``) than with the token it belongs to (`` file.``), and misplaces about one 1:1 boundary in
  eight on real tokenisations; this cost agrees with the offsets aligner on all but rare whitespace-only tokens
  (a lone `` `` fits the token before as well as the one after).
* ``"levenshtein"``: FuseLLM's cost.

:func:`dtw_align` fills the DP table one anti-diagonal at a time with numpy; :func:`reference_dtw` is the plain
double loop with Levenshtein cost (FuseLLM style), kept as the benchmark baseline and test oracle. Both prefer the
diagonal step on ties, then the step in the source.

A warping path is turned into the offsets module's format (:func:`path_to_alignment`): a pivot position aligns with a
source position when the path pairs them and neither was paired with anything earlier, i.e. both tokens begin
there. The relation is 1:1 when the path leaves the pair diagonally (or ends), 1:n when the pivot token goes on
pairing with later source tokens, n:1 when the source token goes on with later pivot tokens (those are masked).
Time and memory are O(n·m): use it only where offsets are missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq, Levenshtein

from pipeline.align.offsets import MANY_TO_ONE, ONE_TO_MANY, ONE_TO_ONE, Alignment
from pipeline.errors import ConfigError

DIAG, UP, LEFT = 0, 1, 2  # UP: previous source token, same pivot token; LEFT: previous pivot token


def path_to_alignment(path: Sequence[tuple[int, int]], n_pivot: int) -> Alignment:
    """Alignment of a monotone warping path of (source, pivot) pairs, first pair (0, 0), last pair (n-1, m-1)."""
    src_index = np.full(n_pivot, -1, np.int32)
    relation = np.zeros(n_pivot, np.int8)
    p = np.asarray(path, np.int64).reshape(-1, 2)
    if not p.size:
        return Alignment(src_index, relation)
    new_src = np.ones(len(p), bool)
    new_piv = np.ones(len(p), bool)
    new_src[1:] = p[1:, 0] != p[:-1, 0]
    new_piv[1:] = p[1:, 1] != p[:-1, 1]
    both = np.flatnonzero(new_src & new_piv)
    nxt = np.minimum(both + 1, len(p) - 1)
    more_src = (nxt != both) & (p[nxt, 1] == p[both, 1])  # next step stays on this pivot token
    more_piv = (nxt != both) & (p[nxt, 0] == p[both, 0])  # next step stays on this source token
    src_index[p[both, 1]] = p[both, 0]
    relation[p[both, 1]] = np.where(more_src, ONE_TO_MANY, np.where(more_piv, MANY_TO_ONE, ONE_TO_ONE))
    return Alignment(src_index, relation)


def _traceback(step: np.ndarray) -> list[tuple[int, int]]:
    i, j = step.shape[0] - 1, step.shape[1] - 1
    path = [(i, j)]
    while i or j:
        s = step[i, j] if i and j else (UP if i else LEFT)
        i, j = (i - 1, j - 1) if s == DIAG else (i - 1, j) if s == UP else (i, j - 1)
        path.append((i, j))
    return path[::-1]


def cost_matrix(src_tokens: Sequence[str], pivot_tokens: Sequence[str], cost: str = "containment") -> np.ndarray:
    """float64 [n, m] pairing costs (module doc)."""
    a, b = list(src_tokens), list(pivot_tokens)
    if cost == "levenshtein":
        return process.cdist(a, b, scorer=Levenshtein.distance, dtype=np.int32, workers=-1).astype(np.float64)
    if cost != "containment":
        raise ConfigError(f"dtw cost must be 'containment' or 'levenshtein', got {cost!r}")
    common = process.cdist(a, b, scorer=LCSseq.similarity, dtype=np.int32, workers=-1)
    len_a, len_b = np.fromiter(map(len, a), np.int32, len(a)), np.fromiter(map(len, b), np.int32, len(b))
    same = (common == len_a[:, None]) & (common == len_b[None, :])  # LCS as long as both: equal strings
    return (np.minimum.outer(len_a, len_b) - common) + 0.1 * ~same


def dtw_path(src_tokens: Sequence[str], pivot_tokens: Sequence[str],
             cost: str = "containment") -> list[tuple[int, int]]:
    """Minimum-cost warping path of (source, pivot) pairs; numpy over anti-diagonals."""
    n, m = len(src_tokens), len(pivot_tokens)
    if not n or not m:
        return []
    cost = cost_matrix(src_tokens, pivot_tokens, cost)
    acc = np.full((n + 1, m + 1), np.inf)  # acc[i+1, j+1]: best cost of a path ending at (i, j)
    acc[0, 0] = 0.0
    step = np.zeros((n, m), np.int8)
    for k in range(n + m - 1):
        i = np.arange(max(0, k - m + 1), min(k, n - 1) + 1)
        j = k - i
        options = np.stack([acc[i, j], acc[i, j + 1], acc[i + 1, j]])  # diag, up, left
        best = options.argmin(0)  # the first minimum: diagonal wins ties, then up
        acc[i + 1, j + 1] = cost[i, j] + options[best, np.arange(i.size)]
        step[i, j] = best
    return _traceback(step)


def dtw_align(src_tokens: Sequence[str], pivot_tokens: Sequence[str], cost: str = "containment") -> Alignment:
    """Offsets-format alignment of two token string sequences by DTW with an edit-distance cost."""
    return path_to_alignment(dtw_path(src_tokens, pivot_tokens, cost), len(pivot_tokens))


def reference_dtw(src_tokens: Sequence[str], pivot_tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Plain Python DTW with a per-pair edit distance, as FuseLLM aligns tokens: the benchmark baseline."""
    n, m = len(src_tokens), len(pivot_tokens)
    if not n or not m:
        return []
    inf = float("inf")
    acc = [[inf] * (m + 1) for _ in range(n + 1)]
    acc[0][0] = 0.0
    for i in range(n):
        for j in range(m):
            c = Levenshtein.distance(src_tokens[i], pivot_tokens[j])
            diag, up, left = acc[i][j], acc[i][j + 1], acc[i + 1][j]
            acc[i + 1][j + 1] = c + min(diag, up, left)
    i, j, path = n - 1, m - 1, [(n - 1, m - 1)]
    while i or j:
        if i and j:
            diag, up, left = acc[i][j], acc[i][j + 1], acc[i + 1][j]
            if diag <= up and diag <= left:
                i, j = i - 1, j - 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
        elif i:
            i -= 1
        else:
            j -= 1
        path.append((i, j))
    return path[::-1]
