import numpy as np
import pytest

from pipeline.align.offsets import (MANY_TO_ONE, MASKED, ONE_TO_MANY, ONE_TO_ONE, align_offsets,
                                    normalize_offsets)
from pipeline.errors import AlignmentError
from pipeline.modeling.canonical import canonicalize


def _align(src, piv, **kw):
    s, p = np.array(src).reshape(-1, 2), np.array(piv).reshape(-1, 2)
    return align_offsets(s[:, 0], s[:, 1], p[:, 0], p[:, 1], **kw)


def test_one_to_one():
    al = _align([(0, 3), (3, 5)], [(0, 3), (3, 5)])
    assert al.src_index.tolist() == [0, 1] and al.relation.tolist() == [ONE_TO_ONE] * 2 and al.coverage == 1.0


def test_one_to_many_aligns_with_the_first_source_token():
    al = _align([(0, 3), (3, 5), (5, 6)], [(0, 5), (5, 6)])
    assert al.src_index.tolist() == [0, 2] and al.relation.tolist() == [ONE_TO_MANY, ONE_TO_ONE]


def test_many_to_one_keeps_the_first_pivot_token():
    al = _align([(0, 5), (5, 6)], [(0, 2), (2, 5), (5, 6)])
    assert al.src_index.tolist() == [0, -1, 1] and al.relation.tolist() == [MANY_TO_ONE, MASKED, ONE_TO_ONE]
    assert al.counts() == {"masked": 1, "1:1": 1, "1:n": 0, "n:1": 1} and al.coverage == pytest.approx(2 / 3)


def test_crossing_boundaries_and_same_span_only():
    src, piv = [(0, 3), (3, 5), (5, 9)], [(0, 2), (2, 5), (5, 9)]
    al = _align(src, piv)
    assert al.src_index.tolist() == [0, -1, 2] and al.relation.tolist() == [MANY_TO_ONE, MASKED, ONE_TO_ONE]
    strict = _align(src, piv, require_same_span=True)
    assert strict.src_index.tolist() == [-1, -1, 2] and strict.relation.tolist() == [MASKED, MASKED, ONE_TO_ONE]


def test_trimmed_leading_space_is_tiled_back():
    # "Hello world": GPT-2 with trim_offsets reports Ġworld from "w"; SentencePiece reports ▁world from " "
    al = _align([(0, 5), (6, 11)], [(0, 5), (5, 11)])
    assert al.src_index.tolist() == [0, 1] and al.relation.tolist() == [ONE_TO_ONE] * 2


def test_byte_pieces_of_one_character_are_continuations():
    # " 🙂x": byte-level pieces " ð\x9f", "\x99", "\x82" all report the emoji's span; the pivot has " 🙂" then "x"
    src = [(0, 2), (1, 2), (1, 2), (2, 3)]
    start, end, fresh = normalize_offsets(*np.array(src).T)
    assert fresh.tolist() == [True, False, False, True] and start.tolist() == [0, 2, 2, 2]
    al = _align(src, [(0, 2), (2, 3)])
    assert al.src_index.tolist() == [0, 3] and al.relation.tolist() == [ONE_TO_ONE] * 2
    assert _align([(0, 2), (2, 3)], src).src_index.tolist() == [0, -1, -1, 1]


def test_end_of_text_tokens_align_and_first_start_is_kept():
    al = _align([(0, 4), (4, 4)], [(0, 2), (2, 4), (4, 4)])
    assert al.src_index.tolist() == [0, -1, 1] and al.relation[2] == ONE_TO_ONE
    assert _align([(3, 5)], [(0, 5)]).src_index.tolist() == [-1]  # a dropped first token is not filled in


def test_empty_and_invalid_inputs():
    assert _align([], [(0, 1)]).src_index.tolist() == [-1] and _align([(0, 1)], []).src_index.size == 0
    with pytest.raises(AlignmentError, match="one length"):
        align_offsets([0, 1], [1], [0], [1])
    with pytest.raises(AlignmentError, match="non-negative"):
        align_offsets([-1], [-1], [0], [1])
    # a negative start (the token begins inside the prompt) is allowed, and never aligned
    assert _align([(-1, 1), (1, 2)], [(-1, 1), (1, 2)]).src_index.tolist() == [-1, 1]


def _reference(src_start, src_end, piv_start, piv_end):
    """Plain loops over the documented policy."""
    def units(start, end):
        out, prev = {}, None
        for t, (a, b) in enumerate(zip(start.tolist(), end.tolist())):
            prev = a if prev is None else prev
            if a >= prev:
                out.setdefault(prev, t)
            prev = max(prev, b)
        return out
    src = units(src_start, src_end)
    return [src.get(c, -1) if units(piv_start, piv_end).get(c) == j else -1
            for j, c in enumerate(normalize_offsets(piv_start, piv_end)[0].tolist())]


@pytest.mark.parametrize("lead", ["", " "])
def test_real_tokenisations_align_where_tokens_start_together(bpe, sp, text, lead, encode):
    t = lead + text.strip()
    (ib, sb, eb), (ip, sp_, ep) = encode(bpe, t), encode(sp, t)
    al = align_offsets(sb, eb, sp_, ep)
    assert al.src_index.tolist() == _reference(sb, eb, sp_, ep)
    assert 0.6 < al.coverage < 1 and sum(al.counts().values()) == ip.size
    if lead:  # without a prepended ▁, token bytes give offsets independent of the tokenizers' own
        byte_start = [np.cumsum([0] + [len(c.token_bytes[i]) for i in ids])[:-1]
                      for c, ids in ((canonicalize(bpe), ib), (canonicalize(sp), ip))]
        j = np.flatnonzero(al.src_index >= 0)
        assert np.array_equal(byte_start[0][al.src_index[j]], byte_start[1][j])
