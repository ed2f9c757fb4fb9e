"""MinCE source selection (FuseLLM): per sample, keep the source whose teacher has the lowest CE on the gold tokens."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def gold_logprobs(topk_logprobs: Tensor, topk_ids: Tensor, gold_ids: Tensor) -> Tensor:
    """`[...,T]` a teacher's log-prob of the pivot's gold token, read from its top-k mapped into pivot ids.

    topk_logprobs, topk_ids: `[...,T,k]` (ids in the pivot vocabulary, -1 = padding); gold_ids: `[...,T]`. -inf where
    the gold id is not among the mapped top-k (``mince_weights`` floors it). The source's log-prob of its *own*
    target token is not this: where tokenisations differ, the source's target is another string than the pivot's.
    """
    hit = (topk_ids == gold_ids.unsqueeze(-1)) & (topk_ids >= 0)
    return torch.where(hit, topk_logprobs, -torch.inf).amax(-1)


@torch.no_grad()
def mince_weights(target_logprobs: Tensor, topk_logprobs: Tensor, masks: Tensor) -> Tensor:
    """One-hot source weights `[S,B]` picking, for each sample, the source with minimum mean cross-entropy.

    target_logprobs: `[S,B,T]` each source's log-prob of the gold (pivot) target token; NaN or -inf where the gold
    token is not in that source's stored top-k: it is floored at the smallest finite stored top-k log-prob of the
    position (the gold token's probability is at most that value, so this is the most generous estimate).
    topk_logprobs: `[S,B,T,k]` each source's stored top-k log-probs (for the floor).
    masks: `[S,B,T]` or `[B,T]` bool, the positions each source covers.
    A source with no covered position in a sample cannot be chosen; ties go to the lower source index; a sample
    that no source covers gets all-zero weights (no teacher term for it). No gradient flows.
    """
    masks = masks.expand_as(target_logprobs)
    floor = torch.where(torch.isfinite(topk_logprobs), topk_logprobs, torch.inf).amin(-1)
    logprobs = torch.where(torch.isfinite(target_logprobs), target_logprobs, floor)
    covered = masks & torch.isfinite(logprobs)
    n = covered.sum(-1)
    ce = -torch.where(covered, logprobs, 0.0).sum(-1) / n.clamp(min=1)
    ce = torch.where(n > 0, ce, torch.inf)
    best = ce.argmin(0)
    weights = torch.zeros_like(ce).scatter_(0, best.unsqueeze(0), 1.0)
    return torch.where(torch.isfinite(ce).any(0, keepdim=True), weights, 0.0)
