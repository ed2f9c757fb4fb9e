"""Train job configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config import JobConfig
from pipeline.errors import ConfigError
from pipeline.losses.objective import LossConfig

PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")  # Ray placement group strategies


@dataclass
class TrainSource:
    """One source: its aligned shard folder and weight w_s (None: 1 / number of sources)."""

    shards: str = ""  # <align output>/aligned/<source>
    weight: float | None = None
    name: str | None = None  # for metrics (default: the folder name)


@dataclass
class TrainConfig(JobConfig):
    """Settings of one fusion run. The loss section is documented in pipeline/losses/objective.py."""

    pivot_model: str = ""  # local folder, Hub id, or tiny:<name>
    pivot_shards: str = ""  # the pivot's capture folder (its tokens; k may be 0)
    sources: list[TrainSource] = field(default_factory=list)  # none: SFT only
    output: str = ""  # runs go to <output>/<run_name>/: a local (or shared) folder, s3://bucket/prefix or gs://…
    run_name: str = "fusion"  # rerunning the same name resumes from its latest checkpoint
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 1  # passes over the pivot shards
    max_steps: int | None = None  # stop early (counted over all epochs)
    batch_size: int = 8  # samples per worker per step
    shuffle_shards: int = 8  # rows are shuffled across this many shards at a time (memory: that many per set)
    lr: float = 5e-4  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 10  # linear warm-up to lr
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    grad_clip: float = 1.0  # 0 disables
    seed: int = 0  # data order (shards and rows) and the random generators (python, numpy, torch)
    head_chunk: int = 1024  # positions per LM-head chunk (the loss never holds [B, T, V] at once)
    checkpoint_every: int = 50  # steps
    keep_checkpoints: int = 2  # complete checkpoints kept (older ones pruned)
    resume_from: str | None = None  # a checkpoint folder to start from (default: the run's latest)
    force: bool = False  # resume even when the shards or the config changed
    nan_policy: str = "error"  # error | skip: NaN/+inf in stored log-probs
    # scale (see README "Training large pivots"): how the pivot is held and stepped
    parallelism: str = "auto"  # auto | fsdp | ddp  (auto: fsdp when num_workers > 1, else ddp)
    precision: str = "fp32"  # fp32 | bf16 (bf16 compute, fp32 master weights, fp32 gradient reduction and losses)
    activation_checkpointing: bool = False  # recompute each decoder layer's activations in the backward
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    token_budget: int | None = None  # max padded tokens per micro-batch (None: batch_size samples per micro-batch)
    max_length: int | None = None  # longest sample in tokens (longer ones are refused, naming the sample)
    pivot_dtype: str = "float32"  # dtype the pivot's weights are loaded in (master weights stay fp32 for training)
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2 (when installed)
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW (beta1, beta2)
    report_to: list[str] = field(default_factory=list)  # [] or [tensorboard]: event files beside metrics.jsonl
    max_shard_size: str = "5GB"  # safetensors shard size of the final model
    gpu_memory: str | None = None  # e.g. 80GiB: the driver refuses, before any weight loads, a run whose memory plan
    #                                (`logitfuse plan train`, one rank per worker) needs more per GPU
    # Ray Train workers; 0 = Ray Train's local mode: the loop runs in this process, with no Ray instance and no
    # worker actors (for debugging, small runs, and benchmarks that train many short runs)
    num_workers: int = 1  # Ray Train workers, one rank each; 0 = local mode: the loop runs in this process
    use_gpu: bool = False  # one GPU per worker, nccl
    cpus_per_worker: float = 1.0  # CPUs a worker reserves (fractional on small machines)
    placement_strategy: str = "PACK"  # Ray Train workers: PACK | SPREAD (over nodes) | STRICT_PACK | STRICT_SPREAD
    torch_threads: int = 0  # 0 = cores of the node / workers
    ray_address: str | None = None  # join a cluster; default: RAY_ADDRESS or a local Ray
    progress: bool = True  # progress bars on stderr

    # fields that change the result: a resumed run must match them
    # (num_workers and parallelism are not: a checkpoint resumes at another world size, FSDP or DDP)
    RESULT_KEYS = ("pivot_model", "loss", "epochs", "max_steps", "batch_size", "shuffle_shards", "lr", "weight_decay",
                   "warmup_steps", "schedule", "grad_clip", "seed", "nan_policy", "grad_accum_steps", "token_budget",
                   "precision", "max_length", "adam_betas")

    def resolved_parallelism(self) -> str:
        """fsdp or ddp: ``auto`` shards as soon as there is more than one worker."""
        if self.parallelism != "auto":
            return self.parallelism
        return "fsdp" if self.num_workers > 1 else "ddp"

    def validate(self) -> None:
        """Raise ConfigError naming the field at fault."""
        for f in ("pivot_model", "pivot_shards", "output"):
            if not getattr(self, f):
                raise ConfigError(f"train: `{f}` is required")
        for i, s in enumerate(self.sources):
            if not s.shards:
                raise ConfigError(f"train: sources[{i}].shards is required")
            if s.weight is not None and s.weight < 0:
                raise ConfigError(f"train: sources[{i}].weight must be >= 0")
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"), (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.shuffle_shards >= 1, "shuffle_shards must be >= 1"),
            (self.lr > 0, "lr must be > 0"), (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.schedule in ("cosine", "constant"), f"schedule must be cosine or constant, got {self.schedule!r}"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (self.nan_policy in ("error", "skip"), f"nan_policy must be error or skip, got {self.nan_policy!r}"),
            (self.num_workers >= 0, "num_workers must be >= 0 (0: local mode, no Ray workers)"),
            (self.head_chunk >= 1, "head_chunk must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.parallelism in ("auto", "fsdp", "ddp"), f"parallelism must be auto, fsdp or ddp, got {self.parallelism!r}"),
            (self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}"),
            (self.grad_accum_steps >= 1, "grad_accum_steps must be >= 1"),
            (self.token_budget is None or self.token_budget >= 1, "token_budget must be >= 1"),
            (self.max_length is None or self.max_length >= 2, "max_length must be >= 2"),
            (self.pivot_dtype in ("float32", "bfloat16", "float16"),
             f"pivot_dtype must be float32, bfloat16 or float16, got {self.pivot_dtype!r}"),
            (len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
             f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}"),
            (self.placement_strategy in PLACEMENT_STRATEGIES,
             f"placement_strategy must be one of {', '.join(PLACEMENT_STRATEGIES)}, got {self.placement_strategy!r}"),
            (set(self.report_to) <= {"tensorboard"}, f"report_to may hold only tensorboard, got {self.report_to!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"train: {msg}")
        self.loss.validate()
        if self.sources and self.loss.lambda_uld == self.loss.lambda_gld == self.loss.lambda_kl == 0:
            raise ConfigError("train: sources are given but loss.lambda_uld, lambda_gld and lambda_kl are all 0")
