"""`publish --codec native`: compact shards converted while staging, integrity as for linked files, and the result
read by polars, DuckDB and `datasets` (the way the card says) equal to what logitfuse decodes from the originals."""

import re
import shutil

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import PublishError
from pipeline.io.reader import ShardSet, decode_topk, verify
from pipeline.publish.config import PublishConfig
from pipeline.publish.job import run_publish
from schemas import logit_shard

pytestmark = pytest.mark.ray
REPO = "my-org/tiny-logits"
CONFIGS = {"tiny-llama-pivot": "tiny-llama-pivot", "tiny-gpt2-bpe": "tiny-gpt2-bpe",
           "aligned-tiny-gpt2-bpe": "aligned/tiny-gpt2-bpe"}


@pytest.fixture(scope="module")
def native_staged(shard_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("native") / "repo"
    run_publish(PublishConfig(input=str(shard_root), repo_id=REPO, stage_only=str(out), codec="native"))
    return out


def _want(shard_root):
    shards = ShardSet(shard_root / "tiny-gpt2-bpe")
    return [decode_topk(shards.codec(), row) for row in shards.iter_rows()]


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_only_the_compact_logit_set_is_converted(native_staged, staged, shard_root):
    assert _files(native_staged) == _files(staged)
    for config, original in CONFIGS.items():
        assert verify(native_staged / config) == []  # sizes, checksums, schema, rows of the staged files
        m, o = ShardSet(native_staged / config).manifest, ShardSet(shard_root / original).manifest
        assert m.fingerprints == o.fingerprints and m.num_samples == o.num_samples
        if config != "tiny-gpt2-bpe":  # k=0 pivot and aligned set: linked byte for byte, manifests as before
            assert [e.sha256 for e in m.shards] == [e.sha256 for e in o.shards] and m.codec == o.codec
            continue
        assert m.codec["codec"] == "native" and m.codec["converted_from"] == "lossless"
        assert {k: v for k, v in m.codec.items() if not k.startswith("codec") and k != "converted_from"} == \
            {k: v for k, v in o.codec.items() if not k.startswith("codec")}  # model, k, dtype, fingerprints kept
        assert m.shard_schema_version == logit_shard.VERSION
        assert [e.sha256 for e in m.shards] != [e.sha256 for e in o.shards]
        assert [(e.rows, e.tokens, e.first_sample) for e in m.shards] == \
            [(e.rows, e.tokens, e.first_sample) for e in o.shards]
        assert m.stats["bytes_per_token"] == m.total_bytes / m.total_tokens
    shards = ShardSet(native_staged / "tiny-gpt2-bpe")
    assert shards.codec().name == "native"
    for (a, b), (c, d) in zip((decode_topk(shards.codec(), r) for r in shards.iter_rows()), _want(shard_root),
                              strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)  # lossless -> native keeps every value


def _snippets(card: str) -> dict[str, str]:
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    return {"polars": next(b for b in blocks if "pl.read_parquet" in b),
            "duckdb": next(b for b in blocks if "import duckdb" in b),
            "datasets": next(b for b in blocks if "load_dataset" in b and "with_format" in b)}


def test_card_snippets_read_what_logitfuse_decodes(native_staged, shard_root, tmp_path, monkeypatch):
    """Every native snippet of the card, run on the staged folder in place of the Hub, gives sample 0's top-k."""
    import datasets

    card = (native_staged / "README.md").read_text()
    assert "`native` version 1" in card and "converted from `lossless` when published" in card
    assert "### Compact configs" not in card  # no compact logits config left to decode with logitfuse
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    want_ids, want_lps = _want(shard_root)[0]
    for reader, code in _snippets(card).items():
        code = code.replace(f"hf://datasets/{REPO}", str(native_staged)).replace(f'"{REPO}"', f'"{native_staged}"')
        scope: dict = {}
        exec(code, scope)  # noqa: S102 - our own card
        ids, lps = np.asarray(scope["ids"]), np.asarray(scope["logprobs"], np.float32)
        assert np.array_equal(ids.reshape(want_ids.shape), want_ids), reader
        assert np.array_equal(lps.reshape(want_lps.shape), want_lps), reader
        if reader == "duckdb":
            top1 = scope["top1"].sort("sample_id")["top1_prob"].to_list()
            first = [row for row in top1 if row][0]
            assert np.allclose(first, np.exp(want_lps[:, 0]), rtol=1e-6)


def test_every_row_through_datasets_polars_and_duckdb(native_staged, shard_root, tmp_path):
    import datasets
    import duckdb
    import polars as pl

    want = _want(shard_root)
    files = str(native_staged / "data" / "tiny-gpt2-bpe" / "*.parquet")
    rows = datasets.load_dataset(str(native_staged), "tiny-gpt2-bpe", split="train", cache_dir=str(tmp_path))
    frame = pl.read_parquet(files).sort("sample_index")
    db = duckdb.sql(f"SELECT topk_ids, topk_logprobs FROM '{files}' ORDER BY sample_index").fetchall()
    for i, (ids, lps) in enumerate(want):
        k = ids.shape[1]
        for got_ids, got_lps in ((rows[i]["topk_ids"], rows[i]["topk_logprobs"]),
                                 (frame["topk_ids"][i].to_list(), frame["topk_logprobs"][i].to_list()), db[i]):
            assert np.array_equal(np.asarray(got_ids, np.int32).reshape(-1, k), ids)
            assert np.array_equal(np.asarray(got_lps, np.float32).reshape(-1, k), lps)


def test_restage_keeps_converted_files_and_converts_back(native_staged, shard_root, tmp_path, capsys):
    out = tmp_path / "repo"
    shutil.copytree(native_staged, out)
    again = run_publish(PublishConfig(input=str(shard_root), repo_id=REPO, stage_only=str(out), codec="native"))
    assert again.staged.bytes_written == 0 and _files(out) == _files(native_staged)
    # a staged native set republished compact: lossless again, same values
    assert main(["publish", str(native_staged / "logitfuse" / "tiny-gpt2-bpe"), "--repo-id", REPO, "--stage-only",
                 str(tmp_path / "back"), "--codec", "lossless"]) == 0
    assert "published 1 config(s) [tiny-gpt2-bpe]" in capsys.readouterr().out
    back = ShardSet(tmp_path / "back" / "tiny-gpt2-bpe")
    assert verify(back.folder) == [] and back.codec().name == "lossless"
    assert back.manifest.codec["converted_from"] == "lossless"  # where the values first came from
    for (a, b), (c, d) in zip((decode_topk(back.codec(), r) for r in back.iter_rows()), _want(shard_root)):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    assert "### Compact configs" in (tmp_path / "back" / "README.md").read_text()


def test_bad_codec_and_v1_shards_are_refused(shard_root, tmp_path):
    from pipeline.errors import ConfigError
    from tests.conftest import copy_as_version_1

    with pytest.raises(ConfigError, match="codec must be native or lossless"):
        PublishConfig(input=str(shard_root), repo_id=REPO, codec="quantized").validate()
    old = tmp_path / "tiny-gpt2-bpe"
    m = copy_as_version_1(shard_root / "tiny-gpt2-bpe", old)
    (old / "manifest.json").write_text(m.to_json())
    with pytest.raises(PublishError, match="version 1 shards cannot be converted"):
        run_publish(PublishConfig(input=str(old), repo_id=REPO, stage_only=str(tmp_path / "o"), codec="native"))
