"""Loading a checkpoint for capture: attention kernel fallback, no KV cache, remote code only when asked."""

import json
import logging
import shutil

import pytest
import torch

from pipeline.capture.model import LoadOptions, load_model, resolve_attn
from pipeline.errors import ConfigError, ModelLoadError
from pipeline.tiny.models import ensure_tiny

CUSTOM = '''
from transformers import GPT2Config, GPT2LMHeadModel


class CustomConfig(GPT2Config):
    model_type = "custom_gpt2"


class CustomLM(GPT2LMHeadModel):
    config_class = CustomConfig
'''


def test_flash_attention_falls_back_to_sdpa_with_a_log_line(caplog):
    with caplog.at_level(logging.WARNING, logger="logitfuse.capture"):
        assert resolve_attn("flash_attention_2", "cpu", torch.float32) == "sdpa"
    assert "falls back to sdpa: it needs CUDA" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="logitfuse.capture"):
        assert resolve_attn("auto", "cpu", torch.bfloat16) == "sdpa"
        assert resolve_attn("eager", "cpu", torch.float32) == "eager"
    assert caplog.text == ""  # auto picks quietly
    with pytest.raises(ConfigError, match="attn_implementation must be"):
        resolve_attn("flash3", "cpu", torch.float32)


def test_load_options_reach_the_model(tmp_path):
    model = load_model("tiny:tiny-gpt2-bpe", "cpu", torch.float32, LoadOptions(attn_implementation="eager"))
    assert model.config._attn_implementation == "eager" and model.config.use_cache is False
    assert not model.training and next(model.parameters()).dtype == torch.float32


def test_remote_code_runs_only_when_asked(tmp_path):
    path = tmp_path / "custom"
    shutil.copytree(ensure_tiny("tiny-gpt2-bpe"), path)
    cfg = json.loads((path / "config.json").read_text())
    cfg |= {"model_type": "custom_gpt2", "architectures": ["CustomLM"],
            "auto_map": {"AutoConfig": "custom_gpt2.CustomConfig", "AutoModelForCausalLM": "custom_gpt2.CustomLM"}}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "custom_gpt2.py").write_text(CUSTOM)
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        load_model(str(path), "cpu", torch.float32)
    model = load_model(str(path), "cpu", torch.float32, LoadOptions(trust_remote_code=True))
    assert type(model).__name__ == "CustomLM"


def test_dtype_auto_is_bf16_on_cuda_and_fp32_on_cpu_and_a_bad_one_is_named():
    from pipeline.capture.model import resolve_dtype

    assert resolve_dtype("auto", "cuda") == torch.bfloat16 and resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cuda") == torch.float16 and resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype must be auto, float32, bfloat16 or float16, got 'fp8'"):
        resolve_dtype("fp8", "cuda")


REVISIONS = '''
import json, sys
import torch
from pipeline.capture.model import LoadOptions, load_model
from pipeline.capture.prefetch import weight_files
from pipeline.modeling.load import load_tokenizer, model_fingerprint

out = {}
for rev in [None] + sys.argv[1:]:
    model = load_model("org/tiny", "cpu", torch.float32, LoadOptions(revision=rev))
    out[str(rev)] = {"type": model.config.model_type, "fingerprint": model_fingerprint("org/tiny", rev),
                     "weights": [str(p) for p in weight_files("org/tiny", rev)],
                     "vocab": len(load_tokenizer("org/tiny", rev))}
print(json.dumps(out))
'''


def test_revision_picks_the_checkpoint_from_the_hub_cache_offline(tmp_path):
    """A Hub id with two revisions in the local cache (main → a GPT-2, tag v2 → a Llama): `revision` reaches the
    model, the tokenizer, the fingerprint and the weights the prefetch reads, with no network."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    entry = tmp_path / "models--org--tiny"
    commits = {"main": ("a" * 40, "tiny-gpt2-bpe"), "v2": ("b" * 40, "tiny-llama-pivot")}
    (entry / "refs").mkdir(parents=True)
    for ref, (commit, name) in commits.items():
        (entry / "refs" / ref).write_text(commit)
        shutil.copytree(ensure_tiny(name), entry / "snapshots" / commit)
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)}
    res = subprocess.run([sys.executable, "-c", REVISIONS, "v2", "b" * 40], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    main, v2, commit = out["None"], out["v2"], out["b" * 40]
    assert main["type"] == "gpt2" and v2["type"] == commit["type"] == "llama"
    assert main["fingerprint"][1] == f"hub-commit {'a' * 40}" and v2["fingerprint"][1] == f"hub-commit {'b' * 40}"
    assert v2 == commit and main["fingerprint"][0] != v2["fingerprint"][0]
    assert [Path(p).parent.name for p in main["weights"] + v2["weights"]] == ["a" * 40, "b" * 40]
    from pipeline.modeling.load import load_tokenizer

    sizes = {ref: len(load_tokenizer(str(ensure_tiny(name)))) for ref, (_, name) in commits.items()}
    assert sizes["main"] != sizes["v2"] and (main["vocab"], v2["vocab"]) == (sizes["main"], sizes["v2"])
