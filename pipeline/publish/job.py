"""The publish driver: validate the shard sets, stage the repo folder, upload it (or stop after staging)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from pipeline.io.lock import folder_lock
from pipeline.publish.config import PublishConfig
from pipeline.publish.discover import collect
from pipeline.publish.stage import Staged, stage
from pipeline.publish.upload import check_hub, check_repo_id, upload


@dataclass
class Published:
    """What a publish run did."""

    staged: Staged
    repo_id: str
    url: str | None  # the commit URL; None with stage_only


def run_publish(cfg: PublishConfig, api=None) -> Published:
    """Publish ``cfg.input`` to ``cfg.repo_id`` (``api``: an HfApi-like object, for tests)."""
    check_repo_id(cfg.repo_id)
    if not cfg.stage_only and api is None:
        check_hub()  # fail before staging, not after
    sources = collect(cfg.input, checksums=cfg.checksums)
    if cfg.stage_only:
        with folder_lock(cfg.stage_only, "publish", cfg.repo_id):
            staged = stage(sources, cfg.stage_only, cfg.repo_id, cfg.license, cfg.overwrite, cfg.codec)
        return Published(staged, cfg.repo_id, None)
    with tempfile.TemporaryDirectory(prefix="logitfuse-publish-") as tmp:
        staged = stage(sources, tmp, cfg.repo_id, cfg.license, codec=cfg.codec)
        url = upload(tmp, cfg.repo_id, private=cfg.private, revision=cfg.revision,
                     commit_message=cfg.commit_message, api=api)
    return Published(staged, cfg.repo_id, url)
