"""Shared plumbing of the job entry points: parse ``CONFIG key=value …``, print errors as one line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable

from pipeline.errors import LogitfuseError
from pipeline.registry import JOBS


def fields_help(config_cls) -> str:
    """Every config field with its default, for --help."""
    lines = ["config fields (YAML keys; override any as key=value, dotted for nested sections):"]
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        lines.append(f"  {f.name} = {default!r}")
    return "\n".join(lines)


def main(name: str, argv: list[str] | None = None, summary: Callable | None = None, prog: str | None = None) -> int:
    """Parse arguments, load and validate the config of job ``name`` (:mod:`pipeline.registry`), run the job; exit
    2 with a clear message on bad input. ``prog``: the name in usage lines (``logitfuse capture``; default: the
    script's name)."""
    job = JOBS[name]
    config_cls = job.config_class()
    p = argparse.ArgumentParser(prog=prog, description=job.description, epilog=fields_help(config_cls),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="YAML config file (optional when every field is given as key=value)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    args = p.parse_args(argv)
    config, overrides = args.config, list(args.overrides)
    if config and "=" in config:  # no file: only overrides
        config, overrides = None, [config] + overrides
    try:
        cfg = config_cls.load(config, overrides)
        result = job.run_function()(cfg)
    except LogitfuseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment, not a bug: a full disk, a read-only or missing path
        print(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    if summary:
        summary(result)
    return 0
