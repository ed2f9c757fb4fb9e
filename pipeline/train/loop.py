"""The per-worker training loop run by Ray Train's TorchTrainer: FSDP2 or DDP (gloo on CPU, nccl on GPU), or the one
process of Ray Train's local mode (``num_workers: 0``)."""

from __future__ import annotations

import math
import os
import posixpath
import random
import socket
import tempfile
import time

import numpy as np
import torch

from pipeline.errors import TrainError
from pipeline.io.fs import Location, location
from pipeline.train import checkpoint, driver
from pipeline.train.data import FusionData
from pipeline.train.loader import TrainLoader
from pipeline.train.metrics import MetricsLog
from pipeline.train.model import DTYPES, Student, build_meta, load_pivot, materialize, save_final
from pipeline.train.parallel import parallelize
from pipeline.train.step import train_step
from pipeline.train.storage import RAY_DIR, run_location
from pipeline.trace import mark

mark("loop.imported")  # in a Ray Train worker: the loop's imports are done


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


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(f"[logitfuse train] {msg}", flush=True)


def build_model(cfg, model_path: str, rank: int, world: int, device: torch.device):
    """Meta-device pivot, sharded (FSDP2) or replicated (DDP), materialised on ``device`` and loaded from rank 0;
    returns (module to call, Student, parallelism)."""
    parallelism = cfg.resolved_parallelism()
    lm = build_meta(model_path, cfg.attn_implementation)
    student = Student(lm)
    parallelize(student, lm, parallelism=parallelism, precision=cfg.precision,
                activation_checkpointing=cfg.activation_checkpointing)
    materialize(student, device)
    load_pivot(student, lm, model_path, rank, DTYPES[cfg.pivot_dtype])
    model = student
    if parallelism == "ddp":
        if cfg.precision == "bf16":
            student.autocast = torch.bfloat16
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(student, device_ids=[device] if device.type == "cuda" else None)
    return model, student, parallelism


def train_loop(config: dict) -> None:
    """Train from config = {cfg: TrainConfig dict, resume, fingerprint, describe, driver, local}; the run folder and
    the checkpoint to resume from are resolved here from the config (a local path or an object-store URL), never
    taken from the driver's disk. In local mode the process gets a one-rank gloo group for the run (Ray Train sets
    one up for its workers), so DCP and the sharded state-dict calls run unchanged."""
    import torch.distributed as dist

    own_group = bool(config.get("local")) and not dist.is_initialized()
    if own_group:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        _train(config)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from pipeline.modeling.load import resolve_model_path
    from pipeline.train.config import TrainConfig

    mark("loop.start")

    cfg = TrainConfig.from_dict(config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads or max(1, (os.cpu_count() or 1) // ctx.get_local_world_size()))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    local = bool(config.get("local"))  # Ray Train's local mode: this process is the only worker, no Ray instance
    if local and world != 1:  # Ray Train's local mode joins a torchrun launch's group, which the loop does not drive
        raise TrainError(f"num_workers=0 (local mode) trains in one process, but this one is rank {rank} of {world} "
                         f"(launched by torchrun?): run it once without torchrun, or use num_workers={world} on Ray")
    device = _local_device(cfg) if local else ray.train.torch.get_device()
    nodes = _gather(f"local:{socket.gethostname()}" if local else ray.get_runtime_context().get_node_id(), world)
    model, student, parallelism = build_model(cfg, resolve_model_path(cfg.pivot_model), rank, world, device)
    mark("loop.model_built")
    _log(rank, f"{parallelism} on {world} worker(s), precision {cfg.precision}, activation checkpointing "
               f"{'on' if cfg.activation_checkpointing else 'off'}, {cfg.grad_accum_steps} micro-batch(es) of "
               f"{cfg.batch_size} per step" + (f", token budget {cfg.token_budget}" if cfg.token_budget else ""))
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  betas=tuple(cfg.adam_betas), fused=device.type == "cuda")
    lm = student.lm
    loader = TrainLoader(FusionData(cfg.pivot_shards, [s.shards for s in cfg.sources]), seed=cfg.seed,
                         epochs=cfg.epochs, rank=rank, world=world, batch_size=cfg.batch_size,
                         grad_accum_steps=cfg.grad_accum_steps, token_budget=cfg.token_budget,
                         max_length=cfg.max_length, window=cfg.shuffle_shards,
                         use_mapped=cfg.loss.gld_space == "vocab" or cfg.loss.lambda_kl > 0,
                         nan_policy=cfg.nan_policy,
                         pad_id=lm.config.pad_token_id if lm.config.pad_token_id is not None else 0)
    total = min(cfg.epochs * loader.steps_per_epoch, cfg.max_steps or cfg.epochs * loader.steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, total, cfg.schedule))
    step = 0
    run = run_location(cfg)
    resume = _resume_folder(config, run)
    if resume is not None:
        state = checkpoint.load(resume, rank, student, optimizer, scheduler)
        loader.load_state_dict(state["data"], force=cfg.force)
        step = state["step"]
        _log(rank, f"resumed from {resume} (world size {state['world']}) at step {step}: {loader.resume_note()}"
                   + ("" if state["world"] == world else "; RNG states re-seeded, workers read other shards"))
    _log(rank, f"run folder {run}; workers on nodes {nodes}")
    metrics = MetricsLog(run, step, cfg.report_to) if rank == 0 else None
    names = [s.name or posixpath.basename(s.shards.rstrip("/")) for s in cfg.sources]
    t_last, start_step = time.perf_counter(), step
    mark("loop.loader_ready")
    for batch in loader:
        if step >= total:
            break
        terms = train_step(model, student, optimizer, batch.micro, cfg, cfg.sources, names, device, parallelism,
                           world, keep_going=driver.alive(config.get("driver")))
        if terms is None:
            _log(rank, f"the driver is gone: stopping at step {step} without another checkpoint")
            return
        scheduler.step()
        step += 1
        if step == start_step + 1:
            mark("loop.first_step")  # of this process: a resumed run starts past step 0
        now = time.perf_counter()
        tokens = sum(b.tokens for b in batch.micro) * world
        terms |= {"step": step, "epoch": batch.epoch, "samples": batch.samples, "lr": scheduler.get_last_lr()[0],
                  "tokens_per_s": tokens / max(now - t_last, 1e-9), "padding": batch.padding,
                  "skipped_bad": sum(b.skipped_bad for b in batch.micro)}
        t_last = now
        if metrics is not None:
            metrics.write(terms)
        if step % cfg.checkpoint_every == 0 or step == total:
            state = {"step": step, "world": world, "parallelism": parallelism, "data": loader.state_dict(),
                     "fingerprint": config["fingerprint"], "describe": config["describe"], "done": step == total,
                     "nodes": nodes}
            if metrics is not None:
                metrics.sync()  # the metrics of every step up to the checkpoint are stored before it is complete
            mark("loop.checkpoint_start")
            if local:
                _store_local(run, cfg.keep_checkpoints, student, optimizer, scheduler, state)
            else:
                _report(rank, student, optimizer, scheduler, state, terms)
            mark("loop.checkpoint_end")
        if step >= total:
            break
    if metrics is not None:
        metrics.close()
    save_final(student, lm, rank, run / "model", cfg.pivot_model, cfg.max_shard_size)
    mark("loop.end")


def _gather(value, world: int) -> list:
    """``value`` of every rank, by rank."""
    import torch.distributed as dist

    if world == 1 or not dist.is_initialized():
        return [value]
    out = [None] * world
    dist.all_gather_object(out, value)
    return out


def _resume_folder(config: dict, run: Location) -> Location | None:
    """Ray Train's own latest checkpoint when it restarted the workers (if complete), else the driver's choice:
    a checkpoint of this run (named relative to the run folder) or the ``resume_from`` the user gave."""
    import ray.train

    restored = ray.train.get_checkpoint()
    if restored is not None and restored.filesystem.get_file_info(f"{restored.path}/{checkpoint.STATE}").size:
        return run / RAY_DIR / posixpath.basename(restored.path.rstrip("/"))
    resume = config.get("resume") or {}
    if "run" in resume:
        return run / resume["run"]
    return location(resume["spec"]) if "spec" in resume else None


def _local_device(cfg) -> torch.device:
    """The device of a local-mode run: the first visible GPU when asked for, else the CPU."""
    if cfg.use_gpu and not torch.cuda.is_available():
        raise TrainError("use_gpu=true, but torch sees no CUDA device in this process")
    return torch.device("cuda", torch.cuda.current_device()) if cfg.use_gpu else torch.device("cpu")


def _checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:07d}"


def _store_local(run: Location, keep: int, model, optimizer, scheduler, state: dict) -> None:
    """Local mode's checkpoint (Ray Train keeps a local-mode report in memory only): written where Ray Train would
    put it, ``state.json`` last, then every complete checkpoint but the newest ``keep`` removed."""
    import shutil

    from pipeline.train.storage import upload_folder

    folder = run / RAY_DIR / _checkpoint_name(state["step"])
    if folder.local:  # written beside its place, then renamed into it
        tmp = folder.as_path().with_name(f".tmp-{folder.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        checkpoint.save(tmp, 0, model, optimizer, scheduler)
        folder.rmtree()
        tmp.rename(folder.as_path())
    else:
        with tempfile.TemporaryDirectory() as d:
            checkpoint.save(d, 0, model, optimizer, scheduler)
            upload_folder(d, folder, complete=False)
    checkpoint.finish(folder, state)
    checkpoint.prune(run / RAY_DIR, keep)


def _report(rank, model, optimizer, scheduler, state, terms) -> None:
    import ray.train
    import torch.distributed as dist

    with tempfile.TemporaryDirectory() as d:
        checkpoint.save(d, rank, model, optimizer, scheduler)
        ray.train.report({k: v for k, v in terms.items() if isinstance(v, (int, float))},
                         checkpoint=ray.train.Checkpoint.from_directory(d),
                         checkpoint_dir_name=_checkpoint_name(state["step"]))
    if dist.is_initialized():
        dist.barrier()  # every rank's shards are in the merged folder before it is marked complete
    if rank == 0:
        checkpoint.finish(ray.train.get_checkpoint(), state)
