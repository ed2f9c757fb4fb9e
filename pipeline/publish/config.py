"""Publish job configuration."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import JobConfig
from pipeline.errors import ConfigError


@dataclass
class PublishConfig(JobConfig):
    """Which shard sets to publish, where to, and how."""

    input: str = ""  # a capture/align output root, one shard folder, or a staged folder
    repo_id: str = ""  # ORG/NAME of the Hub dataset repo
    private: bool = False  # create the repo private (ignored when it already exists)
    revision: str | None = None  # branch to commit to (created when missing); default main
    stage_only: str | None = None  # write the repo folder here and upload nothing
    overwrite: bool = False  # let staging remove files of stage_only that the dataset would not contain
    license: str = "other"  # card license: the source dataset's and the models' terms decide it
    checksums: bool = True  # sha256 every shard before publishing
    commit_message: str | None = None  # huggingface_hub 1.x upload_large_folder cannot set one (ignored there)
    codec: str | None = None  # native | lossless: re-encode logit shards of another codec (None: as captured)

    def validate(self) -> None:
        """Raise ConfigError naming the field at fault."""
        for f in ("input", "repo_id"):
            if not getattr(self, f):
                raise ConfigError(f"publish: `{f}` is required")
        if self.codec not in (None, "native", "lossless"):
            raise ConfigError(f"publish: codec must be native or lossless (or unset: as captured), got {self.codec!r}")
        if not self.license.strip():
            raise ConfigError("publish: license must not be empty (use `other` when unsure)")
