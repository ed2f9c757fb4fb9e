"""Resumable shard-set writer: one Parquet file per shard of the plan, progress sidecars, manifest last.

Folder layout::

    <dir>/_run.json                 config fingerprint of the run that owns the folder (written first)
    <dir>/_progress/part-NNNNN.json one per complete shard: rows, tokens, bytes, sha256 (written after the shard)
    <dir>/part-NNNNN.parquet        the shards (written to a temporary name, then renamed)
    <dir>/manifest.json             written last, once every shard of the plan is complete

A rerun keeps every shard whose sidecar and checksum agree and recomputes the rest; a folder made with another
config is refused unless ``overwrite`` is set.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from pipeline.errors import ShardError, WriteError
from pipeline.io import native
from pipeline.io.atomic import clean_tmp, sha256_file, write_parquet, write_text
from schemas.manifest import Manifest, ShardEntry

ROW_GROUP_ROWS = 64  # small row groups: the training loader streams a shard without loading it whole


def write_options(schema: pa.Schema) -> dict:
    """``pq.write_table`` options of a shard: zstd, small row groups, the native codec's column encodings."""
    return native.parquet_options(schema, dict(compression="zstd", compression_level=3, row_group_size=ROW_GROUP_ROWS))


def shard_file(index: int) -> str:
    """File name of shard ``index``."""
    return f"part-{index:05d}.parquet"


class ShardSetWriter:
    """Writes the shards of one plan into ``folder`` for a run identified by ``fingerprint``."""

    def __init__(self, folder: str | Path, fingerprint: str, describe: dict, overwrite: bool = False):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.describe = describe
        try:
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
                shutil.rmtree(self.folder)
        elif self.folder.exists() and any(p.name.startswith("part-") for p in self.folder.iterdir()):
            if not overwrite:
                raise ShardError(f"{self.folder} holds shards but no _run.json; rerun with overwrite=true")
            shutil.rmtree(self.folder)
        (self.folder / "_progress").mkdir(parents=True, exist_ok=True)
        clean_tmp(self.folder)
        if not run.exists():
            write_text(run, json.dumps({"fingerprint": self.fingerprint, "describe": self.describe}, indent=1))

    def _sidecar(self, index: int) -> Path:
        return self.folder / "_progress" / shard_file(index).replace(".parquet", ".json")

    def complete(self, index: int, verify: bool = True) -> ShardEntry | None:
        """The entry of shard ``index`` when it is complete (and, with ``verify``, its checksum matches)."""
        side, path = self._sidecar(index), self.folder / shard_file(index)
        if not (side.exists() and path.exists()):
            return None
        entry = ShardEntry(**json.loads(side.read_text()))
        if path.stat().st_size != entry.bytes or (verify and sha256_file(path) != entry.sha256):
            return None
        return entry

    def write_shard(self, index: int, table: pa.Table, tokens: int) -> ShardEntry:
        """Write shard ``index`` atomically, then its sidecar."""
        path = self.folder / shard_file(index)
        write_parquet(path, table, **write_options(table.schema))
        entry = ShardEntry(index=index, file=path.name, rows=table.num_rows, tokens=tokens,
                           bytes=path.stat().st_size, sha256=sha256_file(path),
                           first_sample=int(table.column("sample_index")[0].as_py()) if table.num_rows else -1)
        write_text(self._sidecar(index), json.dumps(asdict(entry)))
        return entry

    def finalize(self, manifest: Manifest) -> Manifest:
        """Check every planned shard is complete and write ``manifest.json`` (last)."""
        n_shards = -(-manifest.num_samples // manifest.shard_size)
        entries = []
        for i in range(n_shards):
            e = self.complete(i, verify=False)
            if e is None:
                raise ShardError(f"{self.folder / shard_file(i)} is missing or incomplete; rerun the job")
            entries.append(e)
        manifest.shards = entries
        manifest.stats["bytes_per_token"] = manifest.total_bytes / max(manifest.total_tokens, 1)
        write_text(self.folder / "manifest.json", manifest.to_json())
        return manifest
