"""The per-worker training loop run by Ray Train's TorchTrainer (DDP: gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.losses.chunked_head import HeadOutputs, chunked_head
from pipeline.losses.objective import TeacherInputs, concat_teacher_ids, fusion_loss
from pipeline.train import checkpoint
from pipeline.train.data import FusionData, collate


class Student(torch.nn.Module):
    """The pivot as DDP sees it: base model + chunked LM head, returning only what the losses read."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, targets, positions, gather_ids, k: int, chunk: int):
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        head = self.lm.get_output_embeddings()
        out = chunked_head(hidden, head.weight, targets, k, chunk, bias=head.bias, gather_ids=gather_ids,
                           positions=positions)
        return out.target_logprobs, out.topk_logprobs, out.topk_ids, out.gathered_logprobs


def lr_lambda(warmup: int, total: int, schedule: str):
    """Linear warm-up, then cosine to 10 % or constant."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def train_loop(config: dict) -> None:
    """Train from config = {cfg: TrainConfig dict, run_dir, resume_path, fingerprint, describe}."""
    import ray.train
    import ray.train.torch
    from transformers import AutoModelForCausalLM

    from pipeline.capture.model import resolve_model_path
    from pipeline.train.config import TrainConfig

    cfg = TrainConfig.from_dict(config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads or max(1, (os.cpu_count() or 1) // ctx.get_local_world_size()))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = ray.train.torch.get_device()
    lm = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.pivot_model), dtype=torch.float32)
    student = Student(lm)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data = FusionData(cfg.pivot_shards, [s.shards for s in cfg.sources])
    names = [s.name or Path(s.shards).name for s in cfg.sources]
    spe = data.steps_per_epoch(cfg.batch_size, world, cfg.seed, cfg.epochs)
    total = min(cfg.epochs * spe, cfg.max_steps or cfg.epochs * spe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, total, cfg.schedule))
    step = 0
    restored = ray.train.get_checkpoint()
    if restored:
        with restored.as_directory() as d:
            step = checkpoint.load(d, rank, student, optimizer, scheduler)["step"]
    elif config.get("resume_path"):
        step = checkpoint.load(config["resume_path"], rank, student, optimizer, scheduler)["step"]
    model = ray.train.torch.prepare_model(student)  # DDP when world > 1; moves to the device
    metrics_path = Path(config["run_dir"]) / "metrics.jsonl"
    if rank == 0:
        _truncate_metrics(metrics_path, step)
    use_mapped = cfg.loss.gld_space == "vocab" or cfg.loss.lambda_kl > 0
    pad_id = lm.config.pad_token_id if lm.config.pad_token_id is not None else 0
    t_last, tokens_since = time.perf_counter(), 0
    for epoch in range(step // spe, cfg.epochs):
        in_epoch = step - epoch * spe
        for rows in data.batches(cfg.seed, epoch, rank, world, cfg.batch_size, in_epoch, use_mapped,
                                 cfg.shuffle_shards):
            if in_epoch >= spe or step >= total:
                break
            b = collate(rows, cfg.nan_policy, pad_id)
            teachers = [TeacherInputs(t["topk_logprobs"].to(device), t["topk_ids"].to(device), t["mask"].to(device),
                                      weight=s.weight, name=n, target_logprobs=t["target_logprobs"].to(device))
                        for t, s, n in zip(b.teachers, cfg.sources, names)]
            gather = concat_teacher_ids(teachers) if cfg.loss.lambda_kl > 0 and teachers else None
            outs = model(b.input_ids.to(device), b.attention_mask.to(device), b.targets.to(device),
                         b.mask.to(device), gather, cfg.loss.k, cfg.head_chunk)
            loss, terms = fusion_loss(HeadOutputs(*outs), teachers, b.mask.to(device), cfg.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step, in_epoch = step + 1, in_epoch + 1
            tokens_since += b.tokens * world
            now = time.perf_counter()
            terms |= {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                      "tokens_per_s": tokens_since / max(now - t_last, 1e-9), "skipped_bad": b.skipped_bad}
            t_last, tokens_since = now, 0
            if rank == 0:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(terms) + "\n")
            if step % cfg.checkpoint_every == 0 or step == total:
                state = {"step": step, "epoch": epoch, "step_in_epoch": in_epoch, "fingerprint": config["fingerprint"],
                         "describe": config["describe"], "done": step == total}
                _report(rank, student, optimizer, scheduler, state, terms)
        if step >= total:
            break
    if rank == 0:
        _save_model(lm, cfg, Path(config["run_dir"]) / "model")


def _report(rank, student, optimizer, scheduler, state, terms) -> None:
    import ray.train

    with tempfile.TemporaryDirectory() as d:
        checkpoint.save(d, rank, student, optimizer, scheduler, state)
        ray.train.report({k: v for k, v in terms.items() if isinstance(v, (int, float))},
                         checkpoint=ray.train.Checkpoint.from_directory(d),
                         checkpoint_dir_name=f"checkpoint-{state['step']:07d}")


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics of steps up to the resumed one, so a resumed run never duplicates lines."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


def _save_model(lm, cfg, out: Path) -> None:
    import shutil

    from pipeline.capture.model import load_tokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    lm.save_pretrained(tmp)
    load_tokenizer(cfg.pivot_model).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
