"""The align job on a real local Ray: aligned values, resume, and every bad-input error naming its culprit."""

import json

import numpy as np
import pytest

from pipeline.align.config import AlignConfig
from pipeline.align.job import run_align
from pipeline.align.shards import align_row
from pipeline.capture.config import CaptureConfig
from pipeline.capture.job import run_capture
from pipeline.errors import AlignmentError, ShardError
from pipeline.io.reader import ShardSet, decode_topk, verify

pytestmark = pytest.mark.ray
SOURCES = ("tiny-gpt2-bpe", "tiny-llama-sp")


def capture(data, out, model, k, *extra):
    return run_capture(CaptureConfig.load(None, [f"input={data}", f"output={out}", f"model=tiny:{model}",
                                                 f"k={k}", "shard_size=16", "progress=false", *extra]))


def align_cfg(out, sources):
    return AlignConfig(pivot=str(out / "tiny-llama-pivot"), pivot_model="tiny:tiny-llama-pivot", output=str(out),
                       progress=False, sources=sources)


@pytest.fixture(scope="module")
def captured(ray_session, tiny_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("align")
    capture(tiny_jsonl, out, "tiny-llama-pivot", 0)
    for m in SOURCES:
        capture(tiny_jsonl, out, m, 6)
    return out


def _spec(out, m, **kw):
    from pipeline.align.config import SourceSpec

    return SourceSpec(shards=str(out / m), model=f"tiny:{m}", **kw)


@pytest.fixture(scope="module")
def aligned(captured):
    return captured, run_align(align_cfg(captured, [_spec(captured, m) for m in SOURCES]))


@pytest.mark.parametrize("source", SOURCES)
def test_aligned_shards_carry_the_sources_topk(aligned, source):
    out, manifests = aligned
    m = manifests[source]
    assert verify(out / "aligned" / source) == [] and len(m.shards) == 4
    assert m.stats["coverage"] > 0.6 and m.counts["positions"] == ShardSet(out / "tiny-llama-pivot").manifest.total_tokens
    src, al, piv = ShardSet(out / source), ShardSet(out / "aligned" / source), ShardSet(out / "tiny-llama-pivot")
    codec = src.codec()
    for s, a, p in zip(src.iter_rows(), al.iter_rows(), piv.iter_rows()):
        assert a["sample_id"] == s["sample_id"] == p["sample_id"] and a["n_positions"] == p["n_positions"]
        ids, lps = decode_topk(codec, s)
        idx = np.asarray(a["src_index"])
        rank = np.asarray(a["rank_logprobs"], np.float32).reshape(-1, 6)
        ok = idx >= 0
        np.testing.assert_allclose(rank[ok], lps[idx[ok]].astype(np.float16).astype(np.float32))
        assert np.all(np.isneginf(rank[~ok]))
        # aligned positions predict tokens that start at the same character of the response
        piv_start = np.asarray(p["char_start"])[ok]
        src_start = np.asarray(s["char_start"])[idx[ok]]
        assert np.mean(piv_start == src_start) > 0.9
        mids = np.asarray(a["mapped_ids"]).reshape(-1, 6)
        assert mids.max(initial=-1) < 1280 and np.all(mids[~ok] == -1)


def test_native_capture_aligns_like_the_lossless_one(aligned, tmp_path, capsys):
    """capture codec=native holds the values lossless decodes to; align, validate and inspect read it."""
    from pipeline.cli import main

    out, _ = aligned
    m = capture(ShardSet(out / "tiny-gpt2-bpe").manifest.config["input"], tmp_path, "tiny-gpt2-bpe", 6,
                "codec=native")
    assert m.codec["codec"] == "native" and m.shard_schema_version == 3
    nat, lossless = ShardSet(tmp_path / "tiny-gpt2-bpe"), ShardSet(out / "tiny-gpt2-bpe")
    assert str(nat.schema(0).field("topk_ids").type) == "list<element: fixed_size_list<element: int32>[6]>"
    for a, b in zip(nat.iter_rows(), lossless.iter_rows()):
        for x, y in zip(decode_topk(nat.codec(), a), decode_topk(lossless.codec(), b)):
            assert np.array_equal(x, y), a["sample_id"]
    cfg = align_cfg(out, [_spec(tmp_path, "tiny-gpt2-bpe")])
    cfg.output = str(tmp_path)
    run_align(cfg)
    got, want = ShardSet(tmp_path / "aligned" / "tiny-gpt2-bpe"), ShardSet(out / "aligned" / "tiny-gpt2-bpe")
    for a, b in zip(got.iter_rows(), want.iter_rows(), strict=True):
        assert a.keys() == b.keys(), a["sample_id"]
        for k in a:  # target_logprob is NaN where the target is not in the top-k
            x, y = np.asarray(a[k]), np.asarray(b[k])
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (a["sample_id"], k)
    assert main(["validate", str(tmp_path / "tiny-gpt2-bpe")]) == 0
    assert main(["inspect", str(tmp_path / "tiny-gpt2-bpe"), "--json"]) == 0
    assert '"codec": "native"' in capsys.readouterr().out


def test_rerun_resumes_and_other_settings_are_refused(aligned):
    out, manifests = aligned
    again = run_align(align_cfg(out, [_spec(out, "tiny-gpt2-bpe")]))
    assert [s.sha256 for s in again["tiny-gpt2-bpe"].shards] == [s.sha256 for s in manifests["tiny-gpt2-bpe"].shards]
    cfg = align_cfg(out, [_spec(out, "tiny-gpt2-bpe")])
    cfg.require_same_span = True
    with pytest.raises(ShardError, match="another configuration"):
        run_align(cfg)


def test_wrong_tokenizer_and_wrong_map_are_named(aligned):
    out, _ = aligned
    from pipeline.align.config import SourceSpec

    with pytest.raises(AlignmentError, match="tiny-gpt2-bpe was captured with tokenizer .*tiny:tiny-llama-sp"):
        run_align(align_cfg(out, [SourceSpec(shards=str(out / "tiny-gpt2-bpe"), model="tiny:tiny-llama-sp")]))
    wrong_map = out / "aligned" / "tiny-gpt2-bpe" / "vocab_map.parquet"
    with pytest.raises(AlignmentError, match="mapping table made for other tokenizers"):
        run_align(align_cfg(out, [_spec(out, "tiny-llama-sp", vocab_map=str(wrong_map), name="x")]))


def test_changed_response_and_other_plans_are_named(captured, tiny_records, tmp_path):
    recs = [dict(r) for r in tiny_records]
    recs[20]["response"] += " changed"
    data = tmp_path / "changed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    capture(data, tmp_path, "tiny-gpt2-bpe", 6)
    with pytest.raises(AlignmentError, match=r"sample 's000020': the response text differs"):
        run_align(align_cfg(captured, [_spec(tmp_path, "tiny-gpt2-bpe", name="changed")]))
    data2 = tmp_path / "fewer.jsonl"
    data2.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(tiny_records) if i != 40))
    capture(data2, tmp_path / "b", "tiny-gpt2-bpe", 6, "limit=59")
    recs3 = [r for i, r in enumerate(tiny_records) if i != 40] + [dict(tiny_records[40], id="zz")]
    data3 = tmp_path / "other.jsonl"
    data3.write_text("".join(json.dumps(r) + "\n" for r in recs3))
    capture(data3, tmp_path / "c", "tiny-gpt2-bpe", 6)
    with pytest.raises(AlignmentError, match="shard plans differ: .* 59 samples"):
        run_align(align_cfg(captured, [_spec(tmp_path / "b", "tiny-gpt2-bpe")]))
    with pytest.raises(AlignmentError, match=r"shard plans differ at .*part-00002.parquet"):
        run_align(align_cfg(captured, [_spec(tmp_path / "c", "tiny-gpt2-bpe")]))


def test_missing_offsets_need_the_dtw_fallback(monkeypatch):
    import pipeline.align.shards as shards

    piv = {"sample_index": 0, "sample_id": "a", "response_sha256": "h", "status": "ok", "n_positions": 3,
           "char_start": [], "char_end": []}
    src = dict(piv, n_positions=2, input_ids=[5, 6, 7], response_start=1)
    monkeypatch.setattr(shards, "decode_topk", lambda c, r: (np.array([[6], [7]]), np.array([[-0.1], [-0.2]])))
    with pytest.raises(AlignmentError, match="sample 'a': no character offsets .* dtw_fallback is disabled"):
        align_row(piv, src, None, np.arange(10), 1, require_same_span=False, dtw_fallback=False)
    row, counts = align_row(piv, src, None, np.arange(10), 1, require_same_span=False, dtw_fallback=True,
                            src_tokens=["ab", "c"], piv_tokens=["a", "b", "c"])
    assert row["n_aligned"] >= 2 and sum(counts.values()) == 3


def test_v1_pivot_shards_are_read_with_their_first_positions_masked(aligned, tmp_path):
    """logit_shard v1 clipped the start of a token beginning inside the prompt to 0: a v1 capture stays readable,
    and a first position at 0 is masked, since it may not start at the response's first byte."""
    from tests.conftest import copy_as_version_1

    out, _ = aligned
    old = tmp_path / "tiny-llama-pivot"
    m = copy_as_version_1(out / "tiny-llama-pivot", old)
    m.shard_schema_version = 1
    (old / "manifest.json").write_text(m.to_json())
    cfg = align_cfg(out, [_spec(out, "tiny-gpt2-bpe")])
    cfg.pivot, cfg.output = str(old), str(tmp_path)
    run_align(cfg)
    now, before = ShardSet(tmp_path / "aligned" / "tiny-gpt2-bpe"), ShardSet(out / "aligned" / "tiny-gpt2-bpe")
    masked = 0
    for a, b, p in zip(now.iter_rows(), before.iter_rows(), ShardSet(old).iter_rows()):
        want = np.asarray(b["src_index"])
        if p["char_start"] and p["char_start"][0] == 0 and want[0] >= 0:
            want[0], masked = -1, masked + 1
        assert np.array_equal(a["src_index"], want), a["sample_id"]
    assert masked > 0


@pytest.mark.parametrize("source", SOURCES)
def test_inspect_summarises_an_aligned_folder(aligned, source, capsys):
    from pipeline.cli import main

    out, manifests = aligned
    folder = out / "aligned" / source
    assert main(["inspect", str(folder), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    m = manifests[source]
    rows = list(ShardSet(folder).iter_rows())
    idx = np.concatenate([r["src_index"] for r in rows])
    ok = idx >= 0
    assert s["samples"] == len(rows) and s["positions"] == idx.size and s["aligned"] == int(ok.sum())
    assert s["coverage"] == pytest.approx(m.stats["coverage"])
    assert s["one_to_one"] + s["one_to_many"] + s["many_to_one"] == s["aligned"]
    cover = [r["n_aligned"] / r["n_positions"] for r in rows if r["n_positions"]]
    assert s["sample_coverage_min"] == pytest.approx(min(cover))
    tgt = np.concatenate([np.asarray(r["target_logprob"], np.float32) for r in rows])[ok]
    assert s["nan_target_share"] == pytest.approx(np.isnan(tgt).mean())
    k = int(m.codec["k"])
    mapped = np.concatenate([np.asarray(r["mapped_logprobs"], np.float32) for r in rows]).reshape(-1, k)[ok]
    assert s["mapped_topk_mass_mean"] == pytest.approx(np.exp(mapped.astype(np.float64)).sum(1).mean(), rel=1e-6)
    assert 0 < s["mapped_topk_mass_mean"] <= s["topk_mass_mean"] * (1 + 1e-6) <= 1.001
    assert s["map_exact"] == pytest.approx(m.stats["map_exact"])
    assert any(key.startswith("map_fan_in/") for key in s)
    assert (folder / "inspect.png").stat().st_size > 1000
