"""``logitfuse validate DIR``: schema, manifest, checksums and row counts of a shard folder."""

from __future__ import annotations

from pipeline.io.reader import verify


def add_arguments(p, name: str) -> None:
    """DIR and options."""
    p.add_argument("dir", help="a shard folder (holding manifest.json): a local path, s3://…, gs://… or hf://datasets/…")
    p.add_argument("--no-checksums", action="store_true", help="skip the sha256 of every shard (faster)")


def run(args) -> int:
    """Print every problem, naming its file; exit 1 when there is any."""
    from pipeline.io.fs import check_bucket, is_url, location

    if is_url(args.dir) and not args.dir.startswith("hf://"):
        check_bucket(location(args.dir))  # one clear error for credentials, bucket or endpoint
    problems = verify(args.dir, checksums=not args.no_checksums)
    for p in problems:
        print(f"INVALID {p}")
    if not problems:
        print(f"OK {args.dir}")
    return 1 if problems else 0
