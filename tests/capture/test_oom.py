"""Out-of-memory on one micro-batch: retried once at half the token budget, then reported with the sample ids."""

import pytest
import torch

from pipeline.capture.oom import with_oom_retry
from pipeline.capture.topk import forward_topk
from pipeline.errors import CaptureError
from pipeline.tiny.models import ensure_tiny


def _oom_above(limit: int, lengths, calls: list):
    """A forward that raises the real torch.OutOfMemoryError when its rows hold more than ``limit`` padded tokens."""
    def forward(rows):
        calls.append(list(rows))
        tokens = len(rows) * max(lengths[i] for i in rows)
        if tokens > limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {tokens} tokens")
        return sum(lengths[i] for i in rows)
    return forward


def test_retry_at_half_budget_covers_every_row_once():
    lengths = [10, 10, 11, 12, 10, 12, 11, 10]
    calls: list = []
    out = with_oom_retry(_oom_above(60, lengths, calls), list(range(8)), lengths, budget=100)
    assert calls[0] == list(range(8)) and len(calls) == 1 + len(out) > 2
    assert sorted(i for rows, _ in out for i in rows) == list(range(8))
    assert all(len(rows) * max(lengths[i] for i in rows) <= 50 for rows, _ in out)
    assert sum(r for _, r in out) == sum(lengths)


def test_no_oom_runs_once():
    calls: list = []
    assert with_oom_retry(_oom_above(10**6, [5, 6], calls), [0, 1], [5, 6], budget=100) == [([0, 1], 11)]
    assert calls == [[0, 1]]


def test_second_oom_names_the_samples_and_the_budgets():
    lengths = [40, 41, 30]  # at half the budget the shortest row runs first, alone, and fails again
    with pytest.raises(CaptureError, match=r"samples \['c'\] \(30 tokens\) at token_budget=100 and again at "
                                           r"50.*gpus_per_actor.*Tried to allocate"):
        with_oom_retry(_oom_above(20, lengths, []), [1, 0, 2], lengths, budget=100, names=["a", "b", "c"])


def test_other_errors_are_not_retried():
    def forward(rows):
        raise RuntimeError("shape mismatch")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with_oom_retry(forward, [0], [3], budget=10)


def test_forward_topk_after_an_oom_equals_an_unconstrained_run():
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ensure_tiny("tiny-gpt2-bpe")).eval()
    gen = torch.Generator().manual_seed(0)
    rows = [(torch.randint(0, 200, (n,), generator=gen).tolist(), 3) for n in (30, 31, 29, 33, 30, 32)]
    want, _, _ = forward_topk(model, rows, k=5, budget=250, chunk=16)
    seen: list[int] = []

    def fail_big_batches(_module, args, kwargs):  # the real model, made to fail like a full GPU on big batches
        seen.append(kwargs["input_ids"].numel())
        if kwargs["input_ids"].numel() > 130:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by a forward pre-hook)")

    handle = model.base_model.register_forward_pre_hook(fail_big_batches, with_kwargs=True)
    try:
        got, pad, real = forward_topk(model, rows, k=5, budget=250, chunk=16)
    finally:
        handle.remove()
    assert max(seen) > 130 and len(seen) > 1 and real == sum(len(r) for r, _ in rows)
    for (wi, wl), (gi, gl) in zip(want, got):
        assert torch.equal(wi, gi)
        torch.testing.assert_close(wl, gl, atol=1e-5, rtol=1e-5)
