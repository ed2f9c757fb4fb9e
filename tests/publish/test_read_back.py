"""Readers accept a published dataset wherever they accept a shard folder: staged forms, hf:// ids, align."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ShardError
from pipeline.io.reader import ShardSet, verify
from pipeline.io.resolve import parse_hf_uri, resolve_shard_folder
from tests.conftest import flip_byte

pytestmark = pytest.mark.ray


def _rows(shards):
    return list(shards.iter_rows())


def _equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(np.asarray(x[k], dtype=object if isinstance(x[k], str) else None),
                                          np.asarray(y[k]), err_msg=k)


def test_every_staged_form_reads_the_same_rows(staged, shard_root):
    want = _rows(ShardSet(shard_root / "tiny-gpt2-bpe"))
    meta = staged / "logitfuse" / "tiny-gpt2-bpe"
    for spec in (staged / "tiny-gpt2-bpe", staged / "data" / "tiny-gpt2-bpe", meta):
        assert Path(ShardSet(spec).folder) == meta  # a local Location is a path
        _equal(_rows(ShardSet(spec)), want)
    assert resolve_shard_folder(staged, "tiny-gpt2-bpe") == meta
    assert resolve_shard_folder(shard_root / "tiny-gpt2-bpe") == shard_root / "tiny-gpt2-bpe"  # plain: unchanged
    with pytest.raises(ShardError, match=r"staged dataset with 3 configs \(aligned-tiny-gpt2-bpe, tiny-gpt2-bpe, "
                                         r"tiny-llama-pivot\): give .*/<config>"):
        ShardSet(staged)
    with pytest.raises(ShardError, match="no config 'nope'"):
        resolve_shard_folder(staged, "nope")
    assert verify(staged) and "3 configs" in verify(staged)[0]
    assert verify(staged / "nope") == [(f"{staged / 'nope'}: no manifest.json (the job that writes it has not "
                                        f"finished, or this is not a shard folder)")]


def test_verify_names_a_corrupted_staged_file(staged, tmp_path):
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(staged, copy)
    p = copy / "data" / "tiny-gpt2-bpe" / "train-00002-of-00003.parquet"
    flip_byte(p, at=100)
    problems = verify(copy / "tiny-gpt2-bpe")
    assert len(problems) == 1 and "train-00002-of-00003.parquet: sha256 mismatch" in problems[0]


def test_hub_ids_download_only_their_config(staged, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, **kw):
        calls.append((repo_id, kw))
        return str(staged)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    s = ShardSet("hf://datasets/my-org/tiny-logits@v1/tiny-gpt2-bpe")
    assert Path(s.folder) == staged / "logitfuse" / "tiny-gpt2-bpe" and len(_rows(s)) == 60
    assert calls == [("my-org/tiny-logits", {"repo_type": "dataset", "revision": "v1", "allow_patterns": [
        "README.md", "logitfuse/tiny-gpt2-bpe/*", "data/tiny-gpt2-bpe/*"]})]
    with pytest.raises(ShardError, match="3 configs .*name one as hf://datasets/my-org/tiny-logits/<config>"):
        ShardSet("hf://datasets/my-org/tiny-logits")
    assert parse_hf_uri("hf://datasets/o/n") == ("o/n", None, None)
    for bad in ("hf://datasets/only-org", "hf://models/o/n/c", "hf://datasets/o/n/c/extra"):
        with pytest.raises(ShardError, match="not a Hub dataset address"):
            ShardSet(bad)

    def offline(repo_id, **kw):
        raise OSError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ShardError, match="cannot download dataset 'o/n' from the Hub: offline mode is enabled"):
        ShardSet("hf://datasets/o/n/c")


def test_align_reads_a_staged_dataset(staged, shard_root, tmp_path):
    from pipeline.align.config import AlignConfig, SourceSpec
    from pipeline.align.job import run_align

    out = run_align(AlignConfig(pivot=str(staged / "tiny-llama-pivot"), pivot_model="tiny:tiny-llama-pivot",
                                output=str(tmp_path), progress=False,
                                sources=[SourceSpec(shards=str(staged / "tiny-gpt2-bpe"), model="tiny:tiny-gpt2-bpe",
                                                    vocab_map=str(staged / "logitfuse/aligned-tiny-gpt2-bpe/"
                                                                               "vocab_map.parquet"))]))
    assert verify(tmp_path / "aligned" / "tiny-gpt2-bpe") == []
    assert out["tiny-gpt2-bpe"].counts == ShardSet(staged / "aligned-tiny-gpt2-bpe").manifest.counts
    _equal(_rows(ShardSet(tmp_path / "aligned" / "tiny-gpt2-bpe")),
           _rows(ShardSet(shard_root / "aligned" / "tiny-gpt2-bpe")))
