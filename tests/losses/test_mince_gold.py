"""MinCE reads the teacher's log-prob of the pivot's gold token from the mapped top-k (not the source's own target)."""

import math

import torch

from pipeline.losses.mince import gold_logprobs, mince_weights


def test_gold_logprob_is_read_from_the_mapped_topk():
    ids = torch.tensor([[[5, 7, -1], [3, 5, 9], [-1, -1, -1]]])
    lps = torch.tensor([[[-0.1, -2.5, -math.inf], [-0.2, -1.9, -4.0], [-math.inf] * 3]])
    got = gold_logprobs(lps, ids, torch.tensor([[7, 4, -1]]))
    assert got[0, 0] == -2.5  # gold among the top-k: its own log-prob, wherever it ranks
    assert got[0, 1] == -math.inf and got[0, 2] == -math.inf  # absent (and padding id -1 never matches)


def test_mince_picks_the_teacher_that_puts_mass_on_the_pivots_gold():
    # Teacher 0 is confident in its top-1 but the pivot's gold is its 2nd choice; teacher 1's top-1 is the gold.
    ids = torch.tensor([[[[1, 2]]], [[[2, 1]]]])
    lps = torch.tensor([[[[-0.01, -5.0]]], [[[-0.3, -1.4]]]])
    gold = gold_logprobs(lps, ids, torch.tensor([[2]]))
    w = mince_weights(gold, lps, torch.ones(1, 1, dtype=torch.bool))
    assert w[:, 0].tolist() == [0.0, 1.0]
    # a gold outside both top-k sets is floored at each teacher's smallest stored log-prob (-5.0 vs -1.4)
    none = gold_logprobs(lps, ids, torch.tensor([[9]]))
    assert mince_weights(none, lps, torch.ones(1, 1, dtype=torch.bool))[:, 0].tolist() == [0.0, 1.0]
