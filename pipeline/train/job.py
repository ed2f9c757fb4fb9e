"""The train driver: check shards and resume compatibility, run Ray Train's TorchTrainer, write plots and the summary.

``num_workers: 0`` is Ray Train's local mode (``ScalingConfig(num_workers=0)``): the loop runs in this process, no
Ray instance starts, and the loop stores its checkpoints itself in the same folders Ray Train would use, so a run
resumes in either mode.

The run folder ``<output>/<run_name>`` is a local folder or an object-store prefix (``pipeline.train.storage``):
Ray Train stores its checkpoints there (``RunConfig(storage_path, storage_filesystem)``), rank 0 writes the metrics
and the final model there, and the driver reads them back from there, never from a worker's disk.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tempfile
from pathlib import Path

from pipeline.config import local_path
from pipeline.errors import TrainError
from pipeline.io.atomic import write_text
from pipeline.io.fs import Location, check_bucket, location
from pipeline.io.lock import folder_lock
from pipeline.train import checkpoint, driver
from pipeline.train.config import TrainConfig
from pipeline.train.data import FusionData
from pipeline.train.storage import RAY_DIR, absolute_output, folder_complete, run_location, upload_file
from pipeline.trace import mark

SUMMARY = "summary.json"


def _changed(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def run_train(cfg: TrainConfig) -> dict:
    """Train (or resume) run ``cfg.run_name``, holding the run folder's one-writer lock; final metrics and paths."""
    mark("train.start")
    cfg.output = absolute_output(cfg.output)  # workers do not share the driver's working directory
    run, fingerprint = run_location(cfg), cfg.fingerprint(list(TrainConfig.RESULT_KEYS))
    check_bucket(run)
    with _lock(run, fingerprint):
        return _run_train(cfg, run)


def _lock(run: Location, fingerprint: str):
    """The run folder's one-writer lock (``pipeline.io.lock``: a lock file locally, a conditional write on object
    stores)."""
    return folder_lock(run, "train", fingerprint)


def _run_train(cfg: TrainConfig, run: Location) -> dict:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline.ray_utils import ensure_ray, original_error
    from pipeline.train.loop import train_loop

    cfg.pivot_model, cfg.pivot_shards = local_path(cfg.pivot_model), local_path(cfg.pivot_shards)
    cfg.resume_from = local_path(cfg.resume_from)
    for s in cfg.sources:
        s.shards = local_path(s.shards)
    data = FusionData(cfg.pivot_shards, [s.shards for s in cfg.sources])
    data.check()  # a missing or corrupted shard stops the job here, before any step
    if cfg.gpu_memory:  # the plan needs only the config: a run that cannot fit stops before any weight loads
        from pipeline.train.plan import check_fits

        check_fits(cfg, max(1, cfg.num_workers), cfg.gpu_memory)
    run.mkdir()
    d = cfg.to_dict()
    describe = {k: json.dumps(d[k], sort_keys=True) for k in TrainConfig.RESULT_KEYS} | {"shards": data.fingerprint()}
    fingerprint = hashlib.sha256(json.dumps(describe, sort_keys=True).encode()).hexdigest()[:16]
    resume = location(cfg.resume_from) if cfg.resume_from else checkpoint.latest(run / RAY_DIR)
    if resume is not None:
        if not (resume / checkpoint.STATE).exists():
            raise TrainError(f"resume_from={resume.url!r} is not a complete checkpoint (no {checkpoint.STATE})")
        state = json.loads((resume / checkpoint.STATE).read_text())
        if state["fingerprint"] != fingerprint and not cfg.force:
            raise TrainError(f"{resume} was made with other shards or settings (changed: "
                             f"{', '.join(_changed(state['describe'], describe))}); use another run_name, or "
                             f"force=true to continue anyway")
        if state.get("done") and folder_complete(run / "model"):
            return _result(run, state)
    mark("train.checked")
    local = cfg.num_workers == 0  # Ray Train's local mode: the loop runs here, no Ray instance is needed
    if not local:
        ensure_ray(cfg.ray_address)
        mark("train.ray_ready")
    storage = {"storage_path": str(run.as_path())} if run.local else \
        {"storage_path": run.path, "storage_filesystem": run.fs}  # workers rebuild it: no credential is pickled
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": d, "resume": _resume_spec(cfg, run, resume), "fingerprint": fingerprint,
                           "describe": describe, "driver": driver.describe(), "local": local},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={"CPU": cfg.cpus_per_worker},
                                               placement_strategy=cfg.placement_strategy),
        run_config=ray.train.RunConfig(name=RAY_DIR, **storage,
                                       # +1: Ray drops the oldest when a new one is reported, before rank 0
                                       # marks the new one complete; keep_checkpoints complete ones survive a kill
                                       checkpoint_config=ray.train.CheckpointConfig(
                                           num_to_keep=cfg.keep_checkpoints + 1)),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
    )
    try:
        mark("train.fit_start")
        trainer.fit()
    except Exception as e:  # Ray Train wraps worker errors
        raise original_error(e) from None
    mark("train.fit_done")
    final = checkpoint.latest(run / RAY_DIR)
    result = _result(run, json.loads((final / checkpoint.STATE).read_text()))
    mark("train.end")
    return result


def _resume_spec(cfg: TrainConfig, run: Location, resume: Location | None) -> dict:
    """How workers find the checkpoint to start from: relative to the run folder, or the user's resume_from."""
    if resume is None:
        return {}
    if resume.fs is run.fs and (resume.path + "/").startswith(run.path + "/"):
        return {"run": posixpath.relpath(resume.path, run.path)}
    return {"spec": cfg.resume_from}


def _result(run: Location, state: dict) -> dict:
    """The run's outcome, read from the run folder; the loss curves are drawn locally and stored there, and the
    outcome itself as ``summary.json``."""
    from pipeline.train.plots import loss_curves

    metrics, png = run / "metrics.jsonl", None
    text = metrics.read_text() if metrics.exists() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    last = json.loads(lines[-1]) if lines else {}
    if lines:
        with tempfile.TemporaryDirectory(prefix="logitfuse-plot-") as tmp:
            (Path(tmp) / "metrics.jsonl").write_text(text)
            drawn = loss_curves(Path(tmp) / "metrics.jsonl", Path(tmp) / "loss_curves.png")
            if drawn is not None:
                png = run / "loss_curves.png"
                upload_file(drawn, png)
    result = {"run_dir": run.url, "model": (run / "model").url, "step": state["step"], "last": last,
              "plot": png.url if png else None, "nodes": state.get("nodes")}
    write_text(run / SUMMARY, json.dumps(result, indent=1))
    return result
