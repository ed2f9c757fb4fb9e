"""The pivot's LM head, target log-probs and student top-k computed in position chunks.

`[B,T,V]` logits are never held whole: the forward keeps, per chunk of positions, only the log-probs it needs
(target, top-k, teacher ids) and the log-sum-exp; the backward recomputes each chunk's logits and turns them into
the logit gradient in place. Peak extra memory is about two `[chunk,V]` fp32 buffers instead of several `[B·T,V]`.
The student's top-k is computed once per step here and shared by ULD, GLD and KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.errors import ConfigError
from pipeline.modeling.logit_transform import LogitTransform

IGNORE_INDEX = -100


@dataclass
class HeadOutputs:
    """What the losses need from the student, all differentiable except the ids.

    target_logprobs `[B,T]` (0 where the target is ignored or the position skipped); topk_logprobs `[B,T,k]` sorted
    descending and topk_ids `[B,T,k]`; gathered_logprobs `[B,T,k2]` at the requested ids or None. Padding and
    skipped positions carry -inf log-probs and id -1.
    """

    target_logprobs: Tensor
    topk_logprobs: Tensor
    topk_ids: Tensor
    gathered_logprobs: Tensor | None


def _chunk_logits(h: Tensor, weight: Tensor, bias: Tensor | None, acc: torch.dtype) -> Tensor:
    """Raw logits `[c,V]` (before the model's transform) in the accumulation dtype (fp32, or fp64 under gradcheck)."""
    logits = (h @ weight.T).to(acc)
    return logits if bias is None else logits + bias.to(acc)


class _ChunkedHead(torch.autograd.Function):
    """Rows `[N,H]` -> (target lp `[N]`, top-k lp `[N,k]`, top-k ids `[N,k]`, gathered lp `[N,k2]`)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, gather_ids, k, chunk_size, transform):
        acc = torch.promote_types(hidden.dtype, torch.float32)
        n = hidden.shape[0]
        target_lp = hidden.new_zeros(n, dtype=acc)
        topk_lp = hidden.new_empty(n, k, dtype=acc)
        topk_ids = torch.empty(n, k, dtype=torch.long, device=hidden.device)
        gathered = None if gather_ids is None else hidden.new_empty(gather_ids.shape, dtype=acc)
        lse = hidden.new_empty(n, dtype=acc)
        for s in range(0, n, chunk_size):
            e = min(s + chunk_size, n)
            logits = transform.apply(_chunk_logits(hidden[s:e], weight, bias, acc))
            lse[s:e] = torch.logsumexp(logits, dim=-1)
            tgt = targets[s:e]
            picked = logits.gather(1, tgt.clamp(min=0).unsqueeze(1)).squeeze(1) - lse[s:e]
            target_lp[s:e] = torch.where(tgt >= 0, picked, 0.0)
            values, ids = logits.topk(k, dim=-1)
            topk_lp[s:e] = values - lse[s:e, None]
            topk_ids[s:e] = ids
            if gather_ids is not None:
                gid = gather_ids[s:e]
                picked = logits.gather(1, gid.clamp(min=0)) - lse[s:e, None]
                gathered[s:e] = torch.where(gid >= 0, picked, -torch.inf)
        ctx.save_for_backward(hidden, weight, bias, targets, gather_ids, topk_ids, lse)
        ctx.chunk_size, ctx.transform = chunk_size, transform
        ctx.mark_non_differentiable(topk_ids)
        return target_lp, topk_lp, topk_ids, gathered

    @staticmethod
    def backward(ctx, g_target, g_topk, _g_ids, g_gathered):
        hidden, weight, bias, targets, gather_ids, topk_ids, lse = ctx.saved_tensors
        acc = lse.dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if need_b else None
        for s in range(0, hidden.shape[0], ctx.chunk_size):
            e = min(s + ctx.chunk_size, hidden.shape[0])
            tgt = targets[s:e]
            gt = torch.where(tgt >= 0, g_target[s:e], 0.0)
            gk = g_topk[s:e]
            # Each output is logit[j] - lse, so d/dlogits = onehot(j) - softmax: one shared softmax term per row.
            row_total = gt + gk.sum(-1)
            if gather_ids is not None:
                gid = gather_ids[s:e]
                gg = torch.where(gid >= 0, g_gathered[s:e], 0.0)
                row_total = row_total + gg.sum(-1)
            raw = _chunk_logits(hidden[s:e], weight, bias, acc)
            # in place: one [c,V] buffer (two when the model transforms its logits: the raw ones are needed below)
            dlogits = raw if ctx.transform.identity else ctx.transform.apply(raw)
            dlogits.sub_(lse[s:e, None]).exp_().mul_(-row_total[:, None])
            dlogits.scatter_add_(1, tgt.clamp(min=0).unsqueeze(1), gt.unsqueeze(1))
            dlogits.scatter_add_(1, topk_ids[s:e], gk)
            if gather_ids is not None:
                dlogits.scatter_add_(1, gid.clamp(min=0), gg)
            if not ctx.transform.identity:
                dlogits = ctx.transform.backward(raw, dlogits)
            if need_h:
                grad_h[s:e] = (dlogits.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_w:
                grad_w.addmm_(dlogits.T, hidden[s:e].to(acc))
            if need_b:
                grad_b += dlogits.sum(0)
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None, None


def chunked_head(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    k: int,
    chunk_size: int = 1024,
    bias: Tensor | None = None,
    gather_ids: Tensor | None = None,
    positions: Tensor | None = None,
    transform: LogitTransform | None = None,
) -> HeadOutputs:
    """LM head + log-softmax in chunks of `chunk_size` positions, returning only what the losses read.

    hidden: `[B,T,H]`; weight: `[V,H]` (lm_head.weight); bias: optional `[V]`; targets: `[B,T]` (-100 = ignore);
    gather_ids: optional `[B,T,k2]` teacher ids mapped into the pivot vocab (-1 = padding); positions: optional
    `[B,T]` bool, positions to compute at all (e.g. response positions), the others are skipped; transform: the
    model's logit transform (``logit_transform(config)``: softcap, scale), applied to each chunk's logits before the
    log-softmax and, in the backward, to their gradient.
    Differentiable w.r.t. hidden, weight and bias; backward recomputes each chunk's logits. Logits are formed in the
    weight's dtype and upcast to fp32 (fp64 inputs stay fp64) for log-softmax, top-k and gradients.
    """
    if chunk_size < 1 or k < 1:
        raise ConfigError(f"chunk_size and k must be >= 1, got chunk_size={chunk_size}, k={k}")
    batch, seq, width = hidden.shape
    flat_h = hidden.reshape(batch * seq, width)
    flat_targets = targets.reshape(batch * seq)
    flat_gather = None if gather_ids is None else gather_ids.reshape(batch * seq, -1)
    rows = None
    if positions is not None:
        rows = positions.reshape(-1).nonzero().squeeze(1)
        flat_h, flat_targets = flat_h[rows], flat_targets[rows]
        flat_gather = None if flat_gather is None else flat_gather[rows]
    target_lp, topk_lp, topk_ids, gathered = _ChunkedHead.apply(
        flat_h, weight, bias, flat_targets, flat_gather, k, chunk_size, transform or LogitTransform()
    )
    if rows is not None:
        n = batch * seq
        target_lp = target_lp.new_zeros(n).index_copy(0, rows, target_lp)
        topk_lp = topk_lp.new_full((n, k), -torch.inf).index_copy(0, rows, topk_lp)
        topk_ids = topk_ids.new_full((n, k), -1).index_copy(0, rows, topk_ids)
        if gathered is not None:
            gathered = gathered.new_full((n, gathered.shape[-1]), -torch.inf).index_copy(0, rows, gathered)
    return HeadOutputs(
        target_logprobs=target_lp.view(batch, seq),
        topk_logprobs=topk_lp.view(batch, seq, k),
        topk_ids=topk_ids.view(batch, seq, k),
        gathered_logprobs=None if gathered is None else gathered.view(batch, seq, -1),
    )


def dense_head(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    k: int,
    bias: Tensor | None = None,
    gather_ids: Tensor | None = None,
    transform: LogitTransform | None = None,
) -> HeadOutputs:
    """Unchunked reference of `chunked_head` (holds `[B,T,V]`, plain autograd): for tests, benchmarks, tiny models."""
    acc = torch.promote_types(hidden.dtype, torch.float32)
    logits = (hidden @ weight.T).to(acc)
    if bias is not None:
        logits = logits + bias.to(acc)
    if transform is not None:
        logits = transform.apply(logits)
    logprobs = torch.log_softmax(logits, dim=-1)
    picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    target_lp = torch.where(targets >= 0, picked, 0.0)
    topk_lp, topk_ids = logprobs.topk(k, dim=-1)
    gathered = None
    if gather_ids is not None:
        picked = logprobs.gather(-1, gather_ids.clamp(min=0))
        gathered = torch.where(gather_ids >= 0, picked, -torch.inf)
    return HeadOutputs(target_lp, topk_lp, topk_ids, gathered)
