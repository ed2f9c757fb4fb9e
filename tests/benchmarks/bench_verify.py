"""What verified reads cost: sha256 + size check of a shard against its manifest, vs reading and decoding it.

    python tests/benchmarks/bench_verify.py                 # builds a synthetic logit shard set (see below)
    python tests/benchmarks/bench_verify.py --shards DIR    # any capture output folder (with manifest.json)

Every reader verifies each shard once per process (``pipeline/io/verified.py``); this prints, per shard and in
total, the time of that verification (a streamed sha256 of the file, page cache warm as it is right after a capture
or a first read), of reading the shard (``ShardSet.read`` minus its verification), and of reading plus decoding every
row's top-k (what align and inspect do), and the ratio. One JSON line per figure.

Synthetic set: 8 shards of 64 samples x 1024 response positions, k = 10, vocabulary 32000, lossless codec, top-k
log-probs drawn peaked (a softmax of N(0, 3) logits over 200 candidates, the top 10 kept), ids Zipf-distributed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.io.codec import CodecSpec, encode
from pipeline.io import verified
from pipeline.io.reader import ShardSet, decode_topk
from pipeline.io.writer import ShardSetWriter
from schemas import logit_shard
from schemas.manifest import Manifest

SHARDS, ROWS, POSITIONS, K, VOCAB = 8, 64, 1024, 10, 32000


def emit(figure: str, value, **extra) -> None:
    print(json.dumps({"bench": "verify", "figure": figure, "value": value, **extra}), flush=True)


def _row(rng, spec, index: int) -> dict:
    logits = rng.normal(0, 3, (POSITIONS, 200))
    lps = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    lps = -np.sort(-lps, 1)[:, :K].astype(np.float32)
    ids = np.minimum(rng.zipf(1.3, (POSITIONS, K * 3)), VOCAB - 1)
    ids = np.array([np.unique(r)[:K] if len(np.unique(r)) >= K else np.arange(K) for r in ids], np.int32)
    ids_blob, lp_blob = encode(spec, ids, lps)
    toks = rng.integers(0, VOCAB, POSITIONS + 16, dtype=np.int32)
    return {"sample_index": index, "sample_id": f"s{index:07d}", "status": "ok",
            "response_sha256": hashlib.sha256(str(index).encode()).hexdigest(), "input_ids": toks,
            "response_start": 16, "char_start": np.arange(POSITIONS, dtype=np.int32),
            "char_end": np.arange(1, POSITIONS + 1, dtype=np.int32), "n_positions": POSITIONS,
            "topk_ids": ids_blob, "topk_logprobs": lp_blob}


def build(folder: Path) -> Path:
    """A synthetic, complete logit shard set."""
    spec = CodecSpec(name="lossless", k=K, vocab_size=VOCAB)
    schema = logit_shard.schema(spec.to_metadata() | {"k": str(K), "model": "synthetic"})
    writer = ShardSetWriter(folder, "bench", {"bench": "verify"})
    rng = np.random.default_rng(0)
    for s in range(SHARDS):
        rows = [_row(rng, spec, s * ROWS + r) for r in range(ROWS)]
        table = pa.Table.from_pylist(rows, schema=schema)
        writer.write_shard(s, table, tokens=ROWS * POSITIONS)
    m = Manifest(kind="logits", shard_schema=logit_shard.NAME, shard_schema_version=logit_shard.VERSION,
                 name="synthetic", config_fingerprint="bench", shard_size=ROWS, num_samples=SHARDS * ROWS,
                 plan_fingerprint="bench", shards=[], fingerprints={}, codec=spec.to_metadata(), counts={}, stats={},
                 config={})
    writer.finalize(m)
    return folder


def _timed(fn, before=lambda: None, repeat: int = 3) -> float:
    """Best of ``repeat`` runs (the development machine is shared: the best run is the least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        before()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(folder: Path) -> None:
    shards = ShardSet(folder)
    codec = shards.codec() if shards.manifest.codec.get("codec") != "none" else None
    verify_s = read_s = decode_s = cached_s = 0.0
    size = 0
    for i, e in enumerate(shards.manifest.shards):
        path = shards.folder / e.file
        path.read_bytes()  # page cache warm for every measurement alike
        verify_s += _timed(lambda: shards.path(i), before=verified.forget)
        cached_s += _timed(lambda: shards.path(i))  # verified already in this process: a stat
        read_s += _timed(lambda: shards.read(i))
        if codec:
            decode_s += _timed(lambda: [decode_topk(codec, r, path) for r in shards.read(i).to_pylist()], repeat=1)
        size += e.bytes
    n = len(shards)
    emit("shards", n, bytes_per_shard=size // max(n, 1), folder=str(folder))
    emit("verify_ms_per_shard", round(1000 * verify_s / n, 2), mb_per_s=round(size / verify_s / 1e6, 1))
    emit("verify_cached_ms_per_shard", round(1000 * cached_s / n, 3))
    emit("read_ms_per_shard", round(1000 * read_s / n, 2))
    emit("verify_over_read", round(verify_s / read_s, 3))
    if codec:
        emit("read_decode_ms_per_shard", round(1000 * decode_s / n, 2))
        emit("verify_over_read_decode", round(verify_s / decode_s, 4))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", help="a shard folder (default: build a synthetic one in a temporary folder)")
    args = p.parse_args()
    if args.shards:
        measure(Path(args.shards))
        return
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        measure(build(Path(tmp) / "synthetic"))


if __name__ == "__main__":
    main()
