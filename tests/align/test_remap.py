import math

import numpy as np
import pytest

from pipeline.align.remap import gather_aligned, remap_topk
from pipeline.errors import AlignmentError


def _reference(ids, logprobs, id_map):
    n, k = ids.shape
    out_ids, out_lp = np.full((n, k), -1, np.int32), np.full((n, k), -np.inf, np.float32)
    for r in range(n):
        merged = {}
        for i, lp in zip(ids[r].tolist(), logprobs[r].tolist()):
            if 0 <= i < id_map.size and id_map[i] >= 0 and lp > -math.inf:
                merged.setdefault(int(id_map[i]), []).append(lp)
        rows = sorted(((math.log(sum(math.exp(x) for x in v)), p) for p, v in merged.items()),
                      key=lambda t: (-t[0], t[1]))
        for c, (lp, p) in enumerate(rows):
            out_ids[r, c], out_lp[r, c] = p, lp
    return out_ids, out_lp


def test_logsumexp_merge_matches_loop_reference():
    rng = np.random.default_rng(0)
    n, k, vocab = 300, 8, 50
    id_map = rng.integers(-1, 12, vocab)  # many collisions, some unmapped
    ids = rng.integers(-1, vocab + 5, (n, k))  # padding and ids past the map
    logits = rng.normal(size=(n, k)) * 3
    logprobs = (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)
    logprobs[rng.random((n, k)) < 0.1] = -np.inf
    got_ids, got_lp = remap_topk(ids, logprobs, id_map)
    ref_ids, ref_lp = _reference(ids, logprobs, id_map)
    assert got_ids.dtype == np.int32 and got_lp.dtype == np.float32
    np.testing.assert_array_equal(got_ids, ref_ids)
    np.testing.assert_allclose(got_lp, ref_lp, rtol=1e-6)
    finite = np.isfinite(got_lp[:, 1:])
    assert np.all(got_lp[:, 1:][finite] <= got_lp[:, :-1][finite])


def test_merge_by_hand():
    ids, lp = np.array([[3, 1, 2]]), np.log(np.array([[0.5, 0.3, 0.2]], np.float32))
    out_ids, out_lp = remap_topk(ids, lp, np.array([-1, 7, 9, 7]))
    assert out_ids.tolist() == [[7, 9, -1]]
    np.testing.assert_allclose(np.exp(out_lp[0, :2]), [0.8, 0.2], rtol=1e-6) and out_lp[0, 2] == -np.inf


def test_all_dropped_and_shapes():
    out_ids, out_lp = remap_topk(np.zeros((2, 3), int), np.zeros((2, 3), np.float32), np.array([-1]))
    assert (out_ids == -1).all() and np.isneginf(out_lp).all()
    assert remap_topk(np.zeros((0, 4), int), np.zeros((0, 4), np.float32), np.array([0]))[0].shape == (0, 4)
    with pytest.raises(AlignmentError, match=r"\[n, k\]"):
        remap_topk(np.zeros((2, 3), int), np.zeros((2, 2), np.float32), np.array([0]))


def test_gather_aligned_masks_rows():
    ids = np.array([[1, 2], [3, 4]])
    lp = np.array([[-0.1, -2.0], [-0.5, -1.0]], np.float32)
    g_ids, g_lp = gather_aligned(np.array([1, -1, 0]), ids, lp)
    assert g_ids.tolist() == [[3, 4], [-1, -1], [1, 2]] and np.isneginf(g_lp[1]).all()
