"""``logitfuse publish DIR --repo-id ORG/NAME [--codec native|lossless] [--private] [--revision REV]
[--stage-only OUT]``."""

from __future__ import annotations


def add_arguments(p, name: str) -> None:
    """DIR and options."""
    p.add_argument("dir", help="a capture/align output root, one shard folder, or a staged folder")
    p.add_argument("--repo-id", required=True, help="the Hub dataset repo, ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repo private (no effect when it exists)")
    p.add_argument("--revision", help="branch to commit to (created when missing; default main)")
    p.add_argument("--stage-only", metavar="OUT", help="write the exact folder that would be uploaded; upload nothing")
    p.add_argument("--overwrite", action="store_true", help="let --stage-only remove other files already in OUT")
    p.add_argument("--license", default="other", help="card license (default: other — the source's terms decide)")
    p.add_argument("--codec", choices=["native", "lossless"],
                   help="re-encode the top-k of logit shards of another codec: native = plain Parquet list columns "
                        "any reader decodes (polars, DuckDB, datasets), lossless = the compact codec (default: as "
                        "captured)")
    p.add_argument("--no-checksums", action="store_true", help="skip the sha256 of every shard before publishing")


def run(args) -> int:
    """Validate, stage, upload; print where the dataset went."""
    from jobs.publish_shards import summary
    from pipeline.registry import JOBS

    job = JOBS["publish"]
    config_cls = job.config_class()
    cfg = config_cls(input=args.dir, repo_id=args.repo_id, private=args.private, revision=args.revision,
                     stage_only=args.stage_only, overwrite=args.overwrite, license=args.license,
                     checksums=not args.no_checksums, codec=args.codec)
    cfg.validate()
    summary(job.run_function()(cfg))
    return 0
