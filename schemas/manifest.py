"""``manifest.json``: written last, after every shard; lists the shards a reader may open.

The manifest is the only index: a reader never lists the folder, so temporary and half-written files stay invisible.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.errors import ShardError

NAME, VERSION = "manifest", 1


@dataclass(frozen=True)
class ShardPlan:
    """How ``num_samples`` samples split into shards of ``shard_size``: shard ``i`` holds samples
    ``first_sample(i) .. first_sample(i) + rows(i) - 1``, the last shard the remainder."""

    num_samples: int
    shard_size: int

    @property
    def num_shards(self) -> int:
        """Shards in the plan (the last one may be short)."""
        return -(-self.num_samples // self.shard_size)

    def first_sample(self, shard: int) -> int:
        """Sample index of the first row of ``shard``."""
        return shard * self.shard_size

    def rows(self, shard: int) -> int:
        """Samples in ``shard``."""
        return min(self.shard_size, self.num_samples - shard * self.shard_size)

    def samples(self, shard: int) -> range:
        """Sample indices of ``shard``, in order."""
        return range(self.first_sample(shard), self.first_sample(shard) + self.rows(shard))


@dataclass
class ShardEntry:
    """One complete shard: its file, counts and checksum."""

    index: int
    file: str
    rows: int
    tokens: int  # response positions (captured tokens)
    bytes: int
    sha256: str
    first_sample: int  # sample_index of its first row (shard plan check)


@dataclass
class Manifest:
    """Everything needed to validate, resume and zip shard sets by index."""

    kind: str  # "logits" | "aligned"
    shard_schema: str
    shard_schema_version: int
    name: str  # model (or source) name
    config_fingerprint: str
    shard_size: int
    num_samples: int
    plan_fingerprint: str  # hash of the ordered sample ids: equal across models of one plan
    shards: list[ShardEntry]
    fingerprints: dict[str, str] = field(default_factory=dict)  # model, tokenizer, pivot tokenizer, map ...
    codec: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # truncated, skipped, padding ...
    stats: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    manifest_version: int = VERSION

    def to_json(self) -> str:
        """Stable JSON text."""
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        """Load ``folder/manifest.json``; ShardError when it is missing or malformed."""
        path = Path(folder) / "manifest.json"
        if not path.is_file():
            raise ShardError(f"{folder}: no manifest.json (the job that writes it has not finished, "
                             f"or this is not a shard folder)")
        return cls.parse(path.read_text(), where=str(path))

    @classmethod
    def parse(cls, text: str, where: str) -> "Manifest":
        """A manifest from its JSON text (read from any filesystem); ``where`` names it in errors."""
        try:
            data = json.loads(text)
            if data.get("manifest_version") != VERSION:
                raise ShardError(f"{where}: manifest version {data.get('manifest_version')!r} is not supported")
            data["shards"] = [ShardEntry(**s) for s in data["shards"]]
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ShardError(f"{where}: malformed manifest ({e})") from None

    @property
    def plan(self) -> ShardPlan:
        """The shard plan the shards follow."""
        return ShardPlan(self.num_samples, self.shard_size)

    @property
    def total_tokens(self) -> int:
        """Captured positions over all shards."""
        return sum(s.tokens for s in self.shards)

    @property
    def total_bytes(self) -> int:
        """Shard bytes on disk."""
        return sum(s.bytes for s in self.shards)
