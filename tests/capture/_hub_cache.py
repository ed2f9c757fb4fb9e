"""A Hugging Face hub cache entry built by hand, for tests of what logitfuse reads from the cache offline."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest


def hub_cache(root: Path, repo: str, commit: str, config: bytes, files: dict[str, bytes] | None = None) -> Path:
    """A Hugging Face cache entry as a download leaves it: refs/main names the commit, the snapshot links blobs."""
    entry = root / ("models--" + repo.replace("/", "--"))
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    blobs, snap = entry / "blobs", entry / "snapshots" / commit
    blobs.mkdir(exist_ok=True)
    snap.mkdir(parents=True)
    for name, data in {"config.json": config, **(files or {})}.items():
        sha = hashlib.sha256(data).hexdigest()
        (blobs / sha).write_bytes(data)
        os.symlink(blobs / sha, snap / name)
    return snap


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch):
    """huggingface_hub pointed at ``tmp_path`` as its cache, offline."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path
