"""The train driver: check shards and resume compatibility, run Ray Train's TorchTrainer, write plots."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.config import local_path
from pipeline.errors import TrainError
from pipeline.io.lock import folder_lock
from pipeline.train import checkpoint, driver
from pipeline.train.config import TrainConfig
from pipeline.train.data import FusionData


def _changed(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def run_train(cfg: TrainConfig) -> dict:
    """Train (or resume) run ``cfg.run_name``, holding the run folder's one-writer lock; final metrics and paths."""
    run_dir, fingerprint = Path(cfg.output).resolve() / cfg.run_name, cfg.fingerprint(list(TrainConfig.RESULT_KEYS))
    with folder_lock(run_dir, "train", fingerprint):
        return _run_train(cfg, run_dir)


def _run_train(cfg: TrainConfig, run_dir: Path) -> dict:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline.ray_utils import ensure_ray, original_error
    from pipeline.train.loop import train_loop
    from pipeline.train.plots import loss_curves

    cfg.pivot_model, cfg.pivot_shards = local_path(cfg.pivot_model), local_path(cfg.pivot_shards)
    cfg.resume_from = local_path(cfg.resume_from)
    for s in cfg.sources:
        s.shards = local_path(s.shards)
    data = FusionData(cfg.pivot_shards, [s.shards for s in cfg.sources])
    data.check()  # a missing or corrupted shard stops the job here, before any step
    if cfg.gpu_memory:  # the plan needs only the config: a run that cannot fit stops before any weight loads
        from pipeline.train.plan import check_fits

        check_fits(cfg, cfg.num_workers, cfg.gpu_memory)
    run_dir.mkdir(parents=True, exist_ok=True)
    d = cfg.to_dict()
    describe = {k: json.dumps(d[k], sort_keys=True) for k in TrainConfig.RESULT_KEYS} | {"shards": data.fingerprint()}
    fingerprint = hashlib.sha256(json.dumps(describe, sort_keys=True).encode()).hexdigest()[:16]
    resume = Path(cfg.resume_from) if cfg.resume_from else checkpoint.latest(run_dir / "ray")
    if resume is not None:
        if not (resume / checkpoint.STATE).exists():
            raise TrainError(f"resume_from={str(resume)!r} is not a complete checkpoint (no {checkpoint.STATE})")
        state = json.loads((resume / checkpoint.STATE).read_text())
        if state["fingerprint"] != fingerprint and not cfg.force:
            raise TrainError(f"{resume} was made with other shards or settings (changed: "
                             f"{', '.join(_changed(state['describe'], describe))}); use another run_name, or "
                             f"force=true to continue anyway")
        if state.get("done") and (run_dir / "model" / "config.json").exists():
            return _result(run_dir, state, loss_curves)
    ensure_ray(cfg.ray_address)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": d, "run_dir": str(run_dir), "resume_path": str(resume) if resume else None,
                           "fingerprint": fingerprint, "describe": describe, "driver": driver.describe()},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(name="ray", storage_path=str(run_dir),
                                       # +1: Ray drops the oldest when a new one is reported, before rank 0
                                       # marks the new one complete; keep_checkpoints complete ones survive a kill
                                       checkpoint_config=ray.train.CheckpointConfig(
                                           num_to_keep=cfg.keep_checkpoints + 1)),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
    )
    try:
        trainer.fit()
    except Exception as e:  # Ray Train wraps worker errors
        raise original_error(e) from None
    final = checkpoint.latest(run_dir / "ray")
    return _result(run_dir, json.loads((final / checkpoint.STATE).read_text()), loss_curves)


def _result(run_dir: Path, state: dict, loss_curves) -> dict:
    metrics = run_dir / "metrics.jsonl"
    last = {}
    if metrics.exists():
        lines = [line for line in metrics.read_text().splitlines() if line.strip()]
        last = json.loads(lines[-1]) if lines else {}
    png = loss_curves(metrics, run_dir / "loss_curves.png") if metrics.exists() else None
    return {"run_dir": str(run_dir), "model": str(run_dir / "model"), "step": state["step"], "last": last,
            "plot": str(png) if png else None}
