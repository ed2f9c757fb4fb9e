"""Micro-batches by token budget from length buckets: little padding, bounded tokens per forward pass."""

from __future__ import annotations


def token_budget_batches(lengths: list[int], budget: int, bucket_ratio: float = 1.25) -> list[list[int]]:
    """Group indices into micro-batches from length buckets: ``max_len * rows <= budget`` (≥ 1 row each) and
    the longest row at most ``bucket_ratio`` × the shortest, so a batch is padded only a little."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (lengths[i] * (len(cur) + 1) > budget or lengths[i] > bucket_ratio * lengths[cur[0]]):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches
