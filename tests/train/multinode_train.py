"""Capture → align → train on a 3-node local Ray cluster with every artifact on the S3 test server (run by
test_multinode.py in its own process: a cluster cannot share a process with the test session's Ray).

    python tests/train/multinode_train.py INPUT_JSONL S3_URL OUT_JSON

The input records are uploaded to S3_URL/input.jsonl; capture writes the pivot's tokens and two sources' top-k to
S3_URL/shards, align writes S3_URL/shards/aligned, train writes its run folder to S3_URL/runs/multi with 2 workers on
different nodes (SPREAD). Nothing is read from a local folder of the driver. The AWS_* variables of the S3 test server
come from the environment, so every node's workers inherit them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

SOURCES = ("tiny-gpt2-bpe", "tiny-llama-sp")


def capture_and_align(input_jsonl: str, root: str) -> None:
    """The session fixture's capture → align (tests/conftest.py ``fusion_shards``), every path on the S3 server."""
    from pipeline.align.config import AlignConfig, SourceSpec
    from pipeline.align.job import run_align
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture
    from pipeline.io.fs import location

    (location(root) / "input.jsonl").put(Path(input_jsonl).read_bytes())
    for model, k in (("tiny-llama-pivot", 0), *((s, 6) for s in SOURCES)):
        run_capture(CaptureConfig.load(None, [f"input={root}/input.jsonl", f"output={root}/shards",
                                              f"model=tiny:{model}", f"k={k}", "shard_size=16", "progress=false"]))
    run_align(AlignConfig(pivot=f"{root}/shards/tiny-llama-pivot", pivot_model="tiny:tiny-llama-pivot",
                          output=f"{root}/shards", progress=False,
                          sources=[SourceSpec(shards=f"{root}/shards/{m}", model=f"tiny:{m}") for m in SOURCES]))


def main(input_jsonl: str, bucket_url: str, out_json: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.train.config import TrainConfig, TrainSource
    from pipeline.train.job import run_train

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        capture_and_align(input_jsonl, bucket_url)
        root = f"{bucket_url}/shards"
        cfg = TrainConfig(pivot_model="tiny:tiny-llama-pivot", pivot_shards=f"{root}/tiny-llama-pivot",
                          sources=[TrainSource(shards=f"{root}/aligned/{s}") for s in SOURCES],
                          output=f"{bucket_url}/runs", run_name="multi", num_workers=2, cpus_per_worker=1,
                          placement_strategy="SPREAD", max_steps=4, checkpoint_every=2, batch_size=2,
                          progress=False)
        cfg.validate()
        result = run_train(cfg)
        result |= {"cluster_nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]],
                   "seconds": round(time.perf_counter() - t0, 1)}
    finally:
        ray.shutdown()
        cluster.shutdown()
    Path(out_json).write_text(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(*sys.argv[1:4])
