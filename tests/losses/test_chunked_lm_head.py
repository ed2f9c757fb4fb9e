"""Chunked LM head equals the dense head (values and grads) and passes gradcheck."""

import pytest
import torch

from pipeline.losses import chunked_head, dense_head
from pipeline.modeling.logit_transform import LogitTransform


def _inputs(b=2, t=5, h=8, v=40, k2=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, h, generator=g, dtype=dtype)
    weight = torch.randn(v, h, generator=g, dtype=dtype) * 0.5
    bias = torch.randn(v, generator=g, dtype=dtype) * 0.1
    targets = torch.randint(0, v, (b, t), generator=g)
    targets[0, 0] = -100
    gather = torch.randint(0, v, (b, t, k2), generator=g)
    gather[1, 2, 0] = -1
    return hidden, weight, bias, targets, gather


def _objective(out, seed=1):
    """A random linear combination of every differentiable output, so all gradient paths are exercised."""
    g = torch.Generator().manual_seed(seed)
    gathered = torch.where(torch.isfinite(out.gathered_logprobs), out.gathered_logprobs, 0.0)
    parts = (out.target_logprobs, out.topk_logprobs, gathered)
    return sum((p * torch.randn(p.shape, generator=g, dtype=p.dtype)).sum() for p in parts)


def _grads(fn, hidden, weight, bias):
    leaves = [x.detach().clone().requires_grad_(True) for x in (hidden, weight, bias)]
    out = fn(*leaves)
    _objective(out).backward()
    return out, [x.grad for x in leaves]


@pytest.mark.parametrize("chunk", [1, 3, 4, 10, 1000])
def test_chunked_equals_dense(chunk):
    hidden, weight, bias, targets, gather = _inputs()
    k = 4
    want, want_g = _grads(lambda h, w, b: dense_head(h, w, targets, k, b, gather), hidden, weight, bias)
    got, got_g = _grads(
        lambda h, w, b: chunked_head(h, w, targets, k, chunk, b, gather), hidden, weight, bias
    )
    torch.testing.assert_close(got.target_logprobs, want.target_logprobs)
    torch.testing.assert_close(got.topk_logprobs, want.topk_logprobs)
    assert torch.equal(got.topk_ids, want.topk_ids)
    torch.testing.assert_close(got.gathered_logprobs, want.gathered_logprobs)
    assert got.target_logprobs[0, 0] == 0 and got.gathered_logprobs[1, 2, 0] == -torch.inf
    for a, b in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gradcheck_float64():
    hidden, weight, bias, targets, gather = _inputs(b=2, t=3, h=4, v=11, k2=2, dtype=torch.float64)
    targets[0, 1] = -100
    gather[0, 0, 1] = -1

    def fn(h, w, b):
        out = chunked_head(h, w, targets, 3, 2, b, gather)
        gathered = torch.where(torch.isfinite(out.gathered_logprobs), out.gathered_logprobs, 0.0)
        return out.target_logprobs, out.topk_logprobs, gathered

    leaves = [x.requires_grad_(True) for x in (hidden, weight, bias)]
    torch.autograd.gradcheck(fn, leaves)


def test_positions_skip_rows_and_keep_grads_exact():
    hidden, weight, _, targets, gather = _inputs()
    positions = torch.rand(targets.shape, generator=torch.Generator().manual_seed(5)) > 0.4
    positions[0, 1] = True
    k = 3
    full, full_g = _grads(lambda h, w, b: dense_head(h, w, targets, k, None, gather), hidden, weight, weight[:, 0])
    h = hidden.clone().requires_grad_(True)
    out = chunked_head(h, weight, targets, k, 2, None, gather, positions)
    assert (out.topk_ids[~positions] == -1).all() and (out.target_logprobs[~positions] == 0).all()
    torch.testing.assert_close(out.topk_logprobs[positions], full.topk_logprobs[positions])
    torch.testing.assert_close(out.target_logprobs[positions], full.target_logprobs[positions])
    out.topk_logprobs[positions].sum().backward()
    assert (h.grad[~positions] == 0).all() and h.grad[positions].abs().sum() > 0


def test_no_positions_gives_zero_grads():
    hidden, weight, _, targets, _ = _inputs()
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    out = chunked_head(h, w, targets, 3, 4, positions=torch.zeros_like(targets, dtype=torch.bool))
    out.target_logprobs.sum().backward()
    assert (h.grad == 0).all() and (w.grad == 0).all()


def test_bfloat16_head_matches_dense_and_keeps_dtypes():
    hidden, weight, bias, targets, gather = _inputs(dtype=torch.bfloat16)
    want, want_g = _grads(lambda h, w, b: dense_head(h, w, targets, 4, b, gather), hidden, weight, bias)
    got, got_g = _grads(lambda h, w, b: chunked_head(h, w, targets, 4, 3, b, gather), hidden, weight, bias)
    assert got.topk_logprobs.dtype == torch.float32
    torch.testing.assert_close(got.topk_logprobs, want.topk_logprobs)
    for a, b in zip(got_g, want_g, strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("transform", [LogitTransform(scale=0.25, softcap=3.0), LogitTransform(scale=1.0, softcap=2.0),
                                       LogitTransform(scale=4.0)])
def test_logit_transform_matches_autograd_reference(transform):
    # Gemma-2 softcap and Cohere/Granite scale: the hand-written backward must equal autograd through the transform.
    hidden, weight, bias, targets, gather = _inputs()
    hidden = hidden * 3  # logits large enough for the softcap to bend them
    want, want_g = _grads(lambda h, w, b: dense_head(h, w, targets, 4, b, gather, transform=transform),
                          hidden, weight, bias)
    got, got_g = _grads(lambda h, w, b: chunked_head(h, w, targets, 4, 3, b, gather, transform=transform),
                        hidden, weight, bias)
    plain = chunked_head(hidden, weight, targets, 4, 3, bias, gather)
    assert not torch.allclose(plain.topk_logprobs, want.topk_logprobs)  # the transform changes the distribution
    torch.testing.assert_close(got.target_logprobs, want.target_logprobs)
    torch.testing.assert_close(got.topk_logprobs, want.topk_logprobs)
    torch.testing.assert_close(got.gathered_logprobs, want.gathered_logprobs)
    for a, b in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_logit_transform_gradcheck_float64():
    hidden, weight, bias, targets, gather = _inputs(b=2, t=3, h=4, v=11, k2=2, dtype=torch.float64)
    transform = LogitTransform(scale=0.5, softcap=1.5)

    def fn(h, w, b):
        out = chunked_head(h, w, targets, 3, 2, b, gather, transform=transform)
        gathered = torch.where(torch.isfinite(out.gathered_logprobs), out.gathered_logprobs, 0.0)
        return out.target_logprobs, out.topk_logprobs, gathered

    torch.autograd.gradcheck(fn, [x.requires_grad_(True) for x in (hidden, weight, bias)])
