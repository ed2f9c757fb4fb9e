"""Train on a 3-node local Ray cluster with every artifact on the S3 test server (run by test_multinode.py in its
own process: a cluster cannot share a process with the test session's Ray).

    python tests/train/multinode_train.py SHARDS_DIR S3_URL OUT_JSON

SHARDS_DIR holds the session's local fusion shards (tiny-llama-pivot/, aligned/<source>/). They are uploaded to
S3_URL/shards and read from there when ``ShardSet`` reads object stores; before that (``ShardSet.open`` missing),
from SHARDS_DIR, which every node of this one-machine cluster sees. The run folder is S3_URL/runs/multi. The AWS_*
variables of the S3 test server come from the environment, so every node's workers inherit them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs

SOURCES = ("tiny-gpt2-bpe", "tiny-llama-sp")


def upload_shards(local: Path, dest) -> str:
    """The shard folders as objects under ``dest``; returns its URL."""
    for rel in ["tiny-llama-pivot", *(f"aligned/{s}" for s in SOURCES)]:
        pafs.copy_files(str(local / rel), f"{dest.path}/{rel}", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=dest.fs)
    return dest.url


def main(shards_dir: str, bucket_url: str, out_json: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.io.fs import location
    from pipeline.io.reader import ShardSet
    from pipeline.train.config import TrainConfig, TrainSource
    from pipeline.train.job import run_train

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        shards_on_s3 = hasattr(ShardSet, "open")  # the reader's object-store support (issue #13)
        root = upload_shards(Path(shards_dir), location(bucket_url) / "shards") if shards_on_s3 else shards_dir
        cfg = TrainConfig(pivot_model="tiny:tiny-llama-pivot", pivot_shards=f"{root}/tiny-llama-pivot",
                          sources=[TrainSource(shards=f"{root}/aligned/{s}") for s in SOURCES],
                          output=f"{bucket_url}/runs", run_name="multi", num_workers=2, cpus_per_worker=1,
                          placement_strategy="SPREAD", max_steps=4, checkpoint_every=2, batch_size=2,
                          progress=False)
        cfg.validate()
        result = run_train(cfg)
        result |= {"cluster_nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]], "shards_on_s3": shards_on_s3,
                   "seconds": round(time.perf_counter() - t0, 1)}
    finally:
        ray.shutdown()
        cluster.shutdown()
    Path(out_json).write_text(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(*sys.argv[1:4])
