"""How the pivot is spread over the training ranks: FSDP2 (one ``fully_shard`` per decoder layer and one on the root)
or DDP, optional bf16 compute and per-layer activation checkpointing.

The same function shards the real model inside a Ray Train worker and a ``meta``-device model under torch's ``fake``
process group for the memory plan, so the plan measures exactly what training holds.
"""

from __future__ import annotations

import torch
from torch import nn

PARALLELISMS = ("fsdp", "ddp")
PRECISIONS = ("fp32", "bf16")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a Hugging Face causal LM, found by the class names it declares unsplittable."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__}: cannot find its decoder layers (no _no_split_modules match)")
    return layers


def apply_activation_checkpointing(model: nn.Module, layers: list[nn.Module]) -> list[nn.Module]:
    """Recompute each layer's activations in the backward instead of keeping them (non-reentrant); returns the
    wrappers, which take the layers' places in ``model``."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    wrapped = []
    for layer in layers:
        parent, name = _parent_of(model, layer)
        wrapped.append(checkpoint_wrapper(layer))
        setattr(parent, name, wrapped[-1])
    return wrapped


def _parent_of(root: nn.Module, child: nn.Module) -> tuple[nn.Module, str]:
    for module in root.modules():
        for name, c in module.named_children():
            if c is child:
                return module, name
    raise ValueError("module is not part of the model")


def mixed_precision(precision: str):
    """FSDP2 policy: bf16 parameters in compute, fp32 gradient reduction; None for fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision == "fp32":
        return None
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard_fsdp(model: nn.Module, *, layers: list[nn.Module], precision: str = "fp32", mesh=None,
               reshard_after_forward: bool | None = None) -> nn.Module:
    """``fully_shard`` each of ``layers`` and then ``model`` (the root holds embeddings, final norm and head).

    ``reshard_after_forward=None`` lets FSDP2 reshard the layers after their forward but keep the root gathered until
    its backward (an explicit True would also free the root and gather embeddings and head a second time per step).
    """
    from torch.distributed.fsdp import fully_shard

    kwargs = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    mp = mixed_precision(precision)
    if mp is not None:
        kwargs["mp_policy"] = mp
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def parallelize(model: nn.Module, lm: nn.Module, *, parallelism: str, precision: str = "fp32",
                activation_checkpointing: bool = False, mesh=None) -> nn.Module:
    """Apply activation checkpointing and FSDP2 to ``model`` (whose decoder layers are those of ``lm``); for
    ``ddp`` only activation checkpointing (the DDP wrapper is added by the caller)."""
    if parallelism not in PARALLELISMS:
        raise ValueError(f"parallelism must be one of {PARALLELISMS}, got {parallelism!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    layers = decoder_layers(lm)
    if activation_checkpointing:
        if getattr(lm, "supports_gradient_checkpointing", False):
            # Transformers' own per-layer checkpointing (non-reentrant): wrapping its layers in checkpoint_wrapper
            # fails in the forward under transformers 5 (attention-mask shape mismatch in sdpa).
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            layers = apply_activation_checkpointing(lm, layers)
    if parallelism == "fsdp":
        shard_fsdp(model, layers=layers, precision=precision, mesh=mesh)
    return model
