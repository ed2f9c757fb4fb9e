"""Shared plumbing of the job entry points: parse ``CONFIG key=value …``, print errors as one line."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import textwrap
from typing import Callable

from pipeline.errors import LogitfuseError
from pipeline.registry import JOBS


FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


def field_comments(config_cls) -> dict[str, str]:
    """The comment at the end of each field's line in the config class's source (and its bases'): what the
    field does, written once beside it and shown by --help."""
    out: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):  # no source (a frozen build): --help lists names and defaults only
            continue
        for line in source.splitlines():
            m = FIELD_LINE.match(line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def fields_help(config_cls) -> str:
    """Every config field with its default and what it does, for --help."""
    lines = ["config fields (YAML keys; override any as key=value, dotted for nested sections):"]
    notes = field_comments(config_cls)
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        head = f"  {f.name} = {default!r}"
        if f.name not in notes:
            lines.append(head)
            continue
        wrapped = textwrap.wrap(notes[f.name], width=110 - 36) or [""]
        lines.append(f"{head:<35} {wrapped[0]}" if len(head) < 35 else f"{head}\n{'':35} {wrapped[0]}")
        lines += [f"{'':35} {w}" for w in wrapped[1:]]
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
