"""Verified reads: a shard is checked against its manifest entry (size, then sha256) before any row is used.

The hash is streamed (1 MiB blocks, never the whole file in memory) and done once per file per process: a file that
passed is remembered by (path, size, mtime_ns, inode, expected sha256), so a process that opens the same shard many
times (a training worker over several epochs, align's cooc pass then its tasks) hashes it once. Any write to the
file changes its mtime or inode, which drops it from the cache. The cost is one sequential read of each shard,
measured against decoding it in ``tests/benchmarks/bench_verify.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import ShardError
from pipeline.io.atomic import sha256_file  # streamed, 1 MiB blocks

_VERIFIED: set[tuple] = set()


def _key(path: Path, st: os.stat_result, sha256: str) -> tuple:
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino, sha256


def verify_file(path: str | Path, size: int, sha256: str | None) -> Path:
    """``path`` when its size and sha256 are those the manifest lists; ShardError naming the file otherwise.
    ``sha256=None`` checks the size only."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ShardError(f"{path}: missing (listed in the manifest)") from None
    except OSError as e:
        raise ShardError(f"{path}: cannot be read ({e.strerror})") from None
    if st.st_size != size:
        raise ShardError(f"{path}: {st.st_size} bytes, manifest says {size} (truncated or replaced)")
    if sha256 is None or _key(path, st, sha256) in _VERIFIED:
        return path
    try:
        have = sha256_file(path)
    except OSError as e:
        raise ShardError(f"{path}: cannot be read ({e.strerror})") from None
    if have != sha256:
        raise ShardError(f"{path}: sha256 mismatch (corrupted: a byte changed since it was written)")
    _VERIFIED.add(_key(path, st, sha256))
    return path


def forget() -> None:
    """Drop every remembered verification (benchmarks measure the first read)."""
    _VERIFIED.clear()
