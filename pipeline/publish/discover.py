"""Find and validate the shard sets to publish: one config per captured model and per aligned source."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from pipeline.errors import PublishError
from pipeline.io.fs import Location, check_bucket, is_url, location
from pipeline.io.reader import ShardSet, verify
from pipeline.io.resolve import DATA_DIR, META_DIR, staged_configs

ALIGNED_PREFIX = "aligned-"  # aligned sources share names with the captures they come from
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RESERVED = {DATA_DIR, META_DIR, "README.md"}


@dataclass
class ShardSource:
    """One shard set and the config name it is published under."""

    config: str
    shards: ShardSet


def config_name(shards: ShardSet) -> str:
    """``<model>`` for a capture, ``aligned-<source>`` for an aligned set."""
    m = shards.manifest
    return f"{ALIGNED_PREFIX}{m.name}" if m.kind == "aligned" else m.name


def _is_candidate(folder: Path) -> bool:
    """A folder a job has written into (complete or not)."""
    return folder.is_dir() and ((folder / "manifest.json").exists() or (folder / "_run.json").exists()
                                or any(folder.glob("part-*.parquet")))


def _object_folders(root: Location) -> list[Location]:
    """:func:`find_shard_folders` on an object store: ``root``, or its model and ``aligned/<source>`` prefixes that
    hold a manifest or a run record."""
    marks = ("manifest.json", "_run.json")
    if any((root / m).exists() for m in marks):
        return [root]
    below = [e.path[len(root.path) + 1:] for e in root.list() if e.type == pafs.FileType.Directory]
    below += [f"aligned/{e.base_name}" for e in (root / "aligned").list() if e.type == pafs.FileType.Directory]
    found = [root / name for name in sorted(below) if any((root / name / m).exists() for m in marks)]
    if not found:
        raise PublishError(f"{root} holds no shard sets: give a capture/align output root, or one shard folder "
                           f"(holding manifest.json)")
    return found


def find_shard_folders(root: str | Path) -> list[Path | Location]:
    """``root`` itself when it is a shard folder, else its model folders and ``aligned/<source>`` folders (a local
    path, or an s3:// / gs:// prefix)."""
    if is_url(root) and not str(root).startswith("hf://"):
        check_bucket(location(root))
        return _object_folders(location(root))
    root = Path(root)
    if not root.is_dir():
        raise PublishError(f"{root}: no such folder")
    if _is_candidate(root):
        return [root]
    if staged_configs(root):
        return [root / META_DIR / c for c in staged_configs(root)]  # an already staged dataset
    found = [p for p in sorted(root.iterdir()) if _is_candidate(p)]
    if (root / "aligned").is_dir():
        found += [p for p in sorted((root / "aligned").iterdir()) if _is_candidate(p)]
    if not found:
        raise PublishError(f"{root} holds no shard sets: give a capture/align output root, or one shard folder "
                           f"(holding manifest.json)")
    return found


def collect(root: str | Path, checksums: bool = True) -> list[ShardSource]:
    """Every shard set under ``root``, validated; PublishError naming each problem when any does not validate."""
    problems, sources = [], []
    for folder in find_shard_folders(root):
        found = verify(folder, checksums=checksums)
        if found:
            problems += found
            continue
        shards = ShardSet(folder)
        if not shards.manifest.shards:
            problems.append(f"{folder}: holds no shards (num_samples=0)")
            continue
        sources.append(ShardSource(config_name(shards), shards))
    if problems:
        raise PublishError(f"{root} does not validate ({len(problems)} problem(s)); fix or rerun the job first:\n  "
                           + "\n  ".join(problems))
    names = [s.config for s in sources]
    for s in sources:
        if not _CONFIG_NAME.match(s.config) or s.config in _RESERVED:
            raise PublishError(f"{s.shards.folder}: {s.config!r} cannot be a dataset config name (letters, digits, "
                               f"'.', '_', '-'; not {sorted(_RESERVED)}); rename the shard set")
        if names.count(s.config) > 1:
            dup = [str(o.shards.folder) for o in sources if o.config == s.config]
            raise PublishError(f"two shard sets would both be config {s.config!r}: {', '.join(dup)}")
    return sources
