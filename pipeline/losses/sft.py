"""SFT term: masked token cross-entropy from the log-probabilities of the target tokens."""

from __future__ import annotations

from torch import Tensor

from pipeline.losses._masked import position_mean


def sft_loss(target_logprobs: Tensor, mask: Tensor, weights: Tensor | None = None,
             denominator: Tensor | float | None = None) -> Tensor:
    """Mean of -log p(target) over masked positions.

    target_logprobs: `[B,T]` student log-prob of the target token (e.g. `HeadOutputs.target_logprobs`).
    mask: `[B,T]` bool, True where the position contributes (response tokens).
    weights: optional `[B]` per-sequence multiplier; the denominator stays the number of masked positions.
    denominator: replaces the count of masked positions (e.g. the global count of a training step).
    Returns a scalar; 0 with zero gradients when nothing is masked in.
    """
    return position_mean(-target_logprobs, mask, weights, denominator)
