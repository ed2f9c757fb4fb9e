"""The fusion benchmark runner end to end on the tiny (untrained) models: every variant runs through the real
capture, align and train jobs, and the report files are written."""

import pytest

from pipeline.bench import fusion
from pipeline.tiny.models import ensure_tiny

pytestmark = pytest.mark.ray
TINY = {"arith-source": "tiny-gpt2-bpe", "dyck-source": "tiny-llama-sp", "pivot": "tiny-llama-pivot"}


def test_runner_writes_table_and_chart(ray_session, tmp_path, monkeypatch):
    monkeypatch.setattr(fusion, "ensure_bench_model", lambda name, progress=True: ensure_tiny(TINY[name]))
    profile = fusion.Profile(fusion_per_skill=16, test_per_skill=4, epochs=1, batch_size=4, seeds=[0, 1],
                             variants=["pivot", "sft", "sft+uld+gld(vocab)"])
    res = fusion.run_benchmark(tmp_path, profile, progress=False)
    assert [(r["variant"], r["seed"]) for r in res["rows"]] == [
        ("arith-source (teacher)", 0), ("dyck-source (teacher)", 0),
        ("pivot", 0), ("sft", 0), ("sft", 1), ("sft+uld+gld(vocab)", 0), ("sft+uld+gld(vocab)", 1)]
    assert all(0 <= r[s] <= 1 for r in res["rows"] for s in ("arithmetic", "dyck"))
    assert res["rows"][3]["steps"] == 8  # 32 fusion samples / batch 4, one epoch
    table = (tmp_path / "results.md").read_text()
    assert "| sft+uld+gld(vocab) |" in table and "| arith-source (teacher) |" in table
    assert "mean ± std over 2 seed(s)" in table
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    assert res["prep"]["aligned"]["arith-source"].stats["coverage"] > 0.5
    again = fusion.run_benchmark(tmp_path, profile, progress=False)  # finished runs are reused, not retrained
    assert [r["steps"] for r in again["rows"]] == [r["steps"] for r in res["rows"]]


def test_summary_and_markdown():
    rows = [{"variant": "a", "seed": s, "arithmetic": x, "dyck": y} for s, x, y in ((0, 0.5, 0.1), (1, 0.7, 0.3))]
    summary = fusion.summarize(rows)
    assert summary["a"]["arithmetic"][0] == pytest.approx(0.6) and summary["a"]["dyck"][1] == pytest.approx(0.1)
    assert "| a | 60.0 ± 10.0 | 20.0 ± 10.0 | 40.0 |" in fusion.markdown(summary, 2)


def test_profiles_name_known_models_for_every_role(tmp_path):
    from pipeline.bench.source_train import BENCH_MODELS
    from pipeline.errors import ConfigError

    for name, profile in fusion.PROFILES.items():
        assert set(profile.models) == set(fusion.ROLES), name
        assert all(m in BENCH_MODELS for m in profile.models.values()), name
    quick, full = (BENCH_MODELS[fusion.PROFILES[p].models["arith-source"]] for p in ("quick", "full"))
    assert quick.spec.tokenizer_seed == full.spec.tokenizer_seed and quick.train.steps < full.train.steps
    with pytest.raises(ConfigError, match="no model for \\['pivot'\\]"):
        fusion.prepare(tmp_path, fusion.Profile(models={"arith-source": "arith-source", "dyck-source": "dyck-source"}))
