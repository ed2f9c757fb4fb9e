"""``logitfuse capture|align|train CONFIG [key=value …]``: the same entry points as ``python -m jobs.<job>``
(:data:`pipeline.registry.JOBS`)."""

from __future__ import annotations

import importlib

from pipeline.registry import JOBS


def add_arguments(p, name: str) -> None:
    """CONFIG and key=value overrides (parsed by the job itself)."""
    p.add_argument("config", nargs="?", help=f"YAML config (e.g. {JOBS[name].example_config})")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. k=20 codec=quantized")
    p.set_defaults(_job=name)


def run_job(name: str, argv: list[str]) -> int:
    """Run job ``name`` with its own argument parsing."""
    mod = importlib.import_module(JOBS[name].entry)
    return mod.cli(argv, prog=f"logitfuse {name}")


def run(args) -> int:
    """Reached only through argparse (e.g. `--help`); the CLI normally calls run_job directly."""
    argv = ([args.config] if args.config else []) + list(args.overrides)
    return run_job(args._job, argv)
