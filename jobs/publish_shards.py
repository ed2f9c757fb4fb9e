"""Publish job: ``python -m jobs.publish_shards CONFIG [key=value …]`` (also what `logitfuse submit publish` runs).

Stages capture/align shard sets as a Hugging Face dataset repo (Parquet under ``data/<config>/``, manifests under
``logitfuse/<config>/``, a dataset card) and uploads it; ``stage_only=DIR`` writes the folder and uploads nothing.
"""

from __future__ import annotations

import sys

from jobs._entry import main


def summary(p) -> None:
    """Where the dataset went."""
    s = p.staged
    where = f"uploaded to https://huggingface.co/datasets/{p.repo_id} ({p.url})" if p.url else f"staged in {s.folder}"
    print(f"published {len(s.configs)} config(s) [{', '.join(s.configs)}]: {where}; {s.files} files, "
          f"{s.bytes_written} bytes linked or copied this run")


def cli(argv: list[str] | None = None) -> int:
    """Run the job from command-line arguments."""
    return main("publish", argv, summary)


if __name__ == "__main__":
    sys.exit(cli())
