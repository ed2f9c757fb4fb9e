"""Several nodes: a 3-node local Ray cluster (``ray.cluster_utils.Cluster``, one CPU per node) runs capture → align →
train with every artifact on the S3 test server; train's 2 workers are placed on different nodes (SPREAD). The cluster runs in its own process
(tests/train/multinode_train.py): it cannot share a process with the session's Ray."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.io.fs import location
from pipeline.train.storage import COMPLETE

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


def test_capture_align_train_on_three_nodes_with_everything_on_s3(s3, tiny_jsonl, tmp_path):
    bucket = s3.bucket("multinode")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "PYTHONPATH": str(ROOT), "RAY_raylet_start_wait_time_s": "180"}  # 3 raylets start on a busy 2-core machine
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "train" / "multinode_train.py"), tiny_jsonl,
                           bucket, str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["step"] == 4
    nodes = result["nodes"]  # the Ray node id of each training rank, recorded by the workers themselves
    assert len(nodes) == 2 and len(set(nodes)) == 2 and set(nodes) <= set(result["cluster_nodes"])
    assert len(result["cluster_nodes"]) == 3
    run = location(bucket) / "runs" / "multi"
    for name in ("summary.json", "loss_curves.png", "metrics.jsonl", f"model/{COMPLETE}",
                 "ray/checkpoint-0000004/state.json", "ray/checkpoint-0000004/dcp/__0_0.distcp",
                 "ray/checkpoint-0000004/dcp/__1_0.distcp", "ray/checkpoint-0000004/rng-1.pt"):
        assert (run / name).exists(), name
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4
    shards = location(bucket) / "shards"
    for name in ("tiny-llama-pivot", "tiny-gpt2-bpe", "tiny-llama-sp", "aligned/tiny-gpt2-bpe", "aligned/tiny-llama-sp"):
        assert (shards / name / "manifest.json").exists(), name
    assert not list(tmp_path.glob("s3*")) and not (tmp_path / "runs").exists()  # nothing went to a local folder
