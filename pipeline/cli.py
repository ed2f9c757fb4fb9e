"""The ``logitfuse`` command line: one subcommand per job or tool, each in ``pipeline/commands/``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from pipeline.errors import LogitfuseError
from pipeline.io.fs import redact
from pipeline.registry import CONFIG_COMMANDS, JOBS

COMMANDS = {
    **{name: (JOBS[name].description, "pipeline.commands.jobs") for name in CONFIG_COMMANDS},
    "inspect": ("Summarise a shard folder: samples, tokens, bytes/token, agreement, entropy; PNG histogram.",
                "pipeline.commands.inspect"),
    "validate": ("Check a shard folder: schema, manifest, checksums, row counts.", "pipeline.commands.validate"),
    "publish": (JOBS["publish"].description, "pipeline.commands.publish"),
    "submit": ("Submit a job to a Ray cluster through the Ray Jobs API.", "pipeline.commands.submit"),
    "status": ("Status of a submitted job.", "pipeline.commands.submit"),
    "logs": ("Logs of a submitted job.", "pipeline.commands.submit"),
    "stop": ("Stop a submitted job.", "pipeline.commands.submit"),
    "quickstart": ("The whole pipeline on tiny built-in models and data, on this machine.",
                   "pipeline.commands.quickstart"),
    "plan": ("Per-GPU memory of a training config (parameters, gradients, optimizer, activations, head); no weights.",
             "pipeline.commands.plan"),
    "bench": ("Benchmarks that need the whole pipeline (`bench fusion`).", "pipeline.commands.bench"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand. With ``command``, only that subcommand's module is
    imported (its options and epilog); the others are listed by name and help text, so one command does not pay
    for every other command's imports (pyarrow, yaml, Ray client...)."""
    p = argparse.ArgumentParser(prog="logitfuse", description=(
        "Logit datasets and model fusion on Ray: capture top-k logits of source LLMs into Parquet shards, align "
        "them to a pivot's tokenizer, and fuse them into the pivot with SFT + ULD + GLD."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, module) in COMMANDS.items():
        if command is not None and name != command:
            if importlib.util.find_spec(module) is not None:  # listed without importing it
                sub.add_parser(name, help=help_text, description=help_text)
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("pipeline.commands"):
                continue  # not built yet
            raise
        sp = sub.add_parser(name, help=help_text, description=help_text, epilog=getattr(mod, "EPILOG", None),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(sp, name)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``logitfuse`` script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CONFIG_COMMANDS:  # the job parses its own CONFIG key=value list
        from pipeline.commands.jobs import run_job

        return run_job(argv[0], argv[1:])
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return args._run(args) or 0
    except LogitfuseError as e:
        print(f"error: {redact(e)}", file=sys.stderr)  # an address with credentials is never echoed
        return 2
    except OSError as e:  # the environment, not a bug: a full disk, a read-only or missing path
        print(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
