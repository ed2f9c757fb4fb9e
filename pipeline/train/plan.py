"""The training memory plan: per-rank bytes of a train config on N GPUs, before any weight is loaded.

The pivot is built on the ``meta`` device from its config.json, wrapped as training wraps it (``Student``) and
sharded by ``parallelize`` under a fake process group of N ranks, so parameters, gradients and optimizer state are
counted from the shards FSDP really makes. Activations and the chunked head follow the formulas in
``pipeline.train.activations``. ``check_fits`` turns a plan that does not fit into a TrainError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.config import parse_bytes
from pipeline.errors import ConfigError, TrainError
from pipeline.train.activations import LayerShape, head_bytes, model_activation_bytes
from pipeline.train.config import TrainConfig

SHAPES_DIR = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "models"  # shipped shape-only configs
GIB = 1 << 30
def shipped_shapes() -> list[str]:
    """Names of the shape-only model configs shipped in jobs/configs/models/."""
    return sorted(p.parent.name for p in SHAPES_DIR.glob("*/config.json"))


def pivot_config(spec: str):
    """The pivot's transformers config from a local folder, ``tiny:<name>`` or a shipped shape name."""
    from transformers import AutoConfig

    from pipeline.modeling.load import resolve_model_path

    path = Path(resolve_model_path(spec)) if spec.startswith("tiny:") else Path(spec)
    if not (path / "config.json").is_file() and (SHAPES_DIR / spec / "config.json").is_file():
        path = SHAPES_DIR / spec
    if not (path / "config.json").is_file():
        raise ConfigError(f"pivot_model={spec!r}: the plan needs a local folder with config.json, tiny:<name>, or a "
                          f"shipped shape ({', '.join(shipped_shapes())})")
    return AutoConfig.from_pretrained(path)


def micro_batch_tokens(cfg: TrainConfig) -> int:
    """Padded tokens of one micro-batch: token_budget, else batch_size × max_length."""
    if cfg.token_budget is not None:
        return cfg.token_budget
    if cfg.max_length is None:
        raise ConfigError("plan: set token_budget, or max_length (with batch_size), to size the activations")
    return cfg.batch_size * cfg.max_length


@dataclass
class MemoryPlan:
    """Per-rank bytes of one training configuration; ``total`` adds every item (an upper bound: the gradient
    reduce buffers peak at the end of the backward, when most activations are already freed)."""

    pivot_model: str
    architecture: str
    parameters_total: int
    gpus: int
    rank: int
    parallelism: str
    precision: str
    activation_checkpointing: bool
    tokens_per_micro_batch: int
    head_chunk: int
    k: int
    parameters: int  # sharded fp32 master weights
    gradients: int  # sharded fp32 gradients
    optimizer: int  # AdamW exp_avg + exp_avg_sq (fp32) + one step counter per tensor
    gathered: int  # unsharded compute-dtype params: root (its forward and backward span the step) + 2 layers
    reduce_buffers: int  # unsharded grads of the root and one layer + the largest reduce-scatter input (fp32)
    activations: int  # the configured one of the two below
    activations_full: int
    activations_checkpointed: int
    head: int
    total: int
    gpu_memory: int
    fits: bool
    headroom: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _student(config, cfg: TrainConfig, parallelism: str, world: int):
    """The pivot on ``meta``, wrapped and parallelized exactly as the training loop does it."""
    from torch.distributed.device_mesh import init_device_mesh
    from transformers import AutoModelForCausalLM

    from pipeline.train.loop import Student
    from pipeline.train.parallel import decoder_layers, parallelize

    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    student, layers = Student(lm), decoder_layers(lm)  # before FSDP renames their classes
    mesh = init_device_mesh("cpu", (world,))  # the same shards on any machine: CUDA need not be there
    parallelize(student, lm, parallelism=parallelism, precision=cfg.precision,
                activation_checkpointing=cfg.activation_checkpointing, mesh=mesh)
    return student, layers


def plan_train(cfg: TrainConfig, gpus: int | None, gpu_memory: str | int, rank: int = 0) -> MemoryPlan:
    """Plan ``cfg`` on ``gpus`` ranks (None: cfg.num_workers) of ``gpu_memory`` each (bytes or "80GiB"), as seen by
    ``rank`` (rank 0 holds the largest shards)."""
    from pipeline.train.holdings import fake_world, holdings
    from pipeline.train.parallel import mixed_precision

    gpus = cfg.num_workers if gpus is None else gpus
    if gpus < 1:
        raise ConfigError(f"gpus must be >= 1, got {gpus}")
    memory = parse_bytes(gpu_memory)
    cfg = dataclasses.replace(cfg, num_workers=gpus)
    parallelism = cfg.resolved_parallelism()
    config = pivot_config(cfg.pivot_model)
    tokens = micro_batch_tokens(cfg)
    with fake_world(gpus, rank):
        student, layers = _student(config, cfg, parallelism, gpus)
        held = holdings(student, layers)
    master = held.local_bytes // max(held.local_numel, 1)
    mp = mixed_precision(cfg.precision)
    compute = mp.param_dtype.itemsize if mp is not None else master
    reduce = mp.reduce_dtype.itemsize if mp is not None and mp.reduce_dtype is not None else master
    step_counter = torch.tensor(0.0).element_size()  # AdamW keeps its step as a 0-d float tensor per parameter
    if parallelism == "fsdp":
        gathered = (held.root_numel + 2 * held.largest_layer_numel) * compute
        largest = max(held.root_numel, held.largest_layer_numel)
        reduce_buffers = (held.root_numel + held.largest_layer_numel) * compute + largest * reduce
    else:  # DDP: full replicas; bf16 compute casts one layer and the root at a time; the reducer's buckets
        gathered = (held.root_numel + held.largest_layer_numel) * compute if compute != master else 0
        reduce_buffers = held.local_numel * reduce
    shape = LayerShape.from_config(config)
    full = model_activation_bytes(shape, tokens, compute, checkpointing=False)
    checkpointed = model_activation_bytes(shape, tokens, compute, checkpointing=True)
    activations = checkpointed if cfg.activation_checkpointing else full
    head = head_bytes(shape, tokens, cfg.head_chunk, cfg.loss.k, compute)
    parts = dict(parameters=held.local_bytes, gradients=held.local_bytes,
                 optimizer=2 * held.local_bytes + held.tensors * step_counter, gathered=gathered,
                 reduce_buffers=reduce_buffers, activations=activations, head=head)
    total = sum(parts.values())
    return MemoryPlan(pivot_model=cfg.pivot_model, architecture=type(config).__name__.removesuffix("Config"),
                      parameters_total=held.total_numel, gpus=gpus, rank=rank, parallelism=parallelism,
                      precision=cfg.precision, activation_checkpointing=cfg.activation_checkpointing,
                      tokens_per_micro_batch=tokens, head_chunk=cfg.head_chunk, k=cfg.loss.k,
                      activations_full=full, activations_checkpointed=checkpointed, total=total, gpu_memory=memory,
                      fits=total <= memory, headroom=memory - total, **parts)


def check_fits(cfg: TrainConfig, gpus: int | None, gpu_memory: str | int) -> MemoryPlan:
    """The plan of ``cfg``; TrainError with its numbers when one rank needs more than ``gpu_memory``."""
    plan = plan_train(cfg, gpus, gpu_memory)
    if not plan.fits:
        big = sorted(((k, getattr(plan, k)) for k in ITEMS), key=lambda kv: -kv[1])[:3]
        largest = ", ".join(f"{k} {_gib(v)}" for k, v in big)
        raise TrainError(
            f"the memory plan needs {_gib(plan.total)} per GPU on {plan.gpus} GPUs, more than gpu_memory="
            f"{_gib(plan.gpu_memory)} (largest: {largest}; activation_checkpointing="
            f"{str(plan.activation_checkpointing).lower()}, {plan.tokens_per_micro_batch} tokens per micro-batch, "
            f"head_chunk={plan.head_chunk}): use more GPUs, turn on activation_checkpointing, or lower token_budget "
            f"/ head_chunk (see `logitfuse plan train`)")
    return plan


ITEMS = {
    "parameters": "sharded fp32 master weights",
    "gradients": "sharded fp32 gradients",
    "optimizer": "AdamW: 2 fp32 moments + step counters",
    "gathered": "unsharded compute-dtype params: root + 2 layers",
    "reduce_buffers": "unsharded grads (root + 1 layer) + fp32 reduce-scatter input",
    "activations": "saved activations of one micro-batch",
    "head": "chunked head: 2 fp32 [chunk,V] + fp32 [V,H] grad + top-k",
}


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def render(plan: MemoryPlan) -> str:
    """The plan as a Markdown table and a verdict line."""
    ac = "on" if plan.activation_checkpointing else "off"
    lines = [f"{plan.pivot_model} ({plan.architecture}, {plan.parameters_total / 1e9:.2f}B parameters) on "
             f"{plan.gpus} GPUs, {plan.parallelism}, {plan.precision}, activation checkpointing {ac}, "
             f"{plan.tokens_per_micro_batch} tokens per micro-batch, head_chunk {plan.head_chunk}, k {plan.k}; "
             f"per rank (rank {plan.rank}):", "", "| item | GiB | what |", "| --- | ---: | --- |"]
    for key, what in ITEMS.items():
        lines.append(f"| {key} | {getattr(plan, key) / GIB:.2f} | {what} |")
    other, other_ac = ("without", "off") if plan.activation_checkpointing else ("with", "on")
    alt = plan.activations_full if plan.activation_checkpointing else plan.activations_checkpointed
    lines += [f"| **total** | **{plan.total / GIB:.2f}** | of {plan.gpu_memory / GIB:.2f} GiB |", "",
              f"activations {other} checkpointing would be {alt / GIB:.2f} GiB (total "
              f"{(plan.total - plan.activations + alt) / GIB:.2f} GiB, checkpointing {other_ac})",
              f"{'FITS' if plan.fits else 'DOES NOT FIT'}: headroom {plan.headroom / GIB:.2f} GiB "
              f"({100 * plan.headroom / plan.gpu_memory:.1f} % of {plan.gpu_memory / GIB:.2f} GiB)"]
    return "\n".join(lines)
