"""ULD term (InfiFusion style): sorted top-k probability vectors of student and teacher compared with L1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.losses._masked import masked_softmax, position_mean, valid_entries, zscore


def topk_distribution(logprobs: Tensor, valid: Tensor, temperature: float, standardise: bool) -> Tensor:
    """Per-position softmax(z/τ) over the valid top-k values, z = z-scored values or the values themselves.

    logprobs, valid: `[B,T,k]`. Returns `[B,T,k]`, sorted descending, 0 at invalid entries. Log-probs and logits
    differ by a per-position constant, so the z-scores and the softmax are the same as on logits.
    """
    x = zscore(logprobs, valid) if standardise else logprobs
    probs = masked_softmax(x, valid, temperature)
    return probs.sort(dim=-1, descending=True).values


def uld_loss(
    student_logprobs: Tensor,
    teacher_logprobs: Tensor,
    mask: Tensor,
    temperature: float = 1.0,
    zscore: bool = True,
    weights: Tensor | None = None,
    denominator: Tensor | float | None = None,
) -> Tensor:
    """Mean over masked positions of Σ_i |sort↓(p_S)_i - sort↓(p_T)_i| on the top-k probability vectors.

    student_logprobs: `[B,T,kS]` student top-k log-probs. teacher_logprobs: `[B,T,kT]` teacher top-k log-probs;
    non-finite entries (-inf/NaN padding) are left out of the z-score and the softmax (probability 0).
    kS and kT may differ: the shorter vector is padded with zero probabilities after sorting.
    mask: `[B,T]` bool. weights: optional `[B]` per-sequence multiplier. denominator: replaces the count of
    :func:`uld_positions`. Returns a scalar (0 if nothing masked in).
    """
    p_s = topk_distribution(student_logprobs, valid_entries(student_logprobs, mask), temperature, zscore)
    p_t = topk_distribution(teacher_logprobs, valid_entries(teacher_logprobs, mask), temperature, zscore)
    k = max(p_s.shape[-1], p_t.shape[-1])
    p_s = F.pad(p_s, (0, k - p_s.shape[-1]))
    p_t = F.pad(p_t, (0, k - p_t.shape[-1]))
    per_position = (p_s - p_t).abs().sum(-1)
    return position_mean(per_position, uld_positions(teacher_logprobs, mask), weights, denominator)


def uld_positions(teacher_logprobs: Tensor, mask: Tensor) -> Tensor:
    """`[B,T]` positions ULD averages over: in `mask` with at least one finite teacher value (a position without
    one would compare against an all-zero vector)."""
    return mask & torch.isfinite(teacher_logprobs).any(-1)
