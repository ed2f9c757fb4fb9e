"""Align job configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config import JobConfig
from pipeline.errors import ConfigError


@dataclass
class SourceSpec:
    """One source model: its capture folder and its tokenizer."""

    shards: str = ""  # capture folder of the source (holds manifest.json)
    model: str = ""  # the source's tokenizer: local folder, Hub id, or tiny:<name>
    name: str | None = None  # folder name under <output>/aligned/ (default: the capture folder's name)
    vocab_map: str | None = None  # a prebuilt vocab_map.parquet to reuse (checked against both tokenizers)


@dataclass
class AlignConfig(JobConfig):
    """Settings of one align run: every source onto the pivot."""

    pivot: str = ""  # the pivot's capture folder (k=0 is enough: tokens and offsets)
    pivot_model: str = ""  # the pivot's tokenizer
    sources: list[SourceSpec] = field(default_factory=list)  # [{shards, model, name?}, …]: each source to align
    output: str = ""  # root; writes <output>/aligned/<source>/
    edit_candidates: int = 8  # pivot candidates per unmatched source token (longest byte prefixes first)
    max_distance: int | None = None  # leave source tokens unmapped when nothing is this close (byte edit distance)
    cooc: bool = True  # choose among the candidates by co-occurrence counts from offset-aligned text
    cooc_samples: int = 2000  # samples used to gather co-occurrence counts
    require_same_span: bool = False  # align 1:1 spans only (default: tokens starting at the same character)
    dtw_fallback: bool = True  # align by DTW when a shard carries no character offsets
    overwrite: bool = False  # replace a folder written with another configuration
    num_cpus_per_task: float = 1.0  # CPUs one shard-alignment task reserves (fractional on small machines)
    ray_address: str | None = None  # join a cluster; default: RAY_ADDRESS or a local Ray
    progress: bool = True  # progress bars on stderr

    OUTPUT_KEYS = ("edit_candidates", "max_distance", "cooc", "cooc_samples", "require_same_span", "dtw_fallback")

    def validate(self) -> None:
        """Raise ConfigError naming the field at fault."""
        for f in ("pivot", "pivot_model", "output"):
            if not getattr(self, f):
                raise ConfigError(f"align: `{f}` is required")
        if not self.sources:
            raise ConfigError("align: `sources` must list at least one {shards, model}")
        for i, s in enumerate(self.sources):
            if not s.shards or not s.model:
                raise ConfigError(f"align: sources[{i}] needs both `shards` and `model`")
        if self.edit_candidates < 0:
            raise ConfigError("align: edit_candidates must be >= 0")
        if self.num_cpus_per_task <= 0:
            raise ConfigError("align: num_cpus_per_task must be > 0")
