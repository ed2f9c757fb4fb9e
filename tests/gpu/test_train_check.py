"""The GPU training check's dry run (tiny shape, CPU, gloo): the script cannot rot between GPU sessions."""

import json
import math

import torch.distributed as dist
from train_check import main


def test_dry_run_trains_and_reports(capsys):
    assert main(["--dry-run", "--steps", "3", "--warmup", "1", "--tokens", "48", "--head-chunk", "16"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    steps, summary = rows[:-1], rows[-1]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and {"sft", "uld", "gld"} <= set(r) for r in steps)
    assert summary["summary"] == "train_check" and summary["timed_steps"] == 2 and summary["tokens_per_s"] > 0
    assert summary["plan_total_bytes"] > 0 and summary["plan_error"] is None
    assert summary["mfu"] is None  # MFU only against a GPU's peak
    assert not dist.is_initialized()
