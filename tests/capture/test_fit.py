"""Will a teacher fit on gpus_per_actor GPUs? Planned on the meta device in the driver, as accelerate places it."""

import json
import os

import pytest
import torch

from pipeline.capture import fit
from pipeline.capture.config import CaptureConfig
from pipeline.errors import ConfigError

QWEN_72B = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=8192, intermediate_size=29568,
                num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, vocab_size=152064,
                tie_word_embeddings=False, max_position_embeddings=32768)
SHAPE_7B = os.path.join(os.path.dirname(__file__), "..", "..", "jobs", "configs", "models", "qwen2.5-7b")
GIB = 1 << 30


@pytest.fixture(scope="module")
def qwen_72b(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen72b")
    (folder / "config.json").write_text(json.dumps(QWEN_72B))
    return folder


def _cfg(model, *extra):
    return CaptureConfig.load(None, ["input=x.jsonl", "output=out", f"model={model}", *extra])


def test_a_72b_teacher_needs_three_80gib_gpus_at_the_default_fraction(qwen_72b):
    model = fit.teacher_on_meta(str(qwen_72b), torch.bfloat16)
    assert all(p.device.type == "meta" for p in model.parameters())  # no weight was made or read
    per_gpu = int(80 * GIB * 0.85)
    assert not fit.fits(model, 2, per_gpu)
    three = fit.placement(model, 3, per_gpu)
    assert set(three) == {"0", "1", "2"}  # every module on a GPU, none left for cpu/disk
    assert fit.gpus_needed(model, per_gpu) == 3
    assert fit.gpus_needed(model, int(141 * GIB * 0.85)) == 2  # H200-sized GPUs


def test_the_driver_refuses_a_teacher_too_large_for_its_gpus_and_says_how_many(qwen_72b):
    with pytest.raises(ConfigError, match=r"135\.\d GiB of weights.*gpus_per_actor=2 GPU\(s\) of 80\.0 GiB.*"
                                          r"set gpus_per_actor=3"):
        fit.check_fit(_cfg(qwen_72b, "gpus_per_actor=2", "gpu_memory=80GiB"), "cuda", torch.bfloat16)
    fit.check_fit(_cfg(qwen_72b, "gpus_per_actor=3", "gpu_memory=80GiB"), "cuda", torch.bfloat16)
    fit.check_fit(_cfg(qwen_72b, "gpus_per_actor=1", "gpu_memory=80GiB"), "cpu", torch.float32)  # CPU: no check
    # a shipped shape: Qwen2.5-7B in bf16 fits one 24 GiB GPU, not one of 16 GiB
    fit.check_fit(_cfg(SHAPE_7B, "gpu_memory=24GiB"), "cuda", torch.bfloat16)
    with pytest.raises(ConfigError, match="set gpus_per_actor=2"):
        fit.check_fit(_cfg(SHAPE_7B, "gpu_memory=16GiB"), "cuda", torch.bfloat16)


def test_gpu_size_from_the_setting_else_nvidia_smi_else_no_check(qwen_72b, tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 81559\necho 81559\n")  # MiB, as --query-gpu=memory.total prints them
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert fit.local_gpu_bytes() == 81559 << 20
    with pytest.raises(ConfigError, match="of 79.6 GiB"):
        fit.check_fit(_cfg(qwen_72b, "gpus_per_actor=2"), "cuda", torch.bfloat16)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert fit.local_gpu_bytes() is None
    fit.check_fit(_cfg(qwen_72b, "gpus_per_actor=1"), "cuda", torch.bfloat16)  # nothing to measure against
    with pytest.raises(ConfigError, match="gpu_memory must be a size such as 80GiB or 141GB, got 'lots'"):
        _cfg(qwen_72b, "gpu_memory=lots")


def test_a_teacher_that_cannot_be_planned_is_left_to_the_actors_load(tmp_path, caplog):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with caplog.at_level("INFO", logger="logitfuse.capture"):
        fit.check_fit(_cfg(tmp_path, "gpu_memory=80GiB"), "cuda", torch.bfloat16)
    assert "cannot plan the teacher's placement ahead" in caplog.text
