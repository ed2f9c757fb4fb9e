"""KL baseline (FuseLLM style): forward KL(T‖S) on the teacher's top-k ids mapped into the pivot vocab."""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.losses._masked import masked_log_softmax, position_mean, valid_entries


def kl_loss(
    student_gathered_logprobs: Tensor,
    teacher_logprobs: Tensor,
    teacher_ids: Tensor,
    mask: Tensor,
    temperature: float = 1.0,
    weights: Tensor | None = None,
    denominator: Tensor | float | None = None,
) -> Tensor:
    """Mean over positions of Σ_j q_j (log q_j − log p_j) on the teacher's mapped top-k.

    student_gathered_logprobs: `[B,T,k]` student log-probs at `teacher_ids` (`HeadOutputs.gathered_logprobs`).
    teacher_logprobs: `[B,T,k]` teacher top-k log-probs; teacher_ids: `[B,T,k]` pivot ids, -1 = padding/unmapped.
    Both sides are renormalised (log_softmax at temperature τ) over the valid entries (id >= 0, finite teacher
    value), so the two distributions share one support. mask: `[B,T]` bool. weights: optional `[B]`.
    The mean runs over :func:`kl_positions` (denominator: replaces their count). Returns a scalar (0 if none).
    """
    valid = valid_entries(teacher_logprobs, mask, teacher_ids) & torch.isfinite(student_gathered_logprobs)
    log_q = masked_log_softmax(teacher_logprobs, valid, temperature)
    log_p = masked_log_softmax(student_gathered_logprobs, valid, temperature)
    q = torch.where(valid, log_q.exp(), 0.0)
    per_position = (q * (log_q - log_p)).sum(-1)
    return position_mean(per_position, kl_positions(teacher_logprobs, teacher_ids, mask), weights, denominator)


def kl_positions(teacher_logprobs: Tensor, teacher_ids: Tensor, mask: Tensor) -> Tensor:
    """`[B,T]` positions KL averages over: in `mask` with at least one mapped, finite teacher entry (the student's
    log-probs at mapped ids are finite)."""
    return valid_entries(teacher_logprobs, mask, teacher_ids).any(-1)
