"""The pivot inside a training worker: built on the meta device, sharded, then loaded from rank 0's read of the
safetensors, so host memory per node never holds one full copy per worker; and the final HF model gathered back.

Parameters are created on ``meta`` while buffers are computed for real (``inv_freq`` of rotary embeddings is not
in the checkpoint: it is derived from the config at construction and must survive ``to_empty``). Tied weights stay
one parameter through sharding; the checkpoint may hold only one of their names.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import ConfigError, TrainError
from pipeline.io.fs import Location, location
from pipeline.losses.chunked_head import chunked_head
from pipeline.modeling.logit_transform import logit_transform

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Student(nn.Module):
    """The pivot as FSDP/DDP see it (the FSDP root): base model + chunked LM head, returning what the losses read.

    Under FSDP2 the root's pre-forward all-gathers the embeddings, final norm and LM head once per forward and,
    being the root, keeps them unsharded until its backward: the head weight reaches the chunked head's autograd
    Function as one plain full tensor, gathered once per micro-batch, never once per chunk.
    """

    autocast: torch.dtype | None = None  # DDP + bf16: the decoder under torch.autocast, the head in fp32

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.transform = logit_transform(lm.config)

    def forward(self, input_ids, attention_mask, targets, positions, gather_ids, k: int, chunk: int):
        with torch.autocast(input_ids.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.autocast is not None:
            hidden = hidden.float()
        head = self.lm.get_output_embeddings()
        weight = head.weight
        if hasattr(weight, "full_tensor"):  # a DTensor here would make every chunk's matmul a collective
            raise TrainError("the LM head weight is still sharded inside the forward: the FSDP root must be the "
                             "Student module")
        out = chunked_head(hidden, weight, targets, k, chunk, bias=head.bias, gather_ids=gather_ids,
                           positions=positions, transform=self.transform)
        return out.target_logprobs, out.topk_logprobs, out.topk_ids, out.gathered_logprobs


@contextlib.contextmanager
def _params_on_meta():
    """Create parameters on ``meta`` and everything else (buffers) as usual."""
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        if param is not None and param.device.type != "meta":  # a meta one (a tied weight) stays the same object
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def build_meta(model_path: str, attn_implementation: str):
    """The causal LM with parameters on ``meta`` and real buffers, in fp32 (the master weights' dtype)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError("train: attn_implementation=flash_attention_2 needs the flash-attn package; use sdpa")
    config = AutoConfig.from_pretrained(model_path)
    with _params_on_meta():
        lm = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=torch.float32)
    return lm


def materialize(model: nn.Module, device: torch.device) -> None:
    """Allocate the (possibly sharded) meta parameters on ``device``, keeping the buffers' computed values."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    model.to_empty(device=device)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name].to(device))


def weight_files(model_path: str) -> list[Path]:
    """The safetensors files of a saved model (one file, or the shards its index lists)."""
    folder = Path(model_path)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return [folder / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    if (folder / "model.safetensors").exists():
        return [folder / "model.safetensors"]
    raise TrainError(f"{folder}: no model.safetensors or model.safetensors.index.json to load the pivot from")


def read_full_state(model_path: str, lm: nn.Module, dtype: torch.dtype, prefix: str) -> dict:
    """The checkpoint's tensors in ``dtype`` under ``prefix``, with every name a tied parameter goes by."""
    from safetensors.torch import load_file

    sd = {}
    for f in weight_files(model_path):
        sd.update({k: v.to(dtype) for k, v in load_file(f).items()})
    names: dict[int, list[str]] = {}
    for name, p in lm.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    for aliases in names.values():
        have = [a for a in aliases if a in sd]
        for a in aliases:
            if a not in sd and have:
                sd[a] = sd[have[0]]
    persistent = {name for name, _ in lm.state_dict().items()}
    missing = sorted(persistent - set(sd))
    if missing:
        raise TrainError(f"{model_path}: the checkpoint lacks {missing[:3]} ({len(missing)} tensors)")
    return {prefix + k: v for k, v in sd.items() if k in persistent}


def load_pivot(model: nn.Module, lm: nn.Module, model_path: str, rank: int, dtype: torch.dtype) -> None:
    """Fill the materialised (sharded or replicated) ``model`` from rank 0's read of the weights, broadcast."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    full = read_full_state(model_path, lm, dtype, prefix="lm.") if rank == 0 else {}
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def save_final(model: nn.Module, lm: nn.Module, rank: int, out: str | Path | Location, tokenizer_spec: str,
               max_shard_size: str) -> None:
    """Gather the full weights on rank 0 only (on CPU, one copy) and save an HF folder with ``max_shard_size``
    safetensors shards. Every rank must call it (the gather is collective). A local ``out`` is written to
    ``<out>.tmp`` then renamed; an object-store one is saved to a local temporary folder on rank 0's node, then
    uploaded one object per file with the completion record last (``pipeline.train.storage.upload_folder``)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return
    from pipeline.modeling.load import load_tokenizer
    from pipeline.train.storage import upload_folder

    sd = {k.removeprefix("lm."): v for k, v in full.items()}
    del full
    out = location(out)
    if not out.local:
        with tempfile.TemporaryDirectory(prefix="logitfuse-model-") as tmp:
            lm.save_pretrained(tmp, state_dict=sd, max_shard_size=max_shard_size)
            load_tokenizer(tokenizer_spec).save_pretrained(tmp)
            upload_folder(tmp, out)
        return
    out = out.as_path()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    lm.save_pretrained(tmp, state_dict=sd, max_shard_size=max_shard_size)
    load_tokenizer(tokenizer_spec).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
