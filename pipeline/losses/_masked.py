"""Masked helpers shared by the top-k losses: safe softmax, z-score, reductions.

Every helper keeps masked-out entries finite in the forward pass and routes them through `torch.where`, so a masked
entry (even -inf or NaN in the input) receives an exact zero gradient and never poisons the batch with NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

ZSCORE_EPS = 1e-6  # keeps the z-score differentiable when the k values are all equal (std = 0)


def valid_entries(logprobs: Tensor, mask: Tensor, ids: Tensor | None = None) -> Tensor:
    """Entries that take part: `[B,T,k]` bool = position in `mask [B,T]`, finite value, and id >= 0 when ids given."""
    valid = torch.isfinite(logprobs) & mask.unsqueeze(-1)
    if ids is not None:
        valid = valid & (ids >= 0)
    return valid


def zscore(x: Tensor, valid: Tensor) -> Tensor:
    """Standardise `x [...,k]` over its valid entries (population std); invalid entries come back as 0."""
    x = torch.where(valid, x, 0.0)
    n = valid.sum(-1, keepdim=True).clamp(min=1)
    mean = x.sum(-1, keepdim=True) / n
    centred = torch.where(valid, x - mean, 0.0)
    var = centred.square().sum(-1, keepdim=True) / n
    return centred / torch.sqrt(var + ZSCORE_EPS)


def masked_log_softmax(x: Tensor, valid: Tensor, temperature: float = 1.0) -> Tensor:
    """log_softmax(x/τ) over the valid entries of the last dim `[...,k]`; invalid entries return 0 (finite)."""
    # A large finite fill instead of -inf: a row with no valid entry stays finite (it is zeroed below anyway).
    fill = torch.finfo(x.dtype).min
    z = torch.where(valid, x / temperature, fill)
    out = z - torch.logsumexp(z, dim=-1, keepdim=True)
    return torch.where(valid, out, 0.0)


def masked_softmax(x: Tensor, valid: Tensor, temperature: float = 1.0) -> Tensor:
    """softmax(x/τ) over the valid entries of the last dim `[...,k]`; invalid entries are exactly 0."""
    return torch.where(valid, masked_log_softmax(x, valid, temperature).exp(), 0.0)


def masked_exp(x: Tensor, valid: Tensor) -> Tensor:
    """exp(x) on valid entries (full-vocabulary probabilities from log-probs), 0 elsewhere."""
    return torch.where(valid, torch.where(valid, x, 0.0).exp(), 0.0)


def _denominator(count: Tensor, denominator: Tensor | float | None) -> Tensor | float:
    """The local count, or a given (e.g. global, all-reduced) one; at least 1 so an empty mean is 0."""
    if denominator is None:
        return count.clamp(min=1)
    return torch.as_tensor(denominator, dtype=torch.float32, device=count.device).clamp(min=1)


def position_mean(values: Tensor, mask: Tensor, weights: Tensor | None = None,
                  denominator: Tensor | float | None = None) -> Tensor:
    """Σ_{b,t} w_b·values[b,t] over `mask [B,T]` divided by the unweighted count of masked positions (0 if none).

    The denominator stays unweighted so that per-sample source weights (e.g. MinCE one-hots over sources) add up to
    a plain mean over all positions of the batch. ``denominator`` replaces the count (training divides each
    micro-batch's sum by the count over every micro-batch and rank of the step).
    """
    values = torch.where(mask, values, 0.0)
    if weights is not None:
        values = values * weights.to(values.dtype).unsqueeze(-1)
    return values.sum() / _denominator(mask.sum(), denominator)


def sequence_mean(values: Tensor, has_positions: Tensor, weights: Tensor | None = None,
                  denominator: Tensor | float | None = None) -> Tensor:
    """Mean of per-sequence `values [B]` over sequences with at least one position (`has_positions [B]`); 0 if none.
    ``denominator`` replaces the count of such sequences (see :func:`position_mean`)."""
    values = torch.where(has_positions, values, 0.0)
    if weights is not None:
        values = values * weights.to(values.dtype)
    return values.sum() / _denominator(has_positions.sum(), denominator)
