"""Fusion training inputs for the benchmarks, made by the real capture and align jobs on the tiny models.

A set is ``shards × shard_size`` tiny-corpus records: the pivot captured with k=0 and two sources with top-k, then
aligned. Sets are cached under ``<LOGITFUSE_CACHE or ~/.cache/logitfuse>/bench_loader/`` keyed by their sizes, so a
rerun only verifies them; a set that fails verification (interrupted build, edited files) is built again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

PIVOT = "tiny-llama-pivot"
SOURCES = ("tiny-gpt2-bpe", "tiny-llama-sp")
CACHE_VERSION = 1  # bump when the recipe below changes, so old cached sets are not reused


def cache_dir() -> Path:
    root = os.environ.get("LOGITFUSE_CACHE") or os.path.expanduser("~/.cache/logitfuse")
    return Path(root) / "bench_loader"


def set_dir(shards: int, shard_size: int, k: int, root: Path | None = None) -> Path:
    return (root or cache_dir()) / f"v{CACHE_VERSION}-s{shards}x{shard_size}-k{k}"


def dirs(root: Path) -> tuple[str, list[str]]:
    """(pivot capture folder, aligned source folders) of a set."""
    return str(root / PIVOT), [str(root / "aligned" / s) for s in SOURCES]


def is_complete(root: Path) -> bool:
    """True when every shard set of ``root`` verifies and they share one shard plan (sizes and bytes, no hashing)."""
    from pipeline.errors import ShardError
    from pipeline.train.data import FusionData

    pivot, sources = dirs(root)
    if not all((Path(d) / "manifest.json").is_file() for d in [pivot, *sources]):
        return False
    try:
        FusionData(pivot, sources).check(checksums=False)
    except ShardError:
        return False
    return True


def _ray():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


def build(shards: int, shard_size: int, k: int = 10, root: Path | None = None) -> tuple[str, list[str]]:
    """The set's (pivot folder, aligned source folders), capturing and aligning it first when it is not cached.

    Starts a local Ray only when something has to be built; the caller shuts it down (``ray.shutdown()``).
    """
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = set_dir(shards, shard_size, k, root)
    if is_complete(out):
        return dirs(out)
    from pipeline.align.config import AlignConfig, SourceSpec
    from pipeline.align.job import run_align
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture
    from pipeline.tiny.corpus import records

    shutil.rmtree(out, ignore_errors=True)  # a half-built set: start clean rather than resume a stale config
    out.mkdir(parents=True)
    data = out / "records.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for r in records(shards * shard_size, seed=0):
            f.write(json.dumps(r) + "\n")
    _ray()
    for model, kk in ((PIVOT, 0), *((s, k) for s in SOURCES)):
        run_capture(CaptureConfig.load(None, [f"input={data}", f"output={out}", f"model=tiny:{model}", f"k={kk}",
                                              f"shard_size={shard_size}", "progress=false"]))
    run_align(AlignConfig(pivot=str(out / PIVOT), pivot_model=f"tiny:{PIVOT}", output=str(out), progress=False,
                          sources=[SourceSpec(shards=str(out / s), model=f"tiny:{s}") for s in SOURCES]))
    if not is_complete(out):
        raise RuntimeError(f"{out}: the shard sets do not verify right after capture + align")
    return dirs(out)
