"""Load a prompt/response dataset (JSONL, Parquet, or a `datasets` dataset) into validated, ordered samples.

Each record needs ``id`` and either ``prompt`` + ``response`` or chat ``messages`` (a list of ``{role, content}``
whose last message is the assistant's response). Every problem is reported with the file and the record at fault.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from pipeline.errors import InputError


@dataclass(frozen=True)
class Sample:
    """One validated sample: its id and the chat turns, the last being the response."""

    id: str
    messages: tuple[tuple[str, str], ...]  # (role, content)

    @property
    def response(self) -> str:
        """The response text (kept byte-identical for every model)."""
        return self.messages[-1][1]

    @property
    def response_sha256(self) -> str:
        """Hash of the response's UTF-8 bytes: align checks sources and pivot agree on it."""
        return hashlib.sha256(self.response.encode("utf-8")).hexdigest()


def _check_text(value, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}: field {field!r} is not valid UTF-8 (lone surrogate)") from None
    return value


def _check_roles(roles: list[str], where: str) -> None:
    """An optional system turn, then user and assistant alternating from user, ending with the assistant."""
    first = 1 if roles[0] == "system" else 0
    body = roles[first:]
    for j, role in enumerate(body):
        want = "user" if j % 2 == 0 else "assistant"
        if role != want:
            raise InputError(f"{where}: messages[{first + j}] has role {role!r} where {want!r} was expected (an optional "
                             f"'system' turn first, then 'user' and 'assistant' alternating)")
    if not body or body[-1] != "assistant":
        raise InputError(f"{where}: the last message must be the assistant's response, got role {roles[-1]!r}")


def to_sample(rec: dict, where: str) -> Sample:
    """Validate one raw record; ``where`` names the file and record for error messages."""
    if not isinstance(rec, dict):
        raise InputError(f"{where}: a record must be an object, got {type(rec).__name__}")
    if "id" not in rec or rec["id"] is None:
        raise InputError(f"{where}: missing field 'id'")
    rid = rec["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise InputError(f"{where}: field 'id' must be a string or integer, got {type(rid).__name__}")
    rid = str(rid)
    where = f"{where} (id {rid!r})"
    if rec.get("messages") is not None:
        msgs = rec["messages"]
        if not isinstance(msgs, (list, tuple)) or len(msgs) < 2:
            raise InputError(f"{where}: 'messages' must be a list of at least two turns")
        turns = []
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise InputError(f"{where}: messages[{j}] must have 'role' and 'content'")
            turns.append((_check_text(m["role"], where, f"messages[{j}].role"),
                          _check_text(m["content"], where, f"messages[{j}].content")))
        _check_roles([r for r, _ in turns], where)
    else:
        for f in ("prompt", "response"):
            if rec.get(f) is None:
                raise InputError(f"{where}: missing field {f!r} (give 'prompt' and 'response', or 'messages')")
        turns = [("user", _check_text(rec["prompt"], where, "prompt")),
                 ("assistant", _check_text(rec["response"], where, "response"))]
    if not turns[-1][1].strip():
        raise InputError(f"{where}: empty response")
    return Sample(rid, tuple(turns))


def _jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, "rb") as f:
        yield from _jsonl_lines(f, str(path))


def _jsonl_lines(f, path: str) -> Iterator[tuple[str, dict]]:
    for n, raw in enumerate(f, 1):
        where = f"{path}:{n}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{where}: invalid UTF-8 at byte {e.start}") from None
        if not line.strip():
            continue
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: invalid JSON ({e.msg})") from None


def _parquet(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    files = sorted(path.glob("**/*.parquet")) if path.is_dir() else [path]
    for file in files:
        try:
            table = pq.read_table(file)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise InputError(f"{file}: not a readable Parquet file ({e})") from None
        for n, rec in enumerate(table.to_pylist()):
            yield f"{file} row {n}", rec


def _hf(spec: str) -> Iterator[tuple[str, dict]]:
    import datasets

    path = Path(spec)
    try:
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(spec.removeprefix("hf://datasets/"))
    except Exception as e:
        raise InputError(f"{spec}: cannot load as a `datasets` dataset ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise InputError(f"{spec}: dataset has splits {list(ds)}, expected 'train'")
        ds = ds["train"]
    for n, rec in enumerate(ds):
        yield f"{spec} row {n}", rec


def _object_store(spec: str) -> Iterator[tuple[str, dict]]:
    """A .jsonl / .parquet object, or a prefix of .parquet objects, on s3:// or gs:// (read through pyarrow.fs in
    this process, which resolves the URL itself: no credential travels)."""
    import io

    import pyarrow.parquet as pq

    from pipeline.io.fs import location

    loc = location(spec)
    if loc.is_file() and loc.name.endswith((".jsonl", ".json")):
        return _jsonl_lines(io.BytesIO(loc.read_bytes()), loc.url)
    files = [loc] if loc.is_file() else sorted(
        (loc / e.path[len(loc.path) + 1:] for e in loc.list(recursive=True)
         if e.is_file and e.base_name.endswith(".parquet")), key=lambda f: f.path)
    if not files or not all(f.name.endswith(".parquet") for f in files):
        raise InputError(f"{spec}: no such input (expected a .jsonl/.parquet object or a prefix of .parquet objects)")

    def rows():
        for f in files:
            try:
                table = pq.read_table(f.path, filesystem=f.fs)
            except Exception as e:  # pyarrow raises several types for a bad file
                raise InputError(f"{f}: not a readable Parquet file ({e})") from None
            for n, rec in enumerate(table.to_pylist()):
                yield f"{f} row {n}", rec
    return rows()


def iter_records(spec: str) -> Iterator[tuple[str, dict]]:
    """Raw records with a location string, from any supported input."""
    if "://" in spec and spec.split("://", 1)[0] in ("s3", "gs", "gcs"):
        return _object_store(spec)
    path = Path(spec)
    if path.is_file() and path.suffix in {".jsonl", ".json"}:
        return _jsonl(path)
    if path.is_file() and path.suffix == ".parquet":
        return _parquet(path)
    if path.is_dir() and not ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()) \
            and any(path.glob("**/*.parquet")) and not any(path.glob("**/*.jsonl")):
        return _parquet(path)
    if path.is_dir() or spec.startswith("hf://") or (not path.exists() and spec.count("/") == 1):
        return _hf(spec)
    raise InputError(f"{spec}: no such input (expected a .jsonl/.parquet file, a dataset folder or a Hub id)")


def load_samples(spec: str, limit: int | None = None) -> list[Sample]:
    """All samples of ``spec``, validated, duplicate ids refused, in the stable order of their ids."""
    samples: dict[str, tuple[Sample, str]] = {}
    for where, rec in iter_records(spec):
        s = to_sample(rec, where)
        if s.id in samples:
            raise InputError(f"{where}: duplicate id {s.id!r} (first seen at {samples[s.id][1]})")
        samples[s.id] = (s, where)
    if not samples:
        raise InputError(f"{spec}: no records")
    ordered = [samples[k][0] for k in sorted(samples)]
    return ordered[:limit] if limit else ordered


def plan_fingerprint(samples: Iterable[Sample]) -> str:
    """Hash of the ordered (id, content) list: equal for every model captured from the same input."""
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps([s.id, s.messages], ensure_ascii=False).encode())
    return h.hexdigest()[:16]
