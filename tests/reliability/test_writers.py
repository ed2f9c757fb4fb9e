"""One writer per output folder: a live holder refuses every other writer (overwrite or not), a dead one is taken
over, racing writers yield exactly one winner; stray and temporary files are ignored by readers and cleaned."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import LockError
from pipeline.io.lock import folder_lock, lock_path
from pipeline.io.reader import ShardSet, verify
from tests.reliability.conftest import copy_set

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom pipeline.io.lock import folder_lock\n"
        "with folder_lock(sys.argv[1], sys.argv[2], 'fp-holder'):\n    print('held', flush=True)\n    time.sleep(120)\n")


def hold(folder: Path, what: str = "capture") -> subprocess.Popen:
    """Another process holding ``folder``'s lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _capture_cfg(tiny_jsonl, out, *extra):
    from pipeline.capture.config import CaptureConfig

    return CaptureConfig.load(None, [f"input={tiny_jsonl}", f"output={out}", "model=tiny:tiny-gpt2-bpe", "k=6",
                                     "shard_size=16", "progress=false", *extra])


def _jobs(fusion_shards, tiny_jsonl, out: Path):
    """(folder a job writes, a call running that job) for capture, align, train and publish staging."""
    from pipeline.align.config import AlignConfig, SourceSpec
    from pipeline.align.job import run_align
    from pipeline.capture.job import run_capture
    from pipeline.publish.config import PublishConfig
    from pipeline.publish.job import run_publish
    from pipeline.train.config import TrainConfig
    from pipeline.train.job import run_train

    align = AlignConfig(pivot=str(fusion_shards / "tiny-llama-pivot"), pivot_model="tiny:tiny-llama-pivot",
                        output=str(out), progress=False, overwrite=True,
                        sources=[SourceSpec(shards=str(fusion_shards / "tiny-gpt2-bpe"), model="tiny:tiny-gpt2-bpe")])
    train = TrainConfig.from_dict({"pivot_model": "tiny:tiny-llama-pivot", "output": str(out / "runs"),
                                   "pivot_shards": str(fusion_shards / "tiny-llama-pivot"), "max_steps": 1,
                                   "progress": False, "sources": [], "force": True})
    return {
        "capture": (out / "tiny-gpt2-bpe", lambda: run_capture(_capture_cfg(tiny_jsonl, out, "overwrite=true"))),
        "align": (out / "aligned" / "tiny-gpt2-bpe", lambda: run_align(align)),
        "train": (out / "runs" / train.run_name, lambda: run_train(train)),
        "publish": (out / "staged", lambda: run_publish(PublishConfig(
            input=str(fusion_shards / "tiny-llama-pivot"), repo_id="org/name", stage_only=str(out / "staged"),
            overwrite=True))),
    }


@pytest.mark.ray
@pytest.mark.fault("writer")
@pytest.mark.parametrize("job", ["capture", "align", "train", "publish"])
def test_a_live_writer_refuses_a_second_even_with_overwrite(fusion_shards, tiny_jsonl, tmp_path, job, capsys):
    folder, run = _jobs(fusion_shards, tiny_jsonl, tmp_path)[job]
    holder = hold(folder, job)
    try:
        with pytest.raises(LockError) as e:
            run()
        assert f"pid {holder.pid} on {socket.gethostname()}" in str(e.value) and str(folder) in str(e.value)
        assert f"{job} pid" in str(e.value) and "fp-holder" in str(e.value)
    finally:
        kill(holder)
    if job == "capture":  # the dead holder's lock is taken over; the finished shards are kept, not recomputed
        copy_set(fusion_shards / "tiny-gpt2-bpe", folder)
        m = run()
        assert m.stats["shards_computed"] == 0 and verify(folder) == []
        assert "taking over the lock" in capsys.readouterr().err
        assert not lock_path(folder).exists()  # released on exit


@pytest.mark.fault("writer")
def test_racing_writers_yield_exactly_one_winner(tmp_path):
    go = tmp_path / "go"
    script = ("import os, sys, time\nfrom pipeline.errors import LockError\nfrom pipeline.io.lock import folder_lock\n"
              "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
              "try:\n    with folder_lock(sys.argv[1], 'capture'):\n        print('won', flush=True); time.sleep(1)\n"
              "except LockError:\n    print('refused', flush=True)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out"), str(go)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
             for _ in range(6)]
    time.sleep(1.5)  # every process imported and is polling
    go.touch()
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["refused"] * 5 + ["won"]


@pytest.mark.fault("writer")
def test_dead_reused_foreign_and_unreadable_holders(tmp_path, capsys):
    folder = tmp_path / "out"
    lock = lock_path(folder)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "what": "capture"}
    # this pid, but a process started at another time: the holder died and its pid was reused
    lock.write_text(json.dumps(me | {"process_start": "1"}))
    with folder_lock(folder, "align"):
        assert json.loads(lock.read_text())["what"] == "align"
    assert "taking over the lock" in capsys.readouterr().err and not lock.exists()
    # another host cannot be checked: refused, naming the host and the file to remove
    lock.write_text(json.dumps(me | {"host": "node-7"}))
    with pytest.raises(LockError, match=rf"pid {os.getpid()} on node-7.*remove the lock file"):
        with folder_lock(folder, "align"):
            pass
    # garbage (a writer killed between creating the lock and writing it): taken over after the grace period
    lock.write_text("")
    with folder_lock(folder, "align", wait_s=0.2):
        pass
    # a live holder in this very process: a second writer here is refused too
    with folder_lock(folder, "capture"):
        with pytest.raises(LockError, match=rf"capture pid {os.getpid()}"):
            with folder_lock(folder, "capture"):
                pass
    assert not lock.exists()


@pytest.mark.ray
@pytest.mark.fault("stray")
def test_stray_and_temporary_files_are_ignored_then_cleaned(fusion_shards, tiny_jsonl, tmp_path):
    from pipeline.capture.job import run_capture

    d = copy_set(fusion_shards / "tiny-gpt2-bpe", tmp_path / "tiny-gpt2-bpe")
    before = list(ShardSet(d).iter_rows())
    strays = [d / ".tmp-part-00002.parquet.4242", d / "_progress" / ".tmp-part-00003.json.4242",
              d / "_progress" / ".tmp-stats-00003.json.4242"]
    for p in strays:
        p.write_bytes(b"half written by a killed run")
    (d / "part-00099.parquet").write_bytes(b"not listed in the manifest")
    assert list(ShardSet(d).iter_rows()) == before and verify(d) == []  # readers open only what the manifest lists
    m = run_capture(_capture_cfg(tiny_jsonl, tmp_path))
    assert m.stats["shards_computed"] == 0 and not [p for p in strays if p.exists()]
    assert list(d.rglob(".tmp-*")) == []
