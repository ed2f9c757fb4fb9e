"""Where capture puts a causal LM: device, dtype, attention kernel, one or several GPUs. Specs, tokenizers and
fingerprints are :mod:`pipeline.modeling.load`'s."""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

import torch

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.modeling.load import load_causal_lm

log = logging.getLogger("logitfuse.capture")


@dataclass(frozen=True)
class LoadOptions:
    """How to load a checkpoint: the capture config's loading settings, handed to the actors."""

    revision: str | None = None  # branch, tag or commit of a Hub id
    trust_remote_code: bool = False  # run the checkpoint's own modelling code: only when asked
    attn_implementation: str = "sdpa"  # sdpa | flash_attention_2 | eager | auto (flash-attn when usable)
    gpus: int = 1  # GPUs one model spans (pipeline-style, accelerate device_map) when > 1
    gpu_memory_fraction: float = 0.85  # share of each GPU the weights may take; the rest: activations, head chunk


def resolve_device(device: str) -> str:
    """``auto`` → cuda when available, else cpu; ``cuda`` without a GPU is a ConfigError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=auto or device=cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` → bf16 on GPU, fp32 on CPU."""
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if dtype not in table:
        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return table[dtype]


def flash_attention_usable(device: str, dtype: torch.dtype) -> str | None:
    """None when flash-attention 2 can run here, else why not."""
    if device != "cuda":
        return "it needs CUDA"
    if dtype not in (torch.bfloat16, torch.float16):
        return f"it needs bf16 or fp16, not {str(dtype).removeprefix('torch.')}"
    if importlib.util.find_spec("flash_attn") is None:
        return "the flash_attn package is not installed"
    return None


def resolve_attn(requested: str, device: str, dtype: torch.dtype) -> str:
    """The attention kernel to load with: ``flash_attention_2`` falls back to ``sdpa`` with a log line saying
    why; ``auto`` takes flash-attention when usable, else sdpa."""
    if requested not in ("auto", "sdpa", "flash_attention_2", "eager"):
        raise ConfigError(f"attn_implementation must be auto, sdpa, flash_attention_2 or eager, got {requested!r}")
    if requested in ("auto", "flash_attention_2"):
        why = flash_attention_usable(device, dtype)
        if why is None:
            return "flash_attention_2"
        if requested == "flash_attention_2":
            log.warning("attn_implementation=flash_attention_2 falls back to sdpa: %s", why)
        return "sdpa"
    return requested


def gpu_max_memory(gpus: int, fraction: float) -> dict[int, int]:
    """accelerate's ``max_memory``: ``fraction`` of each visible GPU's memory, and no CPU or disk offload."""
    visible = torch.cuda.device_count()
    if visible < gpus:
        raise ModelLoadError(f"gpus_per_actor={gpus} but this actor sees {visible} GPU(s) "
                             f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return {i: int(torch.cuda.get_device_properties(i).total_memory * fraction) for i in range(gpus)}


def load_model(spec: str, device: str, dtype: torch.dtype, opts: LoadOptions = LoadOptions()):
    """The causal LM in eval mode, without KV cache; ModelLoadError naming the model on failure.

    On CUDA the weights load straight onto the GPU; with ``opts.gpus > 1`` accelerate places whole decoder layers
    on the GPUs in order (``device_map="auto"``, at most ``gpu_memory_fraction`` of each), pipeline-style: a
    micro-batch flows GPU 0 → 1 → … and the hidden states hop once per boundary.
    """
    kwargs = dict(dtype=dtype, revision=opts.revision, trust_remote_code=opts.trust_remote_code,
                  attn_implementation=resolve_attn(opts.attn_implementation, device, dtype))
    if device == "cuda":
        kwargs["device_map"] = {"": 0} if opts.gpus == 1 else "auto"
        if opts.gpus > 1:
            kwargs["max_memory"] = gpu_max_memory(opts.gpus, opts.gpu_memory_fraction)
    model = load_causal_lm(spec, **kwargs)
    placed = set(map(str, (getattr(model, "hf_device_map", None) or {}).values()))
    if placed & {"cpu", "disk"}:
        raise ModelLoadError(f"the model {spec!r} does not fit on gpus_per_actor={opts.gpus} GPU(s) at "
                             f"gpu_memory_fraction={opts.gpu_memory_fraction}: accelerate offloaded layers to "
                             f"{sorted(placed & {'cpu', 'disk'})}; raise gpus_per_actor")
    if device != "cuda":
        model = model.to(device)
    return model
