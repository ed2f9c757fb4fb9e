"""Sequence alignment of two tokenisations of the same text by character offsets, in linear time.

Inputs per sample and side: ``char_start``/``char_end`` of the token predicted at each position, relative to the
response text (what capture stores). Policy:

* A pivot position and a source position are aligned when their tokens **start at the same character**.
* 1:1 (same span): aligned. 1:n (the pivot token is longer, it spans several source tokens): the pivot position
  aligns with the source token starting at the same character. n:1 (several pivot tokens inside one source token):
  the first pivot token aligns, the rest start inside the source token and are masked. Any other pivot position
  (its start is not a source token's start) is masked; ``require_same_span=True`` keeps 1:1 positions only.
* When several tokens start at the same character, only the first of them takes part.
* A token starting before the response (negative start: it begins inside the prompt, as a byte-level ``.\n\n`` does
  when the prompt ends with ``.\n`` and the response starts with ``\n``) never takes part: prompts are rendered
  differently per model, so no token of the other side is known to start at the same byte.

Offsets are normalised first, because HF tokenizers report them loosely:

* tiling: a token's start becomes the previous token's end, and ends are made non-decreasing (running maximum).
  This gives trimmed whitespace (GPT-2 style ``trim_offsets``: ``Ġworld`` reported from ``w``) back to the token
  that carries it. The first token keeps its own start: text before it may belong to a token that was not kept.
* a token whose reported start lies before the previous token's end does not start a character of its own: byte
  pieces of one multi-byte character (``ðŁ``/``Ļ``/``Ĥ`` all report the emoji's span), or the real first token after
  a prepended ``▁``. It is a *continuation*: never aligned as a pivot position, never matched as a source position,
  and its span is added to the token it continues.
* an end-of-text token at ``(len, len)`` (as capture appends) starts at ``len`` and can align with the other side's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import AlignmentError

MASKED, ONE_TO_ONE, ONE_TO_MANY, MANY_TO_ONE = 0, 1, 2, 3
RELATIONS = {MASKED: "masked", ONE_TO_ONE: "1:1", ONE_TO_MANY: "1:n", MANY_TO_ONE: "n:1"}


@dataclass(frozen=True)
class Alignment:
    """Per pivot position: the aligned source position (-1: masked) and the span relation (``RELATIONS``)."""

    src_index: np.ndarray  # int32 [n_pivot]
    relation: np.ndarray  # int8 [n_pivot]

    @property
    def coverage(self) -> float:
        """Share of pivot positions that are aligned."""
        return float((self.src_index >= 0).mean()) if self.src_index.size else 0.0

    def counts(self) -> dict[str, int]:
        """Number of pivot positions per relation name."""
        c = np.bincount(self.relation, minlength=len(RELATIONS))
        return {name: int(c[code]) for code, name in RELATIONS.items()}


def _check(start, end, side: str) -> tuple[np.ndarray, np.ndarray]:
    start, end = np.asarray(start, np.int64), np.asarray(end, np.int64)
    if start.ndim != 1 or start.shape != end.shape:
        raise AlignmentError(f"{side} char_start and char_end must be 1-D of one length, got {start.shape} "
                             f"and {end.shape}")
    if end.size and end.min() < 0:
        raise AlignmentError(f"{side} character ends must be non-negative (a kept token ends inside the response)")
    return start, end


def normalize_offsets(char_start, char_end) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tiled (start, end) and a bool mask of the tokens that start a character of their own (see module doc)."""
    start, end = _check(char_start, char_end, "token")
    if not start.size:
        return start, end, np.zeros(0, bool)
    end_n = np.maximum.accumulate(np.maximum(end, start))
    prev_end = np.empty_like(end_n)
    prev_end[0] = start[0]
    prev_end[1:] = end_n[:-1]
    return prev_end, end_n, start >= prev_end


def _units(char_start, char_end, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, starts and ends of the tokens that take part: the first token starting at each character, with
    the spans of its continuations."""
    start, end, fresh = normalize_offsets(*_check(char_start, char_end, side))
    pos = np.flatnonzero(fresh)
    # a unit ends where the token before the next fresh token ends
    unit_end = end[np.append(pos[1:] - 1, start.size - 1)] if pos.size else pos
    s = start[pos]
    first = np.ones(pos.size, bool)
    first[1:] = s[1:] != s[:-1]  # starts are non-decreasing: equal neighbours are ties
    first &= s >= 0  # begins inside the prompt: no counterpart on the other side (module doc)
    return pos[first], s[first], unit_end[first]


def align_offsets(src_start, src_end, pivot_start, pivot_end, *, require_same_span: bool = False) -> Alignment:
    """Align pivot positions with source positions whose tokens start at the same character (module policy)."""
    n_pivot = len(pivot_start)
    src_index = np.full(n_pivot, -1, np.int32)
    relation = np.zeros(n_pivot, np.int8)
    s_pos, s_start, s_end = _units(src_start, src_end, "source")
    p_pos, p_start, p_end = _units(pivot_start, pivot_end, "pivot")
    if not s_pos.size or not p_pos.size:
        return Alignment(src_index, relation)
    # character → the unit starting there (integer indexing: O(text length), no search)
    at_char = np.full(int(max(s_start[-1], p_start[-1])) + 1, -1, np.int64)
    at_char[s_start] = np.arange(s_pos.size)
    unit = at_char[p_start]
    hit = unit >= 0
    p_pos, p_end, unit = p_pos[hit], p_end[hit], unit[hit]
    rel = np.where(p_end == s_end[unit], ONE_TO_ONE, np.where(p_end > s_end[unit], ONE_TO_MANY, MANY_TO_ONE))
    if require_same_span:
        keep = rel == ONE_TO_ONE
        p_pos, unit, rel = p_pos[keep], unit[keep], rel[keep]
    src_index[p_pos] = s_pos[unit]
    relation[p_pos] = rel
    return Alignment(src_index, relation)
