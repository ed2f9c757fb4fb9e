"""SIGKILL the capture driver part-way, rerun: only missing shards are computed and the result is identical."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.capture.config import CaptureConfig
from pipeline.capture.job import run_capture
from pipeline.errors import ShardError
from pipeline.io.reader import ShardSet

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_then_rerun_equals_uninterrupted(ray_session, tiny_jsonl, tmp_path):
    args = [f"input={tiny_jsonl}", "model=tiny:tiny-gpt2-bpe", "shard_size=1", "k=8", "progress=false"]
    clean = run_capture(CaptureConfig.load(None, args + [f"output={tmp_path / 'clean'}"]))

    out = tmp_path / "killed"
    progress = out / "tiny-gpt2-bpe" / "_progress"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.capture_logits", *args, f"output={out}"], cwd=ROOT,
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if progress.is_dir() and len(list(progress.glob("part-*.json"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the capture finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    done_before = len(list(progress.glob("part-*.json")))
    assert 2 <= done_before < len(clean.shards)
    with pytest.raises(ShardError, match="no manifest.json"):
        ShardSet(out / "tiny-gpt2-bpe")  # nothing half-written is visible

    resumed = run_capture(CaptureConfig.load(None, args + [f"output={out}"]))
    assert resumed.stats["shards_computed"] == len(clean.shards) - done_before
    assert [(s.file, s.rows, s.tokens, s.sha256) for s in resumed.shards] == \
           [(s.file, s.rows, s.tokens, s.sha256) for s in clean.shards]
    assert not list((out / "tiny-gpt2-bpe").glob(".tmp-*"))
    a, b = ShardSet(tmp_path / "clean" / "tiny-gpt2-bpe"), ShardSet(out / "tiny-gpt2-bpe")
    assert list(a.iter_rows()) == list(b.iter_rows())
