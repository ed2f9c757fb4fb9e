"""The GPU device check: its dry run (CPU, tiny sizes) in the default suite, the whole script behind markers."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import capture_check
import loss_check
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.ray
def test_capture_part_dry_run(ray_session, tmp_path, capsys):
    res = capture_check.main(["--dry-run", "--work", str(tmp_path)])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    figures = {x["figure"]: x for x in lines}
    want = {"bare_forward_topk_tokens_per_s", "mfu_bare", "job_tokens_per_s", "job_over_bare", "mfu_job"}
    assert want <= set(figures)
    assert all(v > 0 and math.isfinite(v) for v in res.values())
    # the job wrote every position the bare loop computed (checked inside main too), from one shard plan
    assert figures["job_tokens_per_s"]["positions"] == figures["bare_forward_topk_tokens_per_s"]["positions"] > 0
    assert len(list((tmp_path / "out" / "qwen2-shape").glob("part-*.parquet"))) == 3


def test_loss_part_dry_run(capsys):
    res = loss_check.main(["--dry-run"])
    assert set(res) == {"gld_rank", "gld_vocab", "topk"} and all(v > 0 and math.isfinite(v) for v in res.values())
    assert len(capsys.readouterr().out.splitlines()) == 4


def _run_script(*args: str, timeout: int) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    env["PYTHON"] = sys.executable  # the script's default is the GPU image's python3
    out = subprocess.run(["bash", str(ROOT / "tests/gpu/device_check.sh"), *args], env=env, capture_output=True,
                         text=True, timeout=timeout)
    return [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]


@pytest.mark.slow
def test_whole_script_dry_run():
    lines = _run_script("--dry-run", timeout=600)
    assert not [x for x in lines if "error" in x], lines
    assert {x["check"] for x in lines} >= {"env", "capture", "losses", "train"}


@pytest.mark.gpu
def test_whole_script_on_the_gpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    lines = _run_script(timeout=540)
    assert not [x for x in lines if "error" in x], lines
