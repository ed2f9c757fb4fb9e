"""Resumable shard-set writer: one Parquet file per shard of the plan, completion records, manifest last.

Folder layout (a local folder or an object-store prefix)::

    <dir>/_run.json                 config fingerprint of the run that owns the folder (written first)
    <dir>/part-NNNNN.parquet        the shards
    <dir>/_progress/part-NNNNN.json one per complete shard: rows, tokens, bytes, sha256 (written after the shard)
    <dir>/manifest.json             written last, once every shard of the plan is complete

Commit protocol: a shard is written whole (locally to a temporary name, fsynced, renamed; on an object store
serialised in memory and sent as one object, its size and sha256 computed from the buffer), then its completion
record, then, once every shard has one, the manifest. Readers open only what the manifest names. A rerun keeps every
shard whose record exists and whose size and sha256 match it, and rewrites the rest (a shard without a record is a
killed writer's leftover); a folder made with another config is refused unless ``overwrite`` is set.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from pipeline.errors import ShardError, WriteError
from pipeline.io import native
from pipeline.io.atomic import clean_tmp, sha256_file, write_parquet, write_text
from pipeline.io.fs import Location, abort_uploads, check_bucket, location
from schemas.manifest import Manifest, ShardEntry

ROW_GROUP_ROWS = 64  # small row groups: the training loader streams a shard without loading it whole


def write_options(schema: pa.Schema) -> dict:
    """``pq.write_table`` options of a shard: zstd, small row groups, the native codec's column encodings."""
    return native.parquet_options(schema, dict(compression="zstd", compression_level=3, row_group_size=ROW_GROUP_ROWS))


def shard_file(index: int) -> str:
    """File name of shard ``index``."""
    return f"part-{index:05d}.parquet"


class ShardSetWriter:
    """Writes the shards of one plan into ``folder`` (a path, URL or Location) for a run identified by
    ``fingerprint``."""

    def __init__(self, folder: str | Path | Location, fingerprint: str, describe: dict, overwrite: bool = False):
        self.folder = location(folder)
        self.fingerprint = fingerprint
        self.describe = describe
        try:
            check_bucket(self.folder)
            self._open(overwrite)
        except OSError as e:  # a file where the folder should be, a read-only or full disk
            where = e.filename or self.folder
            raise WriteError(f"cannot write the output folder {self.folder}: {e.strerror or e} ({where})") from None

    def _open(self, overwrite: bool) -> None:
        run = self.folder / "_run.json"
        if run.exists():
            old = json.loads(run.read_text())
            if old.get("fingerprint") != self.fingerprint:
                if not overwrite:
                    changed = sorted(k for k in set(old.get("describe", {})) | set(self.describe)
                                     if old.get("describe", {}).get(k) != self.describe.get(k))
                    raise ShardError(
                        f"{self.folder} was written by another configuration (differs in: "
                        f"{', '.join(changed) or 'fingerprint'}); rerun with overwrite=true to replace it, "
                        f"or choose another output folder")
                self.folder.rmtree()
        elif any(e.base_name.startswith("part-") for e in self.folder.list()):
            if not overwrite:
                raise ShardError(f"{self.folder} holds shards but no _run.json; rerun with overwrite=true")
            self.folder.rmtree()
        (self.folder / "_progress").mkdir()
        clean_tmp(self.folder)
        if not run.exists():
            write_text(run, json.dumps({"fingerprint": self.fingerprint, "describe": self.describe}, indent=1))

    def _record(self, index: int) -> Location:
        return self.folder / "_progress" / shard_file(index).replace(".parquet", ".json")

    def complete(self, index: int, verify: bool = True) -> ShardEntry | None:
        """The entry of shard ``index`` when it is complete: its record exists and the shard's size (and, with
        ``verify``, its sha256) matches it."""
        record, part = self._record(index), self.folder / shard_file(index)
        try:
            entry = ShardEntry(**json.loads(record.read_text()))
            if part.size() != entry.bytes or (verify and sha256_file(part) != entry.sha256):
                return None
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None  # a garbled record: the shard is rewritten
        return entry

    def write_shard(self, index: int, table: pa.Table, tokens: int) -> ShardEntry:
        """Write shard ``index`` whole, then its completion record."""
        part = self.folder / shard_file(index)
        sent = write_parquet(part, table, **write_options(table.schema))
        size, sha256 = sent if sent else (part.size(), sha256_file(part))
        entry = ShardEntry(index=index, file=part.name, rows=table.num_rows, tokens=tokens, bytes=size, sha256=sha256,
                           first_sample=int(table.column("sample_index")[0].as_py()) if table.num_rows else -1)
        write_text(self._record(index), json.dumps(asdict(entry)))
        return entry

    def finalize(self, manifest: Manifest) -> Manifest:
        """Check every planned shard is complete and write ``manifest.json`` (last); then clear what killed writers
        left on an object store (unfinished multipart uploads)."""
        entries = []
        for i in range(manifest.plan.num_shards):
            e = self.complete(i, verify=False)
            if e is None:
                raise ShardError(f"{self.folder / shard_file(i)} is missing or incomplete; rerun the job")
            entries.append(e)
        manifest.shards = entries
        manifest.stats["bytes_per_token"] = manifest.total_bytes / max(manifest.total_tokens, 1)
        write_text(self.folder / "manifest.json", manifest.to_json())
        abort_uploads(self.folder)
        return manifest

