"""Shared fixtures (tiny models built once per machine, one real local Ray per test session) and small helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded at run time
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def s3():
    """A real S3 API server on 127.0.0.1 (moto's standalone server, authentication on), started once per session;
    its endpoint and credentials are put in the environment the standard way (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID…),
    before Ray starts, so Ray's workers reach it too. ``s3.bucket(name)`` makes a bucket and returns its URL."""
    from pipeline.io.fs import clear_cache
    from tests import s3_server

    server = s3_server.start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    clear_cache()
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    clear_cache()
    server.stop()


@pytest.fixture(scope="session")
def ray_session(s3):
    """A real local Ray instance (not local_mode), started once; 2 CPUs so fractional actors leave room. It starts
    after the S3 test server, so its workers inherit the server's endpoint and credentials."""
    import ray

    if not ray.is_initialized():
        # address="local": a new instance even when another Ray cluster runs on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_records():
    """60 deterministic prompt/response records (chat, arithmetic, brackets)."""
    from pipeline.tiny.corpus import records

    return records(60, seed=0)


def write_jsonl(path, recs) -> str:
    """Write records as JSONL; returns the path as str."""
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")  # \u escapes: lone surrogates survive
    return str(path)


def copy_as_version_1(src, dst):
    """Copy the shard folder ``src`` to ``dst`` with every shard's schema metadata saying ``schema_version`` 1 (a
    capture of logit_shard v1); the copy's manifest entries get the new sizes and checksums. Returns that manifest,
    not yet written: the caller writes it (after any change of its own)."""
    import shutil

    import pyarrow.parquet as pq

    from pipeline.io.atomic import sha256_file
    from schemas.manifest import Manifest

    shutil.copytree(src, dst)
    m = Manifest.read(dst)
    for e in m.shards:
        table = pq.read_table(dst / e.file)
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"schema_version": b"1"}),
                       dst / e.file)
        e.sha256, e.bytes = sha256_file(dst / e.file), (dst / e.file).stat().st_size
    return m


def flip_byte(path, at: int | None = None, mask: int = 0x01) -> None:
    """Corrupt a file in place: XOR the byte at ``at`` (default: the middle) with ``mask``; the size stays."""
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2 if at is None else at] ^= mask
    Path(path).write_bytes(bytes(data))


@pytest.fixture(scope="session")
def tiny_jsonl(tmp_path_factory, tiny_records):
    """The tiny records as a JSONL file."""
    return write_jsonl(tmp_path_factory.mktemp("data") / "data.jsonl", tiny_records)


@pytest.fixture(scope="session")
def fusion_shards(ray_session, tiny_jsonl, tmp_path_factory):
    """Pivot tokens (k=0) and two sources (k=6) captured and aligned once per session: the train job's input."""
    from pipeline.align.config import AlignConfig, SourceSpec
    from pipeline.align.job import run_align
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture

    out = tmp_path_factory.mktemp("fusion")
    for model, k in (("tiny-llama-pivot", 0), ("tiny-gpt2-bpe", 6), ("tiny-llama-sp", 6)):
        run_capture(CaptureConfig.load(None, [f"input={tiny_jsonl}", f"output={out}", f"model=tiny:{model}",
                                              f"k={k}", "shard_size=16", "progress=false"]))
    run_align(AlignConfig(pivot=str(out / "tiny-llama-pivot"), pivot_model="tiny:tiny-llama-pivot",
                          output=str(out), progress=False,
                          sources=[SourceSpec(shards=str(out / m), model=f"tiny:{m}")
                                   for m in ("tiny-gpt2-bpe", "tiny-llama-sp")]))
    return out
