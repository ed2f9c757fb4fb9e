"""Verified reads: a shard is checked against its manifest entry (size, then sha256) before any row is used.

The hash is streamed (1 MiB blocks, never the whole file in memory) and done once per file per process: a file that
passed is remembered by (path, size, mtime_ns, inode, expected sha256) locally, by (url, size, mtime, expected
sha256) on an object store (where rewriting an object changes its modification time; S3's has 1 s resolution, so
a same-size rewrite within the second of the check is seen by the next process, not this one), so a process that opens the
same shard many times (a training worker over several epochs, align's cooc pass then its tasks) hashes it once. Any
write to the file changes its mtime or inode, which drops it from the cache. The cost is one sequential read of
each shard, measured against decoding it in ``tests/benchmarks/bench_verify.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs

from pipeline.errors import ShardError, StorageError
from pipeline.io.atomic import sha256_file  # streamed, 1 MiB blocks
from pipeline.io.fs import Location, location

_VERIFIED: set[tuple] = set()


def _stat(loc: Location) -> tuple[int, tuple]:
    """Size and the cache identity of the file's current version; FileNotFoundError when absent."""
    if loc.local:
        st = os.stat(loc.path)
        return st.st_size, (st.st_size, st.st_mtime_ns, st.st_ino)
    info = loc.info()
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(loc.url)
    return info.size, (info.size, info.mtime_ns)


def verify_file(path: str | Path | Location, size: int, sha256: str | None) -> Location:
    """The file's :class:`Location` when its size and sha256 are those the manifest lists; ShardError naming the
    file otherwise. ``sha256=None`` checks the size only."""
    loc = location(path)
    try:
        have_size, ident = _stat(loc)
    except FileNotFoundError:
        raise ShardError(f"{loc}: missing (listed in the manifest)") from None
    except StorageError as e:
        raise ShardError(f"cannot be read: {e}") from None
    except OSError as e:
        raise ShardError(f"{loc}: cannot be read ({e.strerror})") from None
    if have_size != size:
        raise ShardError(f"{loc}: {have_size} bytes, manifest says {size} (truncated or replaced)")
    key = (loc.url, *ident, sha256)
    if sha256 is None or key in _VERIFIED:
        return loc
    try:
        have = sha256_file(loc)
    except FileNotFoundError:
        raise ShardError(f"{loc}: missing (listed in the manifest)") from None
    except StorageError as e:
        raise ShardError(f"cannot be read: {e}") from None
    except OSError as e:
        raise ShardError(f"{loc}: cannot be read ({e.strerror})") from None
    if have != sha256:
        raise ShardError(f"{loc}: sha256 mismatch (corrupted: a byte changed since it was written)")
    _VERIFIED.add(key)
    return loc


def forget() -> None:
    """Drop every remembered verification (benchmarks measure the first read)."""
    _VERIFIED.clear()
