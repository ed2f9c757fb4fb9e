"""Helpers shared by every schema: versioned metadata and a validator that explains what is wrong."""

from __future__ import annotations

import pyarrow as pa

from pipeline.errors import SchemaError


def with_metadata(schema: pa.Schema, name: str, version: int, extra: dict[str, str] | None = None) -> pa.Schema:
    """Return ``schema`` carrying ``schema``/``schema_version`` (and ``extra``) in its metadata."""
    md = {b"schema": name.encode(), b"schema_version": str(version).encode()}
    md.update({k.encode(): str(v).encode() for k, v in (extra or {}).items()})
    return schema.with_metadata(md)


def metadata(schema: pa.Schema) -> dict[str, str]:
    """The schema's key/value metadata as ``str`` → ``str``."""
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def check(schema: pa.Schema, expected: pa.Schema, name: str, version: int, where: str = "") -> None:
    """Raise SchemaError naming the first difference between ``schema`` and ``expected``."""
    where = f"{where}: " if where else ""
    md = metadata(schema)
    if md.get("schema") != name:
        raise SchemaError(f"{where}not a {name} file (schema metadata says {md.get('schema')!r})")
    if md.get("schema_version") != str(version):
        raise SchemaError(f"{where}{name} schema version {md.get('schema_version')!r} is not supported "
                          f"(this logitfuse reads version {version})")
    for field in expected:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            raise SchemaError(f"{where}missing column {field.name!r}")
        if not schema.field(idx).type.equals(field.type):
            raise SchemaError(f"{where}column {field.name!r} has type {schema.field(idx).type}, expected {field.type}")
