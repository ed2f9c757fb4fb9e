"""Typed job configs: a YAML file plus ``key=value`` overrides, unknown keys rejected, values validated.

Every job config is a ``@dataclass`` deriving from :class:`JobConfig`. Nested dataclass fields take dotted
overrides (``loss.lambda_gld=0.5``). Types are coerced from the strings the command line gives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import ConfigError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_bytes(text: str | int, setting: str = "gpu_memory") -> int:
    """``80GiB``, ``141GB``, ``8e10`` → bytes; ConfigError naming ``setting`` otherwise."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise ConfigError(f"{setting} must be a size such as 80GiB or 141GB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


T = TypeVar("T", bound="JobConfig")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (often a string from the command line) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null", ""}):
            return None
        return _coerce(value, args[0], key)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}={value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return _from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in _TRUE:
            return True
        if str(value).lower() in _FALSE:
            return False
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r} for {cls.__name__}; "
                          f"known keys: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from None


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    cur[parts[-1]] = value


def parse_overrides(pairs: list[str]) -> dict:
    """``["a=1", "b.c=x"]`` → nested dict; a pair without ``=`` is an error that names it."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        _set_dotted(out, key.strip(), value)
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclasses.dataclass
class JobConfig:
    """Base for job configs: load, override, validate, fingerprint."""

    def validate(self) -> None:  # overridden by each job
        """Raise ConfigError naming the field when a value is out of range."""

    @classmethod
    def load(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
        """Read YAML ``path`` (may be None), apply ``key=value`` overrides, validate."""
        data: dict = {}
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"config file {str(p)!r} does not exist")
            try:
                data = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None
            if not isinstance(data, dict):
                raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
        return cls.from_dict(_merge(data, parse_overrides(overrides or [])))

    @classmethod
    def from_dict(cls: type[T], data: dict) -> T:
        """Build from a nested dict (e.g. ``to_dict()`` sent to Ray workers), unknown keys refused, validated."""
        cfg = _from_dict(cls, data)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        """Plain nested dict (JSON/YAML serialisable)."""
        return dataclasses.asdict(self)

    def fingerprint(self, keys: list[str]) -> str:
        """sha256 of the named fields: the fields that change what the job writes."""
        d = self.to_dict()
        return hashlib.sha256(json.dumps({k: d[k] for k in keys}, sort_keys=True).encode()).hexdigest()[:16]


def local_path(p: str | None) -> str | None:
    """An absolute path for a local file or folder; Hub ids, URLs and ``tiny:`` names are returned unchanged.

    Jobs resolve their paths in the driver: Ray workers (Ray Train's above all) do not share its working directory.
    """
    if not p or "://" in p or p.startswith("tiny:"):
        return p
    path = Path(p).expanduser()
    if path.exists() or path.is_absolute() or p.startswith(".") or len(path.parts) != 2:
        return str(path.resolve())
    return p  # ORG/NAME that is not a local folder: a Hub id
