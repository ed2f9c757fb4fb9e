"""Batching, schedule, a few SFT steps and the atomic cache of the fusion benchmark's model builder."""

import json
import os
import random
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.bench import source_train as st
from pipeline.bench import tasks
from pipeline.errors import ConfigError
from pipeline.tiny.models import TinySpec, ensure_tiny


def test_token_batches_cover_everything_within_budget():
    rng = random.Random(0)
    lengths = [rng.randint(5, 60) for _ in range(500)]
    batches = st.token_batches(lengths, 256, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(len(b) * max(lengths[i] for i in b) <= 256 for b in batches)
    assert batches == st.token_batches(lengths, 256, random.Random(1))
    assert batches != st.token_batches(lengths, 256, random.Random(2))


def test_collate_masks_prompt_and_padding():
    batch = st.collate([([5, 6, 7, 8], 2), ([9, 10], 1)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8], [-100, 10, -100, -100]]


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    spec = st.TrainSpec(skills=("dyck",), n_per_skill=1, steps=100, warmup=10, min_lr_ratio=0.1)
    f = st.lr_lambda(spec)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(55) < f(20) and f(100) == pytest.approx(0.1)


@pytest.mark.parametrize("bad, match", [
    (dict(skills=("poetry",)), "skills"), (dict(steps=5, warmup=5), "warmup"), (dict(lr=0.0), "lr"),
    (dict(batch_tokens=8), "batch_tokens"), (dict(n_per_skill=0), "no data")])
def test_train_spec_validate(bad, match):
    with pytest.raises(ConfigError, match=match):
        replace(st.TrainSpec(skills=("dyck",), n_per_skill=10), **bad).validate()


def test_a_few_steps_reduce_the_loss():
    path = ensure_tiny("tiny-gpt2-bpe")
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path)
    spec = st.TrainSpec(skills=("arithmetic",), n_per_skill=32, steps=24, warmup=2, lr=3e-3, batch_tokens=512)
    losses = st.train_sft(model, tok, st.training_records(spec), spec, progress=False)["losses"]
    assert len(losses) == 24 and sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4


def test_ensure_bench_model_builds_once_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGITFUSE_CACHE", str(tmp_path))
    tiny = st.BenchModel(TinySpec("gpt2", "bpe", vocab_size=300, hidden=32, layers=1, heads=2, max_positions=256),
                         st.TrainSpec(skills=tasks.SKILLS, n_per_skill=8, n_general=8, steps=3, warmup=1))
    monkeypatch.setitem(st.BENCH_MODELS, "test-tiny", tiny)
    path = st.ensure_bench_model("test-tiny", progress=False)
    assert path.parent == tmp_path / "bench" and path.name == f"test-tiny-{st.model_key('test-tiny')}"
    meta = json.loads((path / st.META).read_text())
    assert meta["train_records"] == 8 * len(tasks.SKILLS) + 8 and meta["params"] > 0 and meta["train"]["steps"] == 3
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary folder left behind
    AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)

    monkeypatch.setattr(st, "build_bench_model", lambda *a, **k: pytest.fail("rebuilt a cached model"))
    assert st.ensure_bench_model("test-tiny") == path
    monkeypatch.setitem(st.BENCH_MODELS, "test-tiny", replace(tiny, train=replace(tiny.train, seed=1)))
    assert st.model_key("test-tiny") != path.name.rsplit("-", 1)[1]


def test_missing_models_build_side_by_side(tmp_path, monkeypatch):
    """Two missing models build in two spawned processes (one torch thread each on 2 cores) into the same cache; a
    build that fails raises in the caller with its own error."""
    monkeypatch.setenv("LOGITFUSE_CACHE", str(tmp_path))
    spec = TinySpec("gpt2", "bpe", vocab_size=300, hidden=32, layers=1, heads=2, max_positions=256)
    for i, steps in enumerate((4, 2)):
        monkeypatch.setitem(st.BENCH_MODELS, f"test-par{i}", st.BenchModel(
            replace(spec, seed=i), st.TrainSpec(skills=("dyck",), n_per_skill=8, steps=steps, warmup=1)))
    paths = st.ensure_bench_models(["test-par1", "test-par0", "test-par1"], progress=False, workers=2)
    assert list(paths) == ["test-par1", "test-par0"]
    for name, path in paths.items():
        meta = st.load_meta(path)
        assert meta["name"] == name and meta["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == sorted(p.name for p in paths.values())
    monkeypatch.setitem(st.BENCH_MODELS, "test-bad", st.BenchModel(
        spec, st.TrainSpec(skills=("dyck",), n_per_skill=8, steps=2, warmup=1, batch_tokens=8)))
    monkeypatch.setitem(st.BENCH_MODELS, "test-par2", st.BenchModel(
        replace(spec, seed=2), st.TrainSpec(skills=("dyck",), n_per_skill=8, steps=2, warmup=1)))
    with pytest.raises(ConfigError, match="batch_tokens must be >= 64"):
        st.ensure_bench_models(["test-bad", "test-par2"], progress=False, workers=2)
    assert not (st.bench_model_path("test-bad") / st.META).exists()


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown bench model"):
        st.ensure_bench_model("nope")
