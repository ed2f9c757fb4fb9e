"""``logitfuse validate DIR``: schema, manifest, checksums and row counts of a shard folder."""

from __future__ import annotations

from pipeline.io.reader import verify


def add_arguments(p, name: str) -> None:
    """DIR and options."""
    p.add_argument("dir", help="a shard folder (holding manifest.json)")
    p.add_argument("--no-checksums", action="store_true", help="skip the sha256 of every shard (faster)")


def run(args) -> int:
    """Print every problem, naming its file; exit 1 when there is any."""
    problems = verify(args.dir, checksums=not args.no_checksums)
    for p in problems:
        print(f"INVALID {p}")
    if not problems:
        print(f"OK {args.dir}")
    return 1 if problems else 0
