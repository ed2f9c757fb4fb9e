"""SIGKILL a capture part-way (the driver and the local Ray it started), rerun: only the missing shards are
computed, the dead driver's lock is taken over, no temporary file is left, and the result is identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.capture.config import CaptureConfig
from pipeline.capture.job import run_capture
from pipeline.errors import LockError, ShardError
from pipeline.io.lock import lock_path
from pipeline.io.reader import ShardSet

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["model=tiny:tiny-gpt2-bpe", "shard_size=1", "k=8", "progress=false"]


def start_then_kill(argv: list[str], ready, timeout: float = 240, log=None) -> None:
    """Run ``python -m argv`` in its own session until ``ready()`` holds, then SIGKILL the whole session. Without
    RAY_ADDRESS the driver starts its own local Ray (``ensure_ray``), whatever else runs on the machine; ``log``: a
    file for its stderr, whose tail the failure message shows."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with open(log or os.devnull, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    assert proc.poll() is None, f"{argv[0]} finished before it could be killed" + \
        (f": {open(log).read()[-2000:]}" if log else "")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()


@pytest.fixture(scope="module")
def clean(ray_session, tiny_jsonl, tmp_path_factory):
    """The uninterrupted capture every killed run must equal."""
    out = tmp_path_factory.mktemp("clean")
    return out, run_capture(CaptureConfig.load(None, [f"input={tiny_jsonl}", f"output={out}", *ARGS]))


def _sidecars(folder: Path) -> int:
    return len(list((folder / "_progress").glob("part-*.json")))


@pytest.mark.fault("kill")
@pytest.mark.parametrize("after", [2, pytest.param(1, marks=pytest.mark.slow), pytest.param(30, marks=pytest.mark.slow)])
def test_sigkill_then_rerun_equals_uninterrupted(clean, tiny_jsonl, tmp_path, after, capsys):
    clean_out, manifest = clean
    args = [f"input={tiny_jsonl}", *ARGS]
    out = tmp_path / "killed"
    folder = out / "tiny-gpt2-bpe"
    start_then_kill(["jobs.capture_logits", *args, f"output={out}"],
                    lambda: (folder / "_progress").is_dir() and _sidecars(folder) >= after)
    done_before = _sidecars(folder)
    assert after <= done_before < len(manifest.shards)
    with pytest.raises(ShardError, match="no manifest.json"):
        ShardSet(folder)  # nothing half-written is visible
    assert lock_path(folder).exists()  # the dead driver's

    resumed = run_capture(CaptureConfig.load(None, args + [f"output={out}"]))
    assert "taking over the lock" in capsys.readouterr().err and not lock_path(folder).exists()
    assert resumed.stats["shards_computed"] == len(manifest.shards) - done_before
    assert [(s.file, s.rows, s.tokens, s.sha256) for s in resumed.shards] == \
           [(s.file, s.rows, s.tokens, s.sha256) for s in manifest.shards]
    assert not list(folder.rglob(".tmp-*"))
    assert list(ShardSet(clean_out / "tiny-gpt2-bpe").iter_rows()) == list(ShardSet(folder).iter_rows())


@pytest.mark.slow
@pytest.mark.fault("writer")
def test_second_capture_with_overwrite_is_refused_while_the_first_runs(clean, tiny_jsonl, tmp_path):
    """Two captures into one folder, the second with overwrite=true: refused, naming the first; the first, killed,
    is resumed to the uninterrupted result."""
    _, manifest = clean
    args = [f"input={tiny_jsonl}", *ARGS, f"output={tmp_path}"]
    folder = tmp_path / "tiny-gpt2-bpe"
    refused = []

    def second_writer() -> bool:  # tried while the first capture is running, once it has written a shard
        if not ((folder / "_progress").is_dir() and _sidecars(folder) >= 1):
            return False
        with pytest.raises(LockError, match=r"is being written by capture pid \d+") as e:
            run_capture(CaptureConfig.load(None, args + ["overwrite=true", "k=4"]))
        refused.append(str(e.value))
        return True

    start_then_kill(["jobs.capture_logits", *args], second_writer)
    assert refused and not list(folder.glob("*.tmp*"))
    resumed = run_capture(CaptureConfig.load(None, args))
    assert [s.sha256 for s in resumed.shards] == [s.sha256 for s in manifest.shards]
