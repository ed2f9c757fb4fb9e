"""`validate` names a truncated shard and a shard with a flipped byte; the reader never lists temp files."""

import shutil

import pytest

from pipeline.cli import main
from pipeline.io.reader import ShardSet, verify
from tests.conftest import flip_byte

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def shard_dir(ray_session, tiny_jsonl, tmp_path_factory):
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture

    out = tmp_path_factory.mktemp("val")
    run_capture(CaptureConfig.load(None, [f"input={tiny_jsonl}", f"output={out}", "model=tiny:tiny-gpt2-bpe",
                                          "shard_size=20", "k=4", "progress=false"]))
    return out / "tiny-gpt2-bpe"


def test_validate_ok_and_inspect(shard_dir, capsys):
    assert main(["validate", str(shard_dir)]) == 0
    assert main(["inspect", str(shard_dir), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"samples": 60' in out and "top1_agreement" in out
    assert (shard_dir / "inspect.png").stat().st_size > 1000


def test_truncated_and_flipped_shards_are_named(shard_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(shard_dir, bad)
    p1, p2 = bad / "part-00001.parquet", bad / "part-00002.parquet"
    p1.write_bytes(p1.read_bytes()[:-100])
    flip_byte(p2)
    problems = verify(bad)
    assert any("part-00001.parquet" in p and "truncated" in p for p in problems)
    assert any("part-00002.parquet" in p and "sha256 mismatch" in p for p in problems)
    assert main(["validate", str(bad)]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_reader_ignores_temporary_files(shard_dir, tmp_path):
    d = tmp_path / "t"
    shutil.copytree(shard_dir, d)
    (d / ".tmp-part-00009.parquet.123").write_bytes(b"half written")
    s = ShardSet(d)
    assert [e.file for e in s.manifest.shards] == [f"part-{i:05d}.parquet" for i in range(3)]
    assert sum(1 for _ in s.iter_rows()) == 60
