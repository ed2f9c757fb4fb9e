"""Outputs that cannot be written — a file where a folder should be, a read-only folder, a full disk — end in one
line naming the path, exit 2, and nothing half-written visible; after the disk is grown, a rerun completes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.io.lock import lock_path

pytestmark = [pytest.mark.ray, pytest.mark.fault("write_error")]


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _argv(job: str, fusion_shards: Path, tiny_jsonl: str, out: Path, cfg_dir: Path | None = None) -> list[str]:
    if job == "capture":
        return ["capture", f"input={tiny_jsonl}", f"output={out}", "model=tiny:tiny-gpt2-bpe", "k=6",
                "shard_size=16", "progress=false"]
    if job == "align":
        cfg = cfg_dir / "align.yaml"
        cfg.write_text(yaml.safe_dump({"sources": [{"shards": str(fusion_shards / "tiny-gpt2-bpe"),
                                                    "model": "tiny:tiny-gpt2-bpe"}]}))
        return ["align", str(cfg), f"pivot={fusion_shards / 'tiny-llama-pivot'}", "pivot_model=tiny:tiny-llama-pivot",
                f"output={out}", "progress=false"]
    if job == "train":
        return ["train", "pivot_model=tiny:tiny-llama-pivot", f"pivot_shards={fusion_shards / 'tiny-llama-pivot'}",
                f"output={out}", "max_steps=1", "progress=false"]
    return ["publish", str(fusion_shards / "tiny-llama-pivot"), "--repo-id", "org/name", "--stage-only", str(out)]


@pytest.mark.parametrize("job", ["capture", "align", "train", "publish"])
def test_output_that_is_a_file(fusion_shards, tiny_jsonl, tmp_path, job, capsys):
    out = tmp_path / "out"
    out.write_text("a file, not a folder")
    if job == "publish":
        out = out / "staged"
    assert main(_argv(job, fusion_shards, tiny_jsonl, out, tmp_path)) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(tmp_path / "out") in line and ("not a folder" in line or "Not a directory" in line), line
    assert (tmp_path / "out").read_text() == "a file, not a folder"


def test_model_folder_that_is_a_file(tiny_jsonl, tmp_path, capsys):
    (tmp_path / "tiny-gpt2-bpe").write_text("x")
    assert main(_argv("capture", Path(), tiny_jsonl, tmp_path)) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(tmp_path / "tiny-gpt2-bpe") in line, line
    assert not lock_path(tmp_path / "tiny-gpt2-bpe").exists()  # released on the error


def test_read_only_output(fusion_shards, tiny_jsonl, small_tmpfs, tmp_path, capsys):
    ro = small_tmpfs(1 << 20, "ro")
    for job in ("capture", "align", "train", "publish"):
        assert main(_argv(job, fusion_shards, tiny_jsonl, ro / "out", tmp_path)) == 2, job
        line = _error_line(capsys.readouterr().err)
        assert str(ro) in line and "Read-only file system" in line, line


def _fill_the_disk(fusion_shards, tiny_jsonl, small_tmpfs, capsys):
    want = json.loads((fusion_shards / "tiny-gpt2-bpe" / "manifest.json").read_text())["shards"]
    size = -(-sum(e["bytes"] for e in want) // 2 // 4096) * 4096  # room for about half the shards
    disk = small_tmpfs(size)
    out = disk / "tiny-gpt2-bpe"
    assert main(_argv("capture", fusion_shards, tiny_jsonl, disk)) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"cannot write {out}/" in line and "No space left on device" in line, line
    assert not list(disk.rglob(".tmp-*")) and not (out / "manifest.json").exists()
    assert not lock_path(out).exists()
    complete = len(list((out / "_progress").glob("part-*.json")))  # a shard counts once its sidecar is written
    assert complete < len(want)
    return disk, size, want, complete


def test_full_disk(fusion_shards, tiny_jsonl, small_tmpfs, capsys):
    _fill_the_disk(fusion_shards, tiny_jsonl, small_tmpfs, capsys)


@pytest.mark.slow
def test_full_disk_then_rerun_after_growing_it(fusion_shards, tiny_jsonl, small_tmpfs, capsys):
    disk, size, want, complete = _fill_the_disk(fusion_shards, tiny_jsonl, small_tmpfs, capsys)
    subprocess.run(["mount", "-o", f"remount,size={size * 4}", str(disk)], check=True)
    assert main(_argv("capture", fusion_shards, tiny_jsonl, disk)) == 0
    got = json.loads((disk / "tiny-gpt2-bpe" / "manifest.json").read_text())
    assert got["stats"]["shards_computed"] == len(want) - complete
    assert [e["sha256"] for e in got["shards"]] == [e["sha256"] for e in want]  # identical to an undisturbed run
