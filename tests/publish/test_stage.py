"""Staging for real: the Hub layout, the card, `datasets.load_dataset` on the folder, and bad input."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.io.codec import CodecSpec, decode
from pipeline.cli import main
from pipeline.errors import ConfigError, PublishError
from pipeline.io.reader import ShardSet, verify
from pipeline.publish.config import PublishConfig
from pipeline.publish.job import run_publish
from schemas import logit_shard
from tests.conftest import flip_byte

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"tiny-llama-pivot": "tiny-llama-pivot", "tiny-gpt2-bpe": "tiny-gpt2-bpe",
           "aligned-tiny-gpt2-bpe": "aligned/tiny-gpt2-bpe"}  # config -> original folder under the root


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_layout_manifests_and_card(staged, shard_root):
    assert _files(staged) == sorted(
        ["README.md", "logitfuse/aligned-tiny-gpt2-bpe/vocab_map.parquet"]
        + [f"logitfuse/{c}/manifest.json" for c in CONFIGS]
        + [f"data/{c}/train-{i:05d}-of-00003.parquet" for c in CONFIGS for i in range(3)])
    for config, original in CONFIGS.items():
        assert verify(staged / config) == []  # the staged manifest: same checksums, staged names
        m, o = ShardSet(staged / config).manifest, ShardSet(shard_root / original).manifest
        assert [e.file for e in m.shards] == [f"../../data/{config}/train-{i:05d}-of-00003.parquet" for i in range(3)]
        assert [e.sha256 for e in m.shards] == [e.sha256 for e in o.shards]
        assert m.fingerprints == o.fingerprints and m.codec == o.codec
    text = (staged / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "other"
    assert {c["config_name"]: c["data_files"] for c in front["configs"]} == {
        c: [{"split": "train", "path": f"data/{c}/train-*.parquet"}] for c in CONFIGS}
    src = ShardSet(shard_root / "tiny-gpt2-bpe").manifest
    for needle in (f"`logit_shard` version {logit_shard.VERSION}", "`aligned_shard` version 1", "`lossless` version 1",
                   "| k | 4 |",
                   src.fingerprints["tokenizer"], src.fingerprints["model"], src.config["input"], "bytes/token",
                   f"{src.stats['bytes_per_token']:.2f}", "decode_topk", "CodecSpec.from_metadata",
                   'ShardSet("hf://datasets/my-org/tiny-logits/tiny-gpt2-bpe")'):
        assert needle in text, needle


@pytest.mark.parametrize("config", list(CONFIGS))
def test_load_dataset_gives_every_row_equal_after_decoding(staged, shard_root, config, tmp_path):
    import datasets

    rows = datasets.load_dataset(str(staged), config, split="train", cache_dir=str(tmp_path))
    original = ShardSet(shard_root / CONFIGS[config])
    expected = list(original.iter_rows())
    assert len(rows) == len(expected) == 60
    codec = original.codec() if original.manifest.codec.get("codec") not in (None, "none") else None
    for got, want in zip(rows, expected):
        assert set(got) == set(want)
        for col, value in want.items():
            if col in ("topk_ids", "topk_logprobs"):
                assert got[col] == value  # the codec blobs, byte for byte
            else:
                np.testing.assert_array_equal(np.asarray(got[col], dtype=object if isinstance(value, str) else None),
                                              np.asarray(value), err_msg=col)
        if codec:  # decoded as the card says: the spec from the staged manifest
            spec = CodecSpec.from_metadata(ShardSet(staged / config).manifest.codec)
            for a, b in zip(decode(spec, got["topk_ids"], got["topk_logprobs"], got["n_positions"]),
                            decode(codec, want["topk_ids"], want["topk_logprobs"], want["n_positions"])):
                assert np.array_equal(a, b)


def test_restage_keeps_files_and_refuses_foreign_ones(staged, shard_root, tmp_path):
    out = tmp_path / "repo"
    shutil.copytree(staged, out)
    again = run_publish(PublishConfig(input=str(shard_root), repo_id="my-org/tiny-logits", stage_only=str(out)))
    assert again.staged.bytes_written == 0 and _files(out) == _files(staged)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PublishError, match=r"already holds files this dataset would not contain \(notes.txt\).*"
                                           r"--overwrite"):
        run_publish(PublishConfig(input=str(shard_root), repo_id="my-org/tiny-logits", stage_only=str(out)))
    run_publish(PublishConfig(input=str(shard_root), repo_id="my-org/tiny-logits", stage_only=str(out),
                              overwrite=True))
    assert _files(out) == _files(staged)
    with pytest.raises(PublishError, match="overlaps the shard folder"):
        run_publish(PublishConfig(input=str(shard_root), repo_id="my-org/x", stage_only=str(shard_root)))


def test_folder_that_does_not_validate_is_named(shard_root, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(shard_root, bad)
    p = bad / "tiny-gpt2-bpe" / "part-00001.parquet"
    flip_byte(p)
    (bad / "aligned" / "tiny-gpt2-bpe" / "manifest.json").unlink()
    with pytest.raises(PublishError) as e:
        run_publish(PublishConfig(input=str(bad), repo_id="my-org/x", stage_only=str(tmp_path / "out")))
    assert "does not validate (2 problem(s))" in str(e.value)
    assert "part-00001.parquet: sha256 mismatch" in str(e.value)
    assert "aligned/tiny-gpt2-bpe: no manifest.json" in str(e.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PublishError, match="no such folder"):
        run_publish(PublishConfig(input=str(tmp_path / "gone"), repo_id="my-org/x", stage_only=str(tmp_path / "o")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PublishError, match="holds no shard sets"):
        run_publish(PublishConfig(input=str(tmp_path / "empty"), repo_id="my-org/x", stage_only=str(tmp_path / "o")))


@pytest.mark.parametrize("repo_id", ["tiny-logits", "a/b/c", "my-org/", "my org/x", "my-org/x--y", "my-org/x..y",
                                     "-org/x", "my-org/" + "x" * 97])
def test_repo_id_must_be_org_slash_name(shard_root, tmp_path, repo_id, capsys):
    with pytest.raises(PublishError, match="is not ORG/NAME"):
        run_publish(PublishConfig(input=str(shard_root), repo_id=repo_id, stage_only=str(tmp_path / "o")))
    assert main(["publish", str(shard_root), f"--repo-id={repo_id}", "--stage-only", str(tmp_path / "o")]) == 2
    assert "is not ORG/NAME" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_job_and_shipped_config(shard_root, tmp_path, capsys):
    from jobs.publish_shards import cli

    assert main(["publish", str(shard_root / "tiny-gpt2-bpe"), "--repo-id", "my-org/one", "--stage-only",
                 str(tmp_path / "one"), "--license", "apache-2.0"]) == 0
    assert "published 1 config(s) [tiny-gpt2-bpe]: staged in" in capsys.readouterr().out
    assert "license: apache-2.0" in (tmp_path / "one" / "README.md").read_text()
    assert cli([f"input={tmp_path / 'one'}", "repo_id=my-org/again", f"stage_only={tmp_path / 'again'}"]) == 0
    assert _files(tmp_path / "again") == _files(tmp_path / "one")  # a staged folder republishes as itself
    cfg = PublishConfig.load(ROOT / "jobs/configs/publish.yaml", [])
    assert cfg.repo_id == "my-org/tiny-logits" and cfg.private
    with pytest.raises(ConfigError, match="`repo_id` is required"):
        PublishConfig.load(None, [f"input={shard_root}"])
