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
