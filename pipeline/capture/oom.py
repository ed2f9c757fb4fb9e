"""One micro-batch that runs out of accelerator memory is retried once at half the token budget, then reported.

A long-context teacher near the edge of its GPU's memory can fail on the one micro-batch that happens to be the
largest of a shard. Dying there with a bare CUDA traceback loses the shard's work and says nothing about which samples
or setting to change, so the forward callable is wrapped here: plain Python over a callable, testable on CPU.
"""

from __future__ import annotations

import gc
from typing import Callable, Sequence, TypeVar

import torch

from pipeline.errors import CaptureError
from pipeline.modeling.batching import token_budget_batches

R = TypeVar("R")


def release_memory() -> None:
    """Drop what the failed attempt left (its frames held the tensors) and hand cached blocks back to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def with_oom_retry(forward: Callable[[list[int]], R], group: list[int], lengths: Sequence[int], budget: int,
                   names: Sequence[str] | None = None) -> list[tuple[list[int], R]]:
    """``[(rows, forward(rows))]`` for ``group``; on ``torch.OutOfMemoryError`` the group is re-cut at
    ``budget // 2`` tokens and each part run once more. A part that fails again raises CaptureError naming its
    samples (``names[i]``, else the row index), their token count and the budgets tried."""
    try:
        return [(group, forward(group))]
    except torch.OutOfMemoryError:
        pass  # leave the except block first: the traceback pins the failed attempt's tensors
    release_memory()
    half = max(budget // 2, 1)
    out: list[tuple[list[int], R]] = []
    for sub in token_budget_batches([lengths[i] for i in group], half):
        part = [group[j] for j in sub]
        try:
            out.append((part, forward(part)))
            continue
        except torch.OutOfMemoryError as e:
            reason = str(e).splitlines()[0][:200]
        release_memory()
        who = [names[i] if names is not None else str(i) for i in part]
        raise CaptureError(
            f"out of accelerator memory on samples {who} ({sum(lengths[i] for i in part)} tokens) at "
            f"token_budget={budget} and again at {half}: lower token_budget or head_chunk, shorten max_length, or "
            f"spread the model over more GPUs (gpus_per_actor); {reason}")
    return out
