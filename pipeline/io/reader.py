"""Read shard sets through their manifest (never by listing the folder) and verify them, on a local folder, an
object store (``s3://``, ``gs://``) or a published dataset (``hf://datasets/…``, read only)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import SchemaError, ShardError
from pipeline.io.fs import Location, is_url, location
from pipeline.io.resolve import resolve_shard_folder
from pipeline.io.verified import verify_file
from schemas import aligned_shard, logit_shard
from schemas.common import metadata
from schemas.manifest import Manifest

_VALIDATORS = {logit_shard.NAME: logit_shard.validate, aligned_shard.NAME: aligned_shard.validate}


class ShardSet:
    """A complete shard set: ``manifest.json`` plus the shards it lists."""

    def __init__(self, folder: str | Path | Location):
        self.folder = _shard_folder(folder)
        self.manifest = m = _read_manifest(self.folder)
        planned = m.plan.num_shards if m.shard_size > 0 else None
        if len(m.shards) != planned:  # a dropped or added entry would silently change what every reader sees
            raise ShardError(f"{self.folder / 'manifest.json'}: lists {len(m.shards)} shards, the plan of "
                             f"{m.num_samples} samples in shards of {m.shard_size} has {planned}")

    def __len__(self) -> int:
        return len(self.manifest.shards)

    def path(self, index: int) -> Location:
        """Location of shard ``index`` (usable as a path when local), verified against the manifest (size and
        sha256, once per process); ShardError naming the file when it is missing, truncated or corrupted."""
        e = self.manifest.shards[index]
        return verify_file(self.folder / e.file, e.bytes, e.sha256)

    def open(self, index: int):
        """Shard ``index`` as a seekable pyarrow file (local or object store), verified first."""
        p = self.path(index)
        try:
            return p.open_input()
        except FileNotFoundError:
            raise ShardError(f"{p}: missing (listed in the manifest)") from None

    def schema(self, index: int = 0) -> pa.Schema:
        """Validated schema of shard ``index``."""
        return self._schema_at(self.path(index))

    def _schema_at(self, p: Location) -> pa.Schema:
        """Validated schema of the already verified shard ``p`` (one verification per read: on an object store each
        is a HEAD request)."""
        try:
            with p.open_input() as f:
                s = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as e:
            raise ShardError(f"{p}: not a readable Parquet file ({e})") from None
        _VALIDATORS[self.manifest.shard_schema](s, where=str(p))
        return s

    def codec(self):
        """The codec spec the shards were written with (from the schema metadata)."""
        from pipeline.io.codec import CodecSpec

        return CodecSpec.from_metadata(metadata(self.schema(0)))

    def read(self, index: int, columns: list[str] | None = None) -> pa.Table:
        """Shard ``index`` as one table (validated schema)."""
        p = self.path(index)
        self._schema_at(p)
        try:
            return pq.read_table(p.path, filesystem=p.fs, columns=columns)
        except (pa.ArrowInvalid, OSError) as e:
            raise ShardError(f"{p}: cannot be read ({e})") from None

    def iter_batches(self, index: int, batch_rows: int = 64, columns: list[str] | None = None
                     ) -> Iterator[pa.RecordBatch]:
        """Stream shard ``index`` in row batches (bounded memory)."""
        p = self.path(index)
        self._schema_at(p)
        try:
            with p.open_input() as f:
                yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns)
        except (pa.ArrowInvalid, OSError) as e:
            raise ShardError(f"{p}: cannot be read ({e})") from None

    def iter_rows(self, columns: list[str] | None = None) -> Iterator[dict]:
        """Every row of every shard, in plan order, as Python dicts."""
        for i in range(len(self)):
            for batch in self.iter_batches(i, columns=columns):
                yield from batch.to_pylist()


def decode_topk(codec, row: dict, where: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ids ``[n, k]`` int32 and log-probs ``[n, k]`` float32 of one logit-shard row; a blob that does not
    decode is a SchemaError naming the sample (and ``where``, the shard, when given)."""
    from pipeline.io.codec import decode

    try:
        return decode(codec, row["topk_ids"], row["topk_logprobs"], row["n_positions"])
    except SchemaError as e:
        raise SchemaError(f"{f'{where}: ' if where else ''}sample {row.get('sample_id')!r}: {e}") from None


def verify(folder: str | Path | Location, checksums: bool = True) -> list[str]:
    """Every problem found in a shard set, each naming its file; an empty list means valid."""
    try:
        shards = ShardSet(folder)
    except ShardError as e:
        return [str(e)]
    folder = shards.folder
    problems: list[str] = []
    m = shards.manifest
    for i, e in enumerate(m.shards):
        p = folder / e.file
        try:
            verify_file(p, e.bytes, e.sha256 if checksums else None)
        except ShardError as err:
            problems.append(str(err))
            continue
        try:
            with p.open_input() as f:
                pf = pq.ParquetFile(f)
                _VALIDATORS[m.shard_schema](pf.schema_arrow, where=str(p))
                rows = pf.metadata.num_rows
        except (pa.ArrowInvalid, OSError, SchemaError) as err:
            problems.append(f"{p}: {err}")
            continue
        want, first = m.plan.rows(i), m.plan.first_sample(i)
        if rows != e.rows or rows != want:
            problems.append(f"{p}: {rows} rows, manifest says {e.rows}, plan says {want}")
        if e.first_sample != first:
            problems.append(f"{p}: first sample {e.first_sample}, plan says {first}")
    return problems


def _shard_folder(spec: str | Path | Location) -> Location:
    """A plain folder or object-store prefix unchanged; a published (``hf://``) or staged dataset's manifest folder."""
    if isinstance(spec, Location) or (is_url(spec) and not str(spec).startswith("hf://")):
        return location(spec)
    return location(resolve_shard_folder(spec))


def _read_manifest(folder: Location) -> Manifest:
    where = folder / "manifest.json"
    try:
        text = where.read_text()
    except FileNotFoundError:
        raise ShardError(f"{folder}: no manifest.json (the job that writes it has not finished, "
                         f"or this is not a shard folder)") from None
    except IsADirectoryError:
        raise ShardError(f"{where}: not a file") from None
    return Manifest.parse(text, where=str(where))
