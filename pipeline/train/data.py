"""Fusion training data: the pivot's token shards zipped by index with every source's aligned shards.

Order is a pure function of (seed, epoch, rank): shards are permuted per epoch and dealt round-robin to workers,
rows are permuted within a shard. Only one shard per set is in memory at a time, and a resumed run skips whole
shards by their manifest row counts without reading them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from pipeline.errors import ShardError, TrainError
from pipeline.io.reader import ShardSet, verify

PIVOT_COLUMNS = ["sample_id", "status", "input_ids", "response_start", "n_positions"]
SOURCE_COLUMNS = ["sample_id", "n_positions", "src_index", "rank_logprobs", "mapped_ids", "mapped_logprobs",
                  "target_logprob"]


class FusionData:
    """Pivot shards + aligned source shards on one shard plan."""

    def __init__(self, pivot_dir: str, source_dirs: list[str]):
        self.pivot = ShardSet(pivot_dir)
        self.sources = [ShardSet(d) for d in source_dirs]

    def check(self, checksums: bool = True) -> None:
        """Refuse missing, truncated or corrupted shards and mismatched plans, naming the shard, before any step."""
        for s in [self.pivot, *self.sources]:
            problems = verify(s.folder, checksums=checksums)
            if problems:
                raise ShardError(f"cannot train: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                                    if len(problems) > 1 else ""))
        for s in self.sources:
            if s.manifest.kind != "aligned":
                raise ShardError(f"{s.folder} is not an aligned shard set (run `logitfuse align` first)")
            if s.manifest.plan_fingerprint != self.pivot.manifest.plan_fingerprint or len(s) != len(self.pivot):
                raise ShardError(f"{s.folder} was aligned on another shard plan than {self.pivot.folder}")
            if s.manifest.fingerprints.get("pivot_config") != self.pivot.manifest.config_fingerprint:
                raise ShardError(f"{s.folder} was aligned to another capture of the pivot than {self.pivot.folder}")

    def fingerprint(self) -> str:
        """Hash of every shard checksum: a resumed run refuses changed data."""
        sets = [[e.sha256 for e in s.manifest.shards] for s in [self.pivot, *self.sources]]
        return hashlib.sha256(json.dumps(sets).encode()).hexdigest()[:16]

    def shard_order(self, seed: int, epoch: int, rank: int, world: int) -> list[int]:
        """This worker's shards for ``epoch``."""
        perm = np.random.default_rng([seed, epoch]).permutation(len(self.pivot))
        return [int(i) for i in perm[rank::world]]

    def steps_per_epoch(self, batch_size: int, world: int, seed: int = 0) -> int:
        """Full batches every worker can make (equal across workers, so DDP never waits on a finished one)."""
        rows = [sum(self.pivot.manifest.shards[i].rows for i in self.shard_order(seed, 0, r, world))
                for r in range(world)]
        steps = min(rows) // batch_size
        if steps < 1:
            raise TrainError(f"batch_size={batch_size} is larger than the {min(rows)} samples a worker gets")
        return steps

    def batches(self, seed: int, epoch: int, rank: int, world: int, batch_size: int, start_step: int = 0
                ) -> Iterator[list[tuple[dict, list[dict], str]]]:
        """Batches of (pivot row, [source rows], shard path) from ``start_step`` of ``epoch`` for this worker."""
        skip = start_step * batch_size
        buf: list = []
        for shard in self.shard_order(seed, epoch, rank, world):
            rows = self.pivot.manifest.shards[shard].rows
            if skip >= rows:
                skip -= rows
                continue
            piv = self.pivot.read(shard, PIVOT_COLUMNS).to_pylist()
            srcs = [s.read(shard, SOURCE_COLUMNS).to_pylist() for s in self.sources]
            where = str(self.pivot.path(shard).name)
            order = np.random.default_rng([seed, epoch, shard]).permutation(rows)
            for r in order[skip:]:
                buf.append((piv[r], [s[r] for s in srcs], where))
                if len(buf) == batch_size:
                    yield buf
                    buf = []
            skip = 0


@dataclass
class Batch:
    """Tensors of one step. Positions t predict input_ids[t + 1]; ``teachers`` per source."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    targets: torch.Tensor  # [B, L], -100 outside the response
    mask: torch.Tensor  # [B, L] bool, response positions
    teachers: list[dict]  # per source: topk_logprobs, topk_ids [B, L, k], mask [B, L], target_logprobs [B, L]
    tokens: int
    skipped_bad: int  # samples dropped by nan_policy=skip


def _bad(values: np.ndarray) -> bool:
    return bool(np.isnan(values).any() or np.isposinf(values).any())


def collate(batch: list[tuple[dict, list[dict], str]], names: list[str], use_mapped: bool, nan_policy: str,
            pad_id: int) -> Batch:
    """Rows → padded tensors; stored log-probs are checked for NaN/+inf (``nan_policy``)."""
    width = max(len(p["input_ids"]) for p, _, _ in batch)
    n = len(batch)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    att = torch.zeros((n, width), dtype=torch.long)
    targets = torch.full((n, width), -100, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.bool)
    teachers = []
    for _ in names:
        teachers.append({"mask": torch.zeros((n, width), dtype=torch.bool),
                         "target_logprobs": torch.full((n, width), float("nan"))})
    skipped = 0
    for b, (p, srcs, where) in enumerate(batch):
        seq = p["input_ids"]
        ids[b, : len(seq)] = torch.tensor(seq)
        att[b, : len(seq)] = 1
        rs, npos = p["response_start"], p["n_positions"]
        if npos == 0:
            continue
        bad = [name for name, s in zip(names, srcs)
               if _bad(np.asarray(s["rank_logprobs"], np.float32)) or _bad(np.asarray(s["mapped_logprobs"], np.float32))]
        if bad:
            if nan_policy == "error":
                raise TrainError(f"{where}: sample {p['sample_id']!r}: NaN or +inf in the stored log-probs of "
                                 f"source {bad[0]!r} (set nan_policy=skip to drop such samples)")
            skipped += 1
            continue
        pos = slice(rs - 1, rs - 1 + npos)
        targets[b, pos] = torch.tensor(seq[rs:])
        mask[b, pos] = True
        for t, s in zip(teachers, srcs):
            kk = len(s["mapped_ids"]) // max(s["n_positions"], 1)  # sources may differ in k
            if "topk_logprobs" not in t:
                t["topk_logprobs"] = torch.full((n, width, kk), float("-inf"))
                t["topk_ids"] = torch.full((n, width, kk), -1, dtype=torch.long)
            lp = s["mapped_logprobs"] if use_mapped else s["rank_logprobs"]
            t["topk_logprobs"][b, pos] = torch.tensor(np.asarray(lp, np.float32).reshape(npos, kk))
            t["topk_ids"][b, pos] = torch.tensor(np.asarray(s["mapped_ids"], np.int64).reshape(npos, kk))
            t["mask"][b, pos] = torch.tensor(np.asarray(s["src_index"]) >= 0)
            t["target_logprobs"][b, pos] = torch.tensor(np.asarray(s["target_logprob"], np.float32))
    for t in teachers:
        t.setdefault("topk_logprobs", torch.full((n, width, 1), float("-inf")))
        t.setdefault("topk_ids", torch.full((n, width, 1), -1, dtype=torch.long))
    return Batch(ids, att, targets, mask, teachers, int(mask.sum()), skipped)
