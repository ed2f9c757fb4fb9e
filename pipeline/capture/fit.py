"""Do the teacher's weights fit on ``gpus_per_actor`` GPUs? Answered in the driver, before an actor loads a byte.

With ``gpus_per_actor: N`` the actor loads the model with ``device_map="auto"`` and ``max_memory`` =
``gpu_memory_fraction`` of each of its N GPUs: accelerate places whole decoder layers on GPU 0, 1, … and what is
left over would go to CPU or disk, which the actor refuses (``pipeline/capture/model.py``) after minutes of
loading. Here transformers' own placement runs on the model built on the ``meta`` device from its config (no
weight is read, a 72B model takes ~2 s on CPU), so a teacher too large for its GPUs is refused at once, with the
``gpus_per_actor`` that would hold it. Weights only: activations and the head's chunks live in the remaining
``1 - gpu_memory_fraction``, which ``token_budget`` and ``head_chunk`` bound.

The GPU size comes from ``gpu_memory`` (``80GiB``), else from ``nvidia-smi`` on the driver's node (no CUDA
context is made in the driver); with neither (a driver without GPUs and no setting) there is no check.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections import Counter

from pipeline.config import parse_bytes
from pipeline.errors import ConfigError

GIB = 1 << 30
MAX_GPUS = 64
log = logging.getLogger("logitfuse.capture")


def local_gpu_bytes() -> int | None:
    """Memory of the smallest GPU ``nvidia-smi`` lists on this node; None without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
        return min(int(float(x)) for x in out.split()) << 20 if out.split() else None  # MiB
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def teacher_on_meta(spec: str, dtype, revision: str | None = None, trust_remote_code: bool = False):
    """The teacher built from its config on the ``meta`` device, in ``dtype``: shapes and sizes, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipeline.modeling.load import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(spec), revision=revision,
                                        trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)


def placement(model, gpus: int, per_gpu: int) -> Counter:
    """Modules per device (``0``, ``1``, …, or ``cpu`` / ``disk`` for what does not fit) of the placement
    ``from_pretrained(device_map="auto", max_memory={i: per_gpu})`` computes for ``model``."""
    max_memory = {i: per_gpu for i in range(gpus)}
    quiet = logging.getLogger("accelerate.utils.modeling"), logging.getLogger("transformers.integrations.accelerate")
    levels = [q.level for q in quiet]
    for q in quiet:  # "Device 0 is not available": true of the driver, not of the actor this plans for
        q.setLevel(logging.ERROR)
    try:
        try:  # what from_pretrained itself calls (balanced memory, then the layer placement)
            from transformers.integrations.accelerate import _get_device_map

            device_map = _get_device_map(model, "auto", max_memory, None)
        except (ImportError, TypeError):  # another transformers: accelerate's placement, unbalanced
            from accelerate import infer_auto_device_map

            device_map = infer_auto_device_map(model, max_memory=max_memory,
                                               no_split_module_classes=model._no_split_modules)
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    return Counter(str(d) for d in device_map.values())


def fits(model, gpus: int, per_gpu: int) -> bool:
    return not set(placement(model, gpus, per_gpu)) & {"cpu", "disk"}


def gpus_needed(model, per_gpu: int, start: int = 1) -> int | None:
    """The fewest GPUs of ``per_gpu`` bytes that hold ``model`` (from ``start``), None beyond MAX_GPUS."""
    return next((n for n in range(start, MAX_GPUS + 1) if fits(model, n, per_gpu)), None)


def check_fit(cfg, device: str, dtype) -> None:
    """ConfigError when ``cfg.model`` in ``dtype`` does not fit on ``cfg.gpus_per_actor`` GPUs (CUDA only)."""
    if device != "cuda":
        return
    total = parse_bytes(cfg.gpu_memory, "gpu_memory") if cfg.gpu_memory else local_gpu_bytes()
    if total is None:
        return
    per_gpu = int(total * cfg.gpu_memory_fraction)
    try:
        model = teacher_on_meta(cfg.model, dtype, cfg.revision, cfg.trust_remote_code)
        if fits(model, cfg.gpus_per_actor, per_gpu):
            return
    except Exception as e:  # noqa: BLE001 (remote code that cannot init on meta, an odd config): a plan, not a gate
        log.info("capture: cannot plan the teacher's placement ahead (%s: %s); the actor's load will tell",
                 type(e).__name__, e)
        return
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    need = gpus_needed(model, per_gpu, cfg.gpus_per_actor + 1)
    advice = f"set gpus_per_actor={need}" if need else f"it does not fit on {MAX_GPUS} such GPUs"
    raise ConfigError(
        f"capture: {cfg.model!r} in {str(dtype).removeprefix('torch.')} has {weights / GIB:.1f} GiB of weights, "
        f"which do not fit on gpus_per_actor={cfg.gpus_per_actor} GPU(s) of {total / GIB:.1f} GiB at "
        f"gpu_memory_fraction={cfg.gpu_memory_fraction} (whole decoder layers per GPU, as accelerate places "
        f"them): {advice}, or raise gpu_memory_fraction")
