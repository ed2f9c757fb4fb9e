import numpy as np
import pytest

from pipeline.align.dtw import dtw_align, dtw_path, path_to_alignment, reference_dtw
from pipeline.align.offsets import MANY_TO_ONE, MASKED, ONE_TO_MANY, ONE_TO_ONE, align_offsets
from pipeline.errors import ConfigError
from pipeline.modeling.canonical import canonicalize


def test_path_to_alignment_relations():
    al = path_to_alignment([(0, 0), (1, 0), (2, 1), (2, 2), (3, 3)], 4)
    assert al.src_index.tolist() == [0, 2, -1, 3]
    assert al.relation.tolist() == [ONE_TO_MANY, MANY_TO_ONE, MASKED, ONE_TO_ONE]


def test_numpy_dtw_equals_reference_loops():
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = ["".join(rng.choice(list("ab c"), rng.integers(1, 4))) for _ in range(rng.integers(1, 30))]
        b = ["".join(rng.choice(list("ab c"), rng.integers(1, 4))) for _ in range(rng.integers(1, 30))]
        assert dtw_path(a, b, cost="levenshtein") == reference_dtw(a, b)
    assert dtw_path([], ["a"]) == reference_dtw([], ["a"]) == []


def test_dtw_agrees_with_offsets_on_one_to_one_positions(bpe, sp, text, encode):
    (ib, sb, eb), (ip, sp_, ep) = encode(bpe, text), encode(sp, text)
    exact = align_offsets(sb, eb, sp_, ep)
    al = dtw_align(canonicalize(bpe).texts(ib.tolist()), canonicalize(sp).texts(ip.tolist()))
    one = exact.relation == ONE_TO_ONE
    assert one.sum() > 100
    # whitespace-only tokens can be ambiguous to any cost over token strings: allow one boundary in a hundred
    assert (al.src_index[one] == exact.src_index[one]).mean() >= 0.99
    assert (al.src_index == exact.src_index).mean() > 0.85


def test_unknown_cost():
    with pytest.raises(ConfigError, match="cost"):
        dtw_align(["a"], ["a"], cost="cosine")
