"""The capture job on a real local Ray with the tiny models: values, resume, refusal, bad settings."""

import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from pipeline.capture.config import CaptureConfig
from pipeline.capture.job import run_capture
from pipeline.errors import ConfigError, InputError, ModelLoadError, ShardError
from pipeline.io.reader import ShardSet, decode_topk, verify
from pipeline.modeling.load import resolve_model_path

pytestmark = pytest.mark.ray


def _cfg(tiny_jsonl, out, model, *extra):
    return CaptureConfig.load(None, [f"input={tiny_jsonl}", f"output={out}", f"model={model}", "shard_size=16",
                                     "k=8", "progress=false", *extra])


@pytest.fixture(scope="module")
def captured(ray_session, tiny_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("cap")
    # one model named by its folder (as a user names a checkpoint: its weights are prefetched), one by tiny: spec
    folder = resolve_model_path("tiny:tiny-gpt2-bpe")
    manifests = {"tiny-gpt2-bpe": run_capture(_cfg(tiny_jsonl, out, folder, "name=tiny-gpt2-bpe")),
                 "tiny-llama-sp": run_capture(_cfg(tiny_jsonl, out, "tiny:tiny-llama-sp"))}
    return out, manifests


@pytest.mark.parametrize("model", ["tiny-gpt2-bpe", "tiny-llama-sp"])
def test_shards_hold_the_models_topk(captured, model):
    out, manifests = captured
    m = manifests[model]
    assert m.num_samples == 60 and len(m.shards) == 4 and verify(out / model) == []
    shards = ShardSet(out / model)
    codec = shards.codec()
    lm = AutoModelForCausalLM.from_pretrained(resolve_model_path(f"tiny:{model}")).eval()
    rows = list(shards.iter_rows())
    assert [r["sample_index"] for r in rows] == list(range(60))
    for row in rows[:12]:
        ids, lps = decode_topk(codec, row)
        with torch.no_grad():
            logits = lm(torch.tensor([row["input_ids"]])).logits[0].float()
        ref = torch.log_softmax(logits, -1)[row["response_start"] - 1:-1].topk(8, -1)
        assert np.array_equal(ids[:, 0], ref.indices[:, 0].numpy())
        np.testing.assert_allclose(lps, ref.values.numpy(), atol=codec.max_abs_error + 1e-5)


def test_weights_of_a_folder_are_prefetched(captured):
    from pathlib import Path

    _, manifests = captured
    weights = sum(f.stat().st_size for f in Path(resolve_model_path("tiny:tiny-gpt2-bpe")).glob("*.safetensors"))
    stats = manifests["tiny-gpt2-bpe"].stats
    assert stats["prefetch_bytes"] == stats["prefetch_total_bytes"] == weights > 0 and stats["prefetch_seconds"] >= 0
    assert "prefetch_bytes" not in manifests["tiny-llama-sp"].stats  # tiny: specs are built on demand, not read


def test_rerun_skips_complete_shards_and_refuses_other_config(captured, tiny_jsonl):
    out, manifests = captured
    again = run_capture(_cfg(tiny_jsonl, out, "tiny:tiny-gpt2-bpe"))
    assert again.stats["shards_computed"] == 0
    # statistics cover every shard, not only those this run computed
    assert again.stats["padding_fraction"] == manifests["tiny-gpt2-bpe"].stats["padding_fraction"] > 0
    assert [s.sha256 for s in again.shards] == [s.sha256 for s in manifests["tiny-gpt2-bpe"].shards]
    with pytest.raises(ShardError, match=r"another configuration \(differs in: .*k.*overwrite=true"):
        run_capture(_cfg(tiny_jsonl, out, "tiny:tiny-gpt2-bpe", "k=4"))


def test_overwrite_quantized_within_bound_and_tokens_only(captured, tiny_jsonl, tmp_path):
    out, _ = captured
    shutil.copytree(out / "tiny-llama-sp", tmp_path / "tiny-llama-sp")
    lossless = ShardSet(out / "tiny-llama-sp")
    q = run_capture(_cfg(tiny_jsonl, tmp_path, "tiny:tiny-llama-sp", "codec=quantized", "overwrite=true"))
    assert q.stats["shards_computed"] == 4
    qs = ShardSet(tmp_path / "tiny-llama-sp")
    assert qs.manifest.stats["bytes_per_token"] < lossless.manifest.stats["bytes_per_token"]
    for a, b in zip(lossless.iter_rows(), qs.iter_rows()):
        ia, la = decode_topk(lossless.codec(), a)
        ib, lb = decode_topk(qs.codec(), b)
        assert np.abs(la - lb).max(initial=0) <= qs.codec().max_abs_error + lossless.codec().max_abs_error
    pivot = run_capture(_cfg(tiny_jsonl, tmp_path / "piv", "tiny:tiny-llama-pivot", "k=0"))
    row = next(ShardSet(tmp_path / "piv" / "tiny-llama-pivot").iter_rows())
    assert pivot.codec["codec"] == "none" and row["topk_ids"] == b"" and row["n_positions"] > 0


def test_bad_settings_are_named(ray_session, tiny_jsonl, tmp_path):
    with pytest.raises(ConfigError, match="k=5000 is larger than the vocabulary"):
        run_capture(_cfg(tiny_jsonl, tmp_path, "tiny:tiny-gpt2-bpe", "k=5000"))
    with pytest.raises(ConfigError, match="unknown config key 'topk'"):
        _cfg(tiny_jsonl, tmp_path, "tiny:tiny-gpt2-bpe", "topk=3")
    with pytest.raises(ConfigError, match="overlength must be"):
        _cfg(tiny_jsonl, tmp_path, "tiny:tiny-gpt2-bpe", "overlength=drop")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="broken"):
        run_capture(_cfg(tiny_jsonl, tmp_path, str(tmp_path / "broken")))
    # raised inside a Ray task, surfaced as itself with the sample named
    with pytest.raises(InputError, match=r"sample 's0000\d\d'.*exceed max_length=12"):
        run_capture(_cfg(tiny_jsonl, tmp_path, "tiny:tiny-gpt2-bpe", "max_length=12", "overlength=error"))


def test_skip_policy_keeps_the_plan(ray_session, tiny_jsonl, tmp_path):
    m = run_capture(_cfg(tiny_jsonl, tmp_path, "tiny:tiny-gpt2-bpe", "max_length=30", "overlength=skip"))
    rows = list(ShardSet(tmp_path / "tiny-gpt2-bpe").iter_rows(columns=["sample_index", "status", "n_positions"]))
    assert len(rows) == 60 and m.counts["skipped"] == sum(r["status"] == "skipped" for r in rows) > 0
    assert all(r["n_positions"] == 0 for r in rows if r["status"] == "skipped")


OOMY = '''
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model


class OomyConfig(GPT2Config):
    model_type = "oomy_gpt2"


class OomyBody(GPT2Model):
    def forward(self, input_ids=None, **kwargs):
        if input_ids is not None and input_ids.shape[1] > self.config.oom_above:  # as a GPU would, past its memory
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated at width {input_ids.shape[1]})")
        return super().forward(input_ids=input_ids, **kwargs)


class OomyLM(GPT2LMHeadModel):
    config_class = OomyConfig

    def __init__(self, config):
        super().__init__(config)
        self.transformer.__class__ = OomyBody
'''


def test_out_of_memory_in_the_actor_reaches_the_driver_naming_the_sample(ray_session, tiny_jsonl, tmp_path):
    """A real remote-code checkpoint whose forward runs out of memory on the longest sample: the actor retries at
    half the budget, fails again, and the driver gets the CaptureError naming it; its shard never becomes visible."""
    import json
    import re

    from pipeline.capture.inputs import load_samples
    from pipeline.capture.render import tokenize_sample, uses_template
    from pipeline.errors import CaptureError
    from pipeline.modeling.load import load_tokenizer

    path = tmp_path / "oomy"
    shutil.copytree(resolve_model_path("tiny:tiny-gpt2-bpe"), path)
    tok = load_tokenizer(str(path))
    samples = load_samples(str(tiny_jsonl))
    widths = [len(tokenize_sample(tok, s, max_length=2048, overlength="truncate",
                                  use_template=uses_template(tok, "auto")).input_ids) for s in samples]
    longest = max(range(len(samples)), key=widths.__getitem__)
    cfg = json.loads((path / "config.json").read_text())
    cfg |= {"model_type": "oomy_gpt2", "architectures": ["OomyLM"], "oom_above": max(widths) - 1,
            "auto_map": {"AutoConfig": "oomy_gpt2.OomyConfig", "AutoModelForCausalLM": "oomy_gpt2.OomyLM"}}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "oomy_gpt2.py").write_text(OOMY)
    named = re.escape(samples[longest].id)  # the first of the longest in plan order: its shard fails first
    with pytest.raises(CaptureError, match=rf"out of accelerator memory on samples \[.*'{named}'.*"
                                           r"token_budget=16384 and again at 8192.*simulated"):
        run_capture(_cfg(tiny_jsonl, tmp_path / "out", str(path), "trust_remote_code=true"))
    folder = tmp_path / "out" / "oomy"
    assert not (folder / "manifest.json").exists()
    assert not (folder / f"part-{longest // 16:05d}.parquet").exists()  # shard_size=16
