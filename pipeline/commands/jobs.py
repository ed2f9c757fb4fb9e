"""``logitfuse capture|align|train CONFIG [key=value …]``: the same entry points as ``python -m jobs.<job>``."""

from __future__ import annotations

import importlib

JOB_MODULES = {"capture": "jobs.capture_logits", "align": "jobs.map_vocab", "train": "jobs.train_fusion"}


def add_arguments(p, name: str) -> None:
    """CONFIG and key=value overrides (parsed by the job itself)."""
    p.add_argument("config", nargs="?", help="YAML config (see jobs/configs/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. k=20 codec=quantized")
    p.set_defaults(_job=name)


def run_job(name: str, argv: list[str]) -> int:
    """Run job ``name`` with its own argument parsing."""
    mod = importlib.import_module(JOB_MODULES[name])
    return mod.cli(argv, prog=f"logitfuse {name}")


def run(args) -> int:
    """Reached only through argparse (e.g. `--help`); the CLI normally calls run_job directly."""
    argv = ([args.config] if args.config else []) + list(args.overrides)
    return run_job(args._job, argv)
