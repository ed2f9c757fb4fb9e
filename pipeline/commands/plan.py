"""``logitfuse plan train CONFIG [key=value …] --gpus N --gpu-memory 80GiB``: per-rank training memory, no weights."""

from __future__ import annotations

import json

EPILOG = """The pivot is built on the meta device from pivot_model's config.json (a local folder, tiny:<name>, or a
shipped shape: jobs/configs/models/<name>) and sharded exactly as training shards it, under a fake process group of
--gpus ranks. Exit 0 when it fits, 1 when it does not."""


def add_arguments(p, name: str) -> None:
    """WHAT (train), CONFIG, overrides and the machine."""
    p.add_argument("what", choices=["train"], help="the job to plan")
    p.add_argument("config", nargs="?", help="train YAML config (optional when every field is given as key=value)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. activation_checkpointing=false")
    p.add_argument("--gpus", type=int, help="ranks (default: num_workers of the config)")
    p.add_argument("--gpu-memory", default="80GiB", help="memory per GPU, e.g. 80GiB, 141GB (default 80GiB)")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON line")


def run(args) -> int:
    """Print the plan; exit 1 when it does not fit."""
    from pipeline.train.config import TrainConfig
    from pipeline.train.plan import plan_train, render

    config, overrides = args.config, list(args.overrides)
    if config and "=" in config:  # no file: only overrides
        config, overrides = None, [config] + overrides
    plan = plan_train(TrainConfig.load(config, overrides), args.gpus, args.gpu_memory)
    print(json.dumps(plan.to_dict()) if args.json else render(plan))
    return 0 if plan.fits else 1
