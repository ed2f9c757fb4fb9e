"""Capture job configuration."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import JobConfig, parse_bytes
from pipeline.errors import ConfigError


@dataclass
class CaptureConfig(JobConfig):
    """Settings of one capture run (one model). Fields marked *output* change what is written."""

    input: str = ""  # JSONL / Parquet file, dataset folder, or Hub id
    output: str = ""  # root folder; shards go to <output>/<name>/
    model: str = ""  # local folder, Hub id, or tiny:<name> (built locally)
    revision: str | None = None  # branch, tag or commit of a Hub id (default: main)
    trust_remote_code: bool = False  # run the checkpoint's own modelling code: only when asked
    name: str | None = None  # folder name for this model (default: last part of `model`)
    k: int = 10  # *output* top-k width; 0 = tokens and offsets only (the pivot's tokenisation)
    codec: str = "lossless"  # *output* lossless | quantized (compact blobs) | native (Parquet list columns)
    quant_step: float = 0.04  # *output* quantized codec grid step: every log-prob within step/2
    shard_size: int = 256  # *output* samples per shard (the shard plan)
    max_length: int = 2048  # *output* tokens per sample, prompt included
    overlength: str = "truncate"  # *output* truncate | skip | error
    chat_template: str = "auto"  # *output* auto | always | none
    append_eos: bool = True  # *output* plain rendering: the EOS token is a response target
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # *output* auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"  # sdpa | flash_attention_2 (sdpa with a log line when unusable) | eager | auto
    token_budget: int = 16384  # tokens (padded) per forward micro-batch
    head_chunk: int = 2048  # positions per LM-head chunk
    num_actors: int = 1  # actor pool size; the job uses num_actors × gpus_per_actor GPUs on CUDA
    gpus_per_actor: int = 1  # GPUs of one node that one model spans (accelerate device_map, pipeline-style)
    gpu_memory_fraction: float = 0.85  # share of each GPU the weights may take (the rest: activations, head)
    gpu_memory: str | None = None  # e.g. 80GiB, the size of one GPU: the driver refuses a teacher whose weights do
    #                                not fit on gpus_per_actor of them (default: nvidia-smi on its node, else no check)
    cpus_per_actor: float = 1.0  # fractional on small machines so read/tokenize tasks still run
    torch_threads: int = 0  # 0 = every core of the node
    prefetch_weights: bool = True  # read the weight files into the page cache from the job's start (driver's node)
    limit: int | None = None  # first N samples of the plan only (smoke runs)
    overwrite: bool = False  # replace a folder written with another configuration
    ray_address: str | None = None  # join a cluster; default: RAY_ADDRESS or a local Ray
    progress: bool = True  # progress bars on stderr

    OUTPUT_KEYS = ("k", "codec", "quant_step", "shard_size", "max_length", "overlength", "chat_template",
                   "append_eos", "dtype", "limit")

    def load_options(self):
        """The loading settings the actors need (``pipeline.capture.model.LoadOptions``)."""
        from pipeline.capture.model import LoadOptions

        return LoadOptions(revision=self.revision, trust_remote_code=self.trust_remote_code,
                           attn_implementation=self.attn_implementation, gpus=self.gpus_per_actor,
                           gpu_memory_fraction=self.gpu_memory_fraction)

    def validate(self) -> None:
        """Raise ConfigError naming the field at fault."""
        for f in ("input", "output", "model"):
            if not getattr(self, f):
                raise ConfigError(f"capture: `{f}` is required")
        checks = [
            (self.k >= 0, "k must be >= 0"),
            (self.codec in ("lossless", "quantized", "native"),
             f"codec must be lossless, quantized or native, got {self.codec!r}"),
            (0 < self.quant_step <= 1, "quant_step must be in (0, 1]"),
            (self.shard_size >= 1, "shard_size must be >= 1"),
            (self.max_length >= 2, "max_length must be >= 2"),
            (self.overlength in ("truncate", "skip", "error"),
             f"overlength must be truncate, skip or error, got {self.overlength!r}"),
            (self.chat_template in ("auto", "always", "none"),
             f"chat_template must be auto, always or none, got {self.chat_template!r}"),
            (self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}"),
            (self.token_budget >= 1, "token_budget must be >= 1"),
            (self.head_chunk >= 1, "head_chunk must be >= 1"),
            (self.num_actors >= 1, "num_actors must be >= 1"),
            (self.gpus_per_actor >= 1, "gpus_per_actor must be >= 1"),
            (0 < self.gpu_memory_fraction <= 1, "gpu_memory_fraction must be in (0, 1]"),
            (self.attn_implementation in ("auto", "sdpa", "flash_attention_2", "eager"),
             f"attn_implementation must be auto, sdpa, flash_attention_2 or eager, got {self.attn_implementation!r}"),
            (self.cpus_per_actor > 0, "cpus_per_actor must be > 0"),
            (self.limit is None or self.limit >= 1, "limit must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"capture: {msg}")
        if self.gpu_memory is not None:
            parse_bytes(self.gpu_memory, "capture: gpu_memory")  # a size such as 80GiB, else ConfigError
