"""Atomic file writes: write to a temporary name in the same folder, fsync, then rename over the target."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import WriteError

TMP_PREFIX = ".tmp-"  # readers never list the folder; the prefix also keeps tools like `datasets` away


def _tmp(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")


def _commit(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a crash
    finally:
        os.close(dir_fd)


@contextmanager
def _cleanup(tmp: Path, path: Path):
    """Remove ``tmp`` whatever happens; a write error (full disk, read-only folder, a file where a folder should
    be) becomes one WriteError naming ``path``."""
    try:
        yield
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself is gone or unwritable: nothing was left in it


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    path = Path(path)
    tmp = _tmp(path)
    with _cleanup(tmp, path):
        tmp.write_text(text)
        _commit(tmp, path)


def write_parquet(path: str | Path, table: pa.Table, **kwargs) -> None:
    """Write ``table`` (with its own schema, never an inferred one) to ``path`` atomically."""
    path = Path(path)
    tmp = _tmp(path)
    with _cleanup(tmp, path):
        pq.write_table(table, tmp, **kwargs)
        _commit(tmp, path)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def clean_tmp(folder: str | Path) -> int:
    """Remove leftovers of killed writers in ``folder`` and every folder below it; returns how many."""
    n = 0
    for p in Path(folder).rglob(f"{TMP_PREFIX}*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n
