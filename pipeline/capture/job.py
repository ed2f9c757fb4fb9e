"""The capture driver: plan shards, run the Ray Data pipeline for the missing ones, write, finalise the manifest."""

from __future__ import annotations

import hashlib
import json
import logging
import time

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.capture.config import CaptureConfig
from pipeline.capture.inputs import Sample, load_samples, plan_fingerprint
from pipeline.capture.prefetch import Prefetch, node_may_host_actors, weight_files
from pipeline.config import local_path
from pipeline.errors import ConfigError, ModelLoadError
from pipeline.io.atomic import write_text
from pipeline.io.fs import Location, check_bucket, is_url, location
from pipeline.io.lock import folder_lock
from pipeline.io.writer import ShardSetWriter, shard_file
from pipeline.ray_utils import unwrap_errors
from pipeline.trace import mark
from schemas import logit_shard
from schemas.manifest import Manifest, ShardPlan

log = logging.getLogger("logitfuse.capture")


def model_name(cfg: CaptureConfig) -> str:
    """Folder name of this model's shards."""
    if cfg.name:
        return cfg.name
    return cfg.model.removeprefix("tiny:").rstrip("/").split("/")[-1]


def _vocab_size(cfg: CaptureConfig, tok) -> int:
    from transformers import AutoConfig

    from pipeline.modeling.load import resolve_model_path

    try:
        mc = AutoConfig.from_pretrained(resolve_model_path(cfg.model), revision=cfg.revision,
                                        trust_remote_code=cfg.trust_remote_code)
    except Exception as e:
        raise ModelLoadError(f"cannot load the model config of {cfg.model!r}: {e}") from None
    return int(getattr(mc, "vocab_size", None) or len(tok))


def codec_version() -> int:
    """Blob layout version of the codec module (part of the run fingerprint)."""
    from pipeline.io.codec import VERSION

    return VERSION


def _codec(cfg: CaptureConfig, vocab: int) -> dict | None:
    if cfg.k == 0:
        return None
    from pipeline.io.codec import CodecSpec

    spec = CodecSpec(name=cfg.codec, k=cfg.k, vocab_size=vocab, step=cfg.quant_step)
    spec.validate()
    return {"name": spec.name, "k": spec.k, "vocab_size": spec.vocab_size, "step": spec.step,
            "zstd_level": spec.zstd_level}


def _plan_table(samples: list[Sample], plan: ShardPlan, shards: list[int]) -> pa.Table:
    idx = [i for s in shards for i in plan.samples(s)]
    return pa.table({
        "sample_index": pa.array(idx, pa.int64()),
        "sample_id": [samples[i].id for i in idx],
        "messages": [json.dumps(samples[i].messages, ensure_ascii=False) for i in idx],
    })


def output_folder(cfg: CaptureConfig) -> Location:
    """Where this model's shards go (a local folder or an object-store prefix)."""
    return location(cfg.output) / model_name(cfg)


def run_capture(cfg: CaptureConfig) -> Manifest:
    """Capture ``cfg.model`` over ``cfg.input``; resumes, and refuses a folder of another configuration or one
    another live capture is writing."""
    cfg.input, cfg.model = local_path(cfg.input), local_path(cfg.model)
    cfg.output = location(cfg.output).uri  # to be created: never a Hub id; a local one made absolute
    for spec in (cfg.input, cfg.output):  # one clear error for credentials, bucket or endpoint, before any work
        if is_url(spec) and not spec.startswith("hf://"):
            check_bucket(location(spec))
    t0 = time.time()
    mark("job.start")
    # the weights start into the page cache now: the actor's load, ~10 s of start-up away, then reads memory
    warm = start_prefetch(cfg)
    try:
        # Read (and check) the input before locking the output: a job with a missing or bad input fails without
        # ever holding the folder, so it cannot turn away a good job submitted next to it.
        samples = load_samples(cfg.input, cfg.limit)
        mark("job.samples_loaded")
        with folder_lock(output_folder(cfg), "capture", cfg.fingerprint(list(CaptureConfig.OUTPUT_KEYS))):
            return _capture(cfg, samples, t0, warm)
    finally:
        warm.stop()


def start_prefetch(cfg: CaptureConfig) -> Prefetch:
    """The weight prefetch (``pipeline/capture/prefetch.py``) when asked for and useful here; an optimisation,
    so a file it cannot stat or list is logged and the job goes on without it."""
    try:
        wanted = cfg.k > 0 and cfg.prefetch_weights and node_may_host_actors(cfg.ray_address, cfg.device,
                                                                               cfg.gpus_per_actor)
        return Prefetch(weight_files(cfg.model, cfg.revision) if wanted else [])
    except OSError as e:
        log.info("capture: weight prefetch not started: %s", e)
        return Prefetch([])


def _capture(cfg: CaptureConfig, samples: list[Sample], t0: float, warm: Prefetch) -> Manifest:
    # torch and transformers load here, not when the module is imported: `--help` and a bad config stay instant
    from pipeline.capture.fit import check_fit
    from pipeline.capture.model import resolve_device, resolve_dtype
    from pipeline.modeling.load import (check_vocab, load_tokenizer, model_fingerprint, template_fingerprint,
                                        tokenizer_fingerprint)

    tok = load_tokenizer(cfg.model, cfg.revision, cfg.trust_remote_code)
    mark("job.tokenizer_loaded")
    vocab = _vocab_size(cfg, tok)
    check_vocab(tok, vocab, cfg.model)
    if cfg.k > vocab:
        raise ConfigError(f"capture: k={cfg.k} is larger than the vocabulary of {cfg.model!r} ({vocab})")
    device = resolve_device(cfg.device)
    torch_dtype = resolve_dtype(cfg.dtype, device)
    check_fit(cfg, device, torch_dtype)  # before any actor loads a byte
    dtype = str(torch_dtype).removeprefix("torch.")
    codec = _codec(cfg, vocab)
    model_fp, model_fp_method = model_fingerprint(cfg.model, cfg.revision)
    fps = {"model": model_fp, "tokenizer": tokenizer_fingerprint(tok),
           "chat_template": template_fingerprint(tok), "plan": plan_fingerprint(samples)}
    versions = {"schema_version": logit_shard.VERSION, "codec_version": codec_version() if codec else None}
    describe = {k: getattr(cfg, k) for k in CaptureConfig.OUTPUT_KEYS} | fps | {"dtype": dtype} | versions
    fingerprint = hashlib.sha256(json.dumps([cfg.fingerprint(list(CaptureConfig.OUTPUT_KEYS)), fps, dtype,
                                             versions], sort_keys=True).encode()).hexdigest()[:16]
    mark("job.fingerprinted")
    name, out = model_name(cfg), output_folder(cfg)
    writer = ShardSetWriter(out, fingerprint, describe, overwrite=cfg.overwrite)
    plan = ShardPlan(len(samples), cfg.shard_size)
    missing = [i for i in range(plan.num_shards) if writer.complete(i) is None]
    extra = {"model": name, "model_fingerprint": fps["model"], "tokenizer_fingerprint": fps["tokenizer"],
             "k": str(cfg.k), "dtype": dtype}
    if codec:
        from pipeline.io.codec import CodecSpec

        extra |= CodecSpec(**codec).to_metadata()
    else:
        extra |= {"codec": "none"}
    schema = logit_shard.schema(extra)
    if missing:
        _run_pipeline(cfg, samples, plan, missing, writer, schema, codec, device, dtype)
    mark("job.pipeline_done")
    counts, fwd = _counts(out, plan.num_shards)
    stats = {"padding_fraction": fwd["pad_tokens"] / max(fwd["pad_tokens"] + fwd["real_tokens"], 1),
             "forward_seconds": round(fwd["forward_seconds"], 3), "seconds": round(time.time() - t0, 3),
             "shards_computed": len(missing)} | warm.stop()
    manifest = Manifest(kind="logits", shard_schema=logit_shard.NAME, shard_schema_version=logit_shard.VERSION,
                        name=name, config_fingerprint=fingerprint, shard_size=cfg.shard_size,
                        num_samples=len(samples), plan_fingerprint=fps["plan"], shards=[],
                        fingerprints=fps | {"model_method": model_fp_method}, codec=extra, counts=counts,
                        stats=stats, config=cfg.to_dict())
    manifest = writer.finalize(manifest)
    mark("job.end")
    return manifest


def _counts(out: Location, n_shards: int) -> tuple[dict[str, int], dict[str, float]]:
    """Status counts read from the shards, and forward statistics summed over every shard's stats file."""
    import pyarrow.parquet as pq

    counts = {"truncated": 0, "skipped": 0, "samples": 0}
    stats = {"pad_tokens": 0, "real_tokens": 0, "forward_seconds": 0.0}
    for i in range(n_shards):
        part = out / shard_file(i)
        status = pq.read_table(part.path, filesystem=part.fs, columns=["status"]).column("status")
        counts["truncated"] += pc.sum(pc.equal(status, "truncated")).as_py() or 0
        counts["skipped"] += pc.sum(pc.equal(status, "skipped")).as_py() or 0
        counts["samples"] += len(status)
        side = out / "_progress" / f"stats-{i:05d}.json"
        if side.exists():  # written before the shard; absent only for shards of an older logitfuse
            for k, v in json.loads(side.read_text()).items():
                stats[k] += v
    return counts, stats


def _run_pipeline(cfg, samples, plan, missing, writer, schema, codec, device, dtype) -> None:
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy
    from tqdm import tqdm

    from pipeline.capture.placement import actor_resources, check_cluster
    from pipeline.capture.stages import ForwardTopK, encode_batch, tokenize_batch
    from pipeline.ray_utils import ensure_ray, quiet_ray_data

    req = actor_resources(cfg.num_actors, cfg.gpus_per_actor, cfg.cpus_per_actor, device)
    mark("job.pipeline_start")
    ensure_ray(cfg.ray_address)
    check_cluster(req)
    quiet_ray_data(progress=False)
    mark("job.ray_ready")
    # One block per shard, processed whole by every stage: a shard's micro-batches (and so every float in it)
    # do not depend on which other shards this run computes, so a resumed run equals an uninterrupted one.
    # from_blocks keeps the blocks as given and reads their metadata here; from_arrow would run a remote task per
    # table for it (a worker start before the pipeline can even be planned)
    ds = ray.data.from_blocks([_plan_table(samples, plan, [i]) for i in missing])
    # One tokenize task per actor at a time keeps every actor fed (a shard tokenizes far faster than it forwards),
    # and no more cold workers importing torch + transformers than that compete with the actors' start-up.
    ds = ds.map_batches(tokenize_batch, batch_size=None, batch_format="pyarrow", num_cpus=0.5,
                        compute=TaskPoolStrategy(size=cfg.num_actors), fn_kwargs=dict(
        model=cfg.model, max_length=cfg.max_length, overlength=cfg.overlength, chat_template=cfg.chat_template,
        append_eos=cfg.append_eos, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code))
    ds = ds.map_batches(ForwardTopK, batch_size=None, batch_format="pyarrow",
                        compute=ActorPoolStrategy(size=cfg.num_actors),
                        num_cpus=req.cpus_per_actor, num_gpus=req.gpus_per_actor,
                        fn_constructor_kwargs=dict(model=cfg.model, device=device, dtype=dtype, k=cfg.k,
                                                   token_budget=cfg.token_budget, head_chunk=cfg.head_chunk,
                                                   torch_threads=cfg.torch_threads, options=cfg.load_options()))
    ds = ds.map_batches(encode_batch, batch_size=None, batch_format="pyarrow", num_cpus=0.5,
                        fn_kwargs=dict(codec=codec))
    pending: list[pa.Table] = []
    queue = list(missing)
    want = plan.rows(queue[0])
    have = 0
    bar = tqdm(total=len(missing), desc=f"capture {writer.folder.name}", unit="shard", disable=not cfg.progress)
    mark("job.plan_built")
    # prefetch_batches=0: with Ray Data's default of 1 the iterator handed over a shard only once the next one was
    # encoded (trace: ~5 s later at 300 samples), so every shard was written, counted and safe from a kill one shard
    # late; now 0.2 s after its encode ends. The pipeline upstream runs on regardless.
    for batch in unwrap_errors(ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0)):
        mark("job.batch_received")
        while batch.num_rows:
            take = min(want - have, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch, have = batch.slice(take), have + take
            if have == want:
                table = pa.concat_tables(pending)
                # one Ray Data block is one shard, so the actor's counters in it are this shard's own
                shard_stats = {k: pc.sum(table.column(k)).as_py() or 0
                               for k in ("pad_tokens", "real_tokens", "forward_seconds")}
                table = table.select(schema.names).cast(schema)
                # stats first: the shard's sidecar (written last by write_shard) is what marks it complete
                write_text(writer.folder / "_progress" / f"stats-{queue[0]:05d}.json", json.dumps(shard_stats))
                writer.write_shard(queue[0], table, tokens=pc.sum(table.column("n_positions")).as_py() or 0)
                bar.update(1)
                queue.pop(0)
                pending, have = [], 0
                want = plan.rows(queue[0]) if queue else 0
    bar.close()
