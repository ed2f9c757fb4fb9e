"""Shared plumbing of the job entry points: parse ``CONFIG key=value …``, print errors as one line."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
from typing import Callable

from pipeline.errors import LogitfuseError
from pipeline.registry import JOBS


def _class_comments(klass) -> dict[str, str]:
    """Field name → the comment ending its line, for the fields of ``klass``'s own body (read with ``ast``, so
    annotated locals in methods, docstrings and ``#`` inside string defaults are not taken for field notes); a
    comment-only line right below that starts with aligned spaces continues it."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # no source (a frozen build): --help lists names and defaults only
        return {}
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text after '#', alone on its line)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = (tok.string[1:], tok.line.strip().startswith("#"))
        body = ast.parse(source).body[0].body
    except (SyntaxError, tokenize.TokenError, IndexError, AttributeError):  # source that is not a plain class
        return {}
    out = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text, alone = comments.get(node.end_lineno, ("", True))
        if alone:
            continue
        parts, line = [text.strip()], node.end_lineno + 1
        while line in comments and comments[line][1] and comments[line][0].startswith("  "):
            parts.append(comments[line][0].strip())
            line += 1
        out[node.target.id] = " ".join(parts)
    return out


def field_comments(config_cls) -> dict[str, str]:
    """The comment at the end of each field's line in the config class's source (and its bases'): what the
    field does, written once beside it and shown by --help."""
    out: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if dataclasses.is_dataclass(klass):
            out |= _class_comments(klass)
    return out


def _field_lines(config_cls, prefix: str = "") -> list[str]:
    lines = []
    notes = field_comments(config_cls)
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        if dataclasses.is_dataclass(default):  # a nested section: its fields, dotted
            lines += _field_lines(type(default), f"{prefix}{f.name}.")
            continue
        head = f"  {prefix}{f.name} = {default!r}"
        if f.name not in notes:
            lines.append(head)
            continue
        wrapped = textwrap.wrap(notes[f.name], width=110 - 36) or [""]
        lines.append(f"{head:<35} {wrapped[0]}" if len(head) < 35 else f"{head}\n{'':35} {wrapped[0]}")
        lines += [f"{'':35} {w}" for w in wrapped[1:]]
    return lines


def fields_help(config_cls) -> str:
    """Every config field (nested sections dotted) with its default and what it does, for --help."""
    return "\n".join(["config fields (YAML keys; override any as key=value, dotted for nested sections):",
                      *_field_lines(config_cls)])


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
