"""What one rank holds of a parallelized model: its local parameter shards and the FSDP groups it gathers.

The memory plan shards a ``meta``-device model under torch's ``fake`` process group (``fake_world``), so the numbers
come from the sharding training itself applies (``pipeline.train.parallel``), at any world size, on one CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import TrainError


@contextmanager
def fake_world(world: int, rank: int = 0) -> Iterator[None]:
    """A default process group of ``world`` fake ranks (this process is ``rank``), destroyed on exit."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise TrainError("the memory plan builds its own fake process group; call it from a process without one "
                         "(the train driver or the CLI), not from inside a training worker")
    if world < 1 or not 0 <= rank < world:
        raise TrainError(f"gpus must be >= 1 and the rank in [0, gpus), got gpus={world}, rank={rank}")
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def local(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` this rank stores: a DTensor's local shard, any other tensor whole."""
    return t.to_local() if hasattr(t, "to_local") else t


@dataclass(frozen=True)
class Holdings:
    """Per-rank counts of a parallelized model.

    local_numel / local_bytes: this rank's parameter storage (FSDP: its shards; DDP: everything); tensors: number
    of parameter tensors (each gets an AdamW step counter); root_numel: parameters the root group gathers
    (embeddings, final norm, LM head); largest_layer_numel: the biggest other group's unsharded size.
    """

    local_numel: int
    local_bytes: int
    tensors: int
    total_numel: int
    root_numel: int
    largest_layer_numel: int


def holdings(model: nn.Module, layers: list[nn.Module]) -> Holdings:
    """Count what this rank holds of ``model`` after ``parallelize``: its FSDP groups, or for DDP (no groups) the
    decoder ``layers`` and the rest as the root."""
    from torch.distributed.fsdp import FSDPModule

    params = list(model.parameters())
    locals_ = [local(p) for p in params]
    total = sum(p.numel() for p in params)  # a DTensor's numel is the global one
    groups = [m for m in model.modules() if isinstance(m, FSDPModule)]
    sizes = {}
    for g in groups:
        nested = {id(p) for h in groups if h is not g and _contains(g, h) for p in h.parameters()}
        sizes[g] = sum(p.numel() for p in g.parameters() if id(p) not in nested)
    if not sizes:
        sizes = {layer: sum(p.numel() for p in layer.parameters()) for layer in layers}
        sizes[model] = total - sum(sizes.values())
    root = sizes[model]
    layer_sizes = [n for g, n in sizes.items() if g is not model]
    return Holdings(local_numel=sum(t.numel() for t in locals_),
                    local_bytes=sum(t.numel() * t.element_size() for t in locals_), tensors=len(params),
                    total_numel=total, root_numel=root, largest_layer_numel=max(layer_sizes, default=0))


def _contains(outer: nn.Module, inner: nn.Module) -> bool:
    return any(m is inner for m in outer.modules())
