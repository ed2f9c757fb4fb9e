"""One optimizer step over micro-batches: global loss normalisation, gradient sync on the last micro-batch only.

Every term of the objective is a mean over tokens (or sequences, for GLD). A step's loss is that mean over all of
its micro-batches on all ranks: each micro-batch's sum is divided by the step's global count (``loss_counts``,
all-reduced before the first forward), so 4 micro-batches of B equal one batch of 4B, and a rank with many response
tokens weighs more than one with few, which a per-rank mean averaged by DDP/FSDP would not do. DDP and FSDP average
gradients over ranks, hence the loss is multiplied by the world size before the backward.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch
import torch.distributed as dist

from pipeline.losses.chunked_head import HeadOutputs
from pipeline.losses.objective import TeacherInputs, concat_teacher_ids, fusion_loss, loss_counts
from pipeline.train.data import Batch


def _masked_out(b: Batch) -> Batch:
    """A copy of ``b`` that contributes nothing: it keeps ranks with fewer micro-batches in step with the others
    (FSDP gathers parameters in every forward, a collective every rank must join)."""
    teachers = [t | {"mask": torch.zeros_like(t["mask"])} for t in b.teachers]
    return replace(b, targets=torch.full_like(b.targets, -100), mask=torch.zeros_like(b.mask), teachers=teachers,
                   tokens=0, skipped_bad=0)


def _teachers(b: Batch, sources, names, device) -> list[TeacherInputs]:
    return [TeacherInputs(t["topk_logprobs"].to(device), t["topk_ids"].to(device), t["mask"].to(device),
                          weight=s.weight, name=n, target_logprobs=t["target_logprobs"].to(device))
            for t, s, n in zip(b.teachers, sources, names)]


def _all_reduce(values: torch.Tensor, op) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values, op=op)
    return values


def agree(micro: list[Batch], keep_going: bool, teachers, loss_cfg) -> tuple[dict[str, torch.Tensor], int, bool]:
    """Global loss denominators, the most micro-batches any rank has, and whether every rank may go on."""
    counts: dict[str, torch.Tensor] = {}
    for b in micro:
        for key, n in loss_counts(teachers(b), b.mask, loss_cfg).items():
            counts[key] = counts.get(key, 0) + n.double().cpu()
    keys = sorted(counts)
    summed = _all_reduce(torch.tensor([float(counts[k]) for k in keys], dtype=torch.float64), dist.ReduceOp.SUM)
    most = _all_reduce(torch.tensor([len(micro), -int(keep_going)], dtype=torch.float64), dist.ReduceOp.MAX)
    return dict(zip(keys, summed)), int(most[0]), bool(most[1] < 0)


def train_step(model, student, optimizer, micro: list[Batch], cfg, sources, names, device, parallelism: str,
               world: int, keep_going: bool = True) -> dict[str, float] | None:
    """Forward/backward every micro-batch, then clip and step; returns the step's global loss terms, or None when
    some rank was told to stop (nothing is stepped then)."""
    def teachers(b):
        return _teachers(b, sources, names, "cpu")

    denominators, n_micro, go = agree(micro, keep_going, teachers, cfg.loss)
    if not go:
        return None
    micro = micro + [_masked_out(micro[0])] * (n_micro - len(micro))
    denominators = {k: v.to(device, torch.float32) for k, v in denominators.items()}
    terms: dict[str, float] = {}
    for i, b in enumerate(micro):
        last = i == len(micro) - 1
        if parallelism == "fsdp":
            student.set_requires_gradient_sync(last)
            sync = contextlib.nullcontext()
        else:
            sync = model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext()
        t = _teachers(b, sources, names, device)
        gather = concat_teacher_ids(t) if cfg.loss.lambda_kl > 0 and t else None
        mask = b.mask.to(device)
        with sync:
            outs = model(b.input_ids.to(device), b.attention_mask.to(device), b.targets.to(device), mask, gather,
                         cfg.loss.k, cfg.head_chunk)
            loss, parts = fusion_loss(HeadOutputs(*outs), t, mask, cfg.loss, denominators)
            (loss * world).backward()
        for key, value in parts.items():
            terms[key] = terms.get(key, 0.0) + value
    keys = sorted(terms)
    summed = _all_reduce(torch.tensor([terms[k] for k in keys], dtype=torch.float64), dist.ReduceOp.SUM)
    grad_norm = None
    if cfg.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    out = dict(zip(keys, summed.tolist()))
    if grad_norm is not None:
        out["grad_norm"] = float(grad_norm)
    return out
