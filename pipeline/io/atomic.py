"""Whole-file writes that a reader never sees half done, on a local folder or an object store.

- Local: write to a temporary name in the same folder, fsync, then rename over the target (and fsync the folder).
- Object store (s3, gs): there is no rename. The bytes are built in memory first (a Parquet file is serialised into a
  ``pa.BufferOutputStream``) and sent as one object, which the store publishes all or nothing (on s3 one
  ``PutObject``). A table is never streamed to the store: a pyarrow output stream that is closed after an exception
  completes the upload with what it had, publishing a partial object. Where pyarrow's stream still carries the
  bytes (gs, objects over 5 GiB on s3) the stored size is checked after the write for the same reason.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import StorageError, WriteError
from pipeline.io.fs import S3_PUT_MAX, Location, location, storage_errors

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


def put_object(loc: Location, data: bytes) -> None:
    """``data`` as the object ``loc`` in one write (all or nothing)."""
    loc.put(data)
    if loc.scheme == "s3" and len(data) <= S3_PUT_MAX:
        return  # one PutObject: stored whole or not at all
    size = loc.size()
    if size != len(data):  # cannot happen for a completed PUT; refuse rather than let a record vouch for it
        loc.delete()
        raise StorageError(f"{loc.url}: wrote {len(data)} bytes but the store holds {size}; nothing was kept")


def write_bytes(target: str | Path | Location, data: bytes) -> None:
    """Replace ``target`` with ``data`` atomically (tmp → fsync → rename locally, one object PUT on a store)."""
    loc = location(target)
    if not loc.local:
        return put_object(loc, data)
    path = Path(loc.path)
    tmp = _tmp(path)
    with _cleanup(tmp, path):
        tmp.write_bytes(data)
        _commit(tmp, path)


def write_text(target: str | Path | Location, text: str) -> None:
    """Replace ``target`` with ``text`` atomically."""
    write_bytes(target, text.encode())


def parquet_bytes(table: pa.Table, **kwargs) -> bytes:
    """``table`` serialised as one Parquet file in memory (with its own schema, never an inferred one)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **kwargs)
    return sink.getvalue().to_pybytes()


def write_parquet(target: str | Path | Location, table: pa.Table, **kwargs) -> tuple[int, str] | None:
    """Write ``table`` to ``target`` atomically. On an object store returns (size, sha256) of the bytes sent,
    computed from the buffer (no read back); locally None (the file is streamed to its temporary name)."""
    loc = location(target)
    if not loc.local:
        data = parquet_bytes(table, **kwargs)
        put_object(loc, data)
        return len(data), hashlib.sha256(data).hexdigest()
    path = Path(loc.path)
    tmp = _tmp(path)
    with _cleanup(tmp, path):
        pq.write_table(table, tmp, **kwargs)
        _commit(tmp, path)
    return None


def sha256_file(target: str | Path | Location, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's or object's bytes, streamed in ``chunk`` blocks."""
    h = hashlib.sha256()
    loc = location(target)
    if loc.local:
        with open(loc.path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        return h.hexdigest()
    with storage_errors(loc), loc.fs.open_input_stream(loc.path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def clean_tmp(folder: str | Path | Location) -> int:
    """Remove leftovers of killed writers in ``folder`` and every folder below it; returns how many. An object
    store has no temporary names (an object appears whole or not at all): 0."""
    loc = location(folder)
    if not loc.local:
        return 0
    n = 0
    for p in Path(loc.path).rglob(f"{TMP_PREFIX}*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n
