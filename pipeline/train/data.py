"""Fusion training data: the pivot's token shards zipped by index with every source's aligned shards.

Order is a pure function of (seed, epoch, rank, window): shards are permuted per epoch and dealt round-robin to
workers; each worker takes its shards ``window`` at a time and permutes the rows of those shards together. Capture
plans order samples by id, so a shard often holds one task or one origin only (ids share prefixes): shuffling rows
within single shards would train on runs of one task at a time. At most ``window`` shards per set are decoded at
once (plus the shards of a batch that straddles two windows), list columns are sliced straight from the Arrow
buffers as numpy views, and a resumed run skips whole windows by their manifest row counts.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch

from pipeline.errors import ShardError, TrainError
from pipeline.io.reader import ShardSet, verify
from pipeline.losses.mince import gold_logprobs

PIVOT_COLUMNS = ["sample_id", "input_ids", "response_start", "n_positions"]
SOURCE_COLUMNS = ["sample_id", "src_index", "mapped_ids", "mapped_logprobs"]  # mapped: MinCE reads the gold there


class _Lists:
    """A list<…> column as one flat numpy array plus offsets: row r is ``flat[off[r]:off[r + 1]]``."""

    def __init__(self, col: pa.ChunkedArray, dtype):
        arr = col.combine_chunks()
        self.off = arr.offsets.to_numpy()
        self.flat = arr.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)

    def __getitem__(self, r: int) -> np.ndarray:
        return self.flat[self.off[r]:self.off[r + 1]]

    def bad_rows(self) -> np.ndarray:
        """Rows holding NaN or +inf."""
        bad = np.isnan(self.flat) | np.isposinf(self.flat)
        per_row = np.add.reduceat(bad, self.off[:-1]) if self.flat.size else np.zeros(len(self.off) - 1)
        return (per_row > 0) & (np.diff(self.off) > 0)


@dataclass
class ShardRows:
    """One shard of the pivot and of every source, decoded into numpy."""

    where: str
    sample_id: list[str]
    input_ids: _Lists
    response_start: np.ndarray
    n_positions: np.ndarray
    sources: list[dict]  # per source: src_index, logprobs (the column the loss reads), mapped_ids, mapped_logprobs, bad


def shard_name(shards: ShardSet, index: int) -> str:
    """Shard ``index`` of a set as printed in errors (its folder, local or a URL, and its file), never opened here:
    shards are read only through ``ShardSet`` (verified, local or object store)."""
    return f"{shards.folder}/{shards.manifest.shards[index].file}"


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

    def steps_per_epoch(self, batch_size: int, world: int, seed: int, epochs: int) -> int:
        """Full batches every worker can make in every epoch: equal across workers and epochs, so DDP never
        waits on a worker that ran out, and ``step // steps_per_epoch`` is the epoch on resume."""
        rows = [sum(self.pivot.manifest.shards[i].rows for i in self.shard_order(seed, e, r, world))
                for e in range(epochs) for r in range(world)]
        steps = min(rows) // batch_size
        if steps < 1:
            raise TrainError(f"batch_size={batch_size} is larger than the {min(rows)} samples a worker gets")
        return steps

    def _read(self, shard: int, use_mapped: bool) -> ShardRows:
        piv = self.pivot.read(shard, PIVOT_COLUMNS)
        ids = piv.column("sample_id").to_pylist()
        sources = []
        for s in self.sources:
            col = "mapped_logprobs" if use_mapped else "rank_logprobs"
            t = s.read(shard, list(dict.fromkeys(SOURCE_COLUMNS + [col])))
            if t.column("sample_id").to_pylist() != ids:
                raise ShardError(f"{shard_name(s, shard)}: rows do not hold the pivot's samples in the pivot's order")
            lps = _Lists(t.column(col), np.float32)
            sources.append({"src_index": _Lists(t.column("src_index"), np.int64), "logprobs": lps,
                            "mapped_ids": _Lists(t.column("mapped_ids"), np.int64),
                            "mapped_logprobs": _Lists(t.column("mapped_logprobs"), np.float32),
                            "bad": lps.bad_rows(), "name": s.manifest.name})
        where = posixpath.basename(self.pivot.manifest.shards[shard].file)
        return ShardRows(where, ids, _Lists(piv.column("input_ids"), np.int64),
                         piv.column("response_start").to_numpy(), piv.column("n_positions").to_numpy(), sources)

    def batches(self, seed: int, epoch: int, rank: int, world: int, batch_size: int, start_step: int = 0,
                use_mapped: bool = False, window: int = 8) -> Iterator[list[tuple[ShardRows, int]]]:
        """Batches of (shard, row) from ``start_step`` of ``epoch`` for this worker, rows shuffled across each
        ``window`` consecutive shards of its order."""
        if window < 1:
            raise TrainError(f"shuffle_shards must be >= 1, got {window}")
        skip = start_step * batch_size
        buf: list = []
        order = self.shard_order(seed, epoch, rank, world)
        for g in range(0, len(order), window):
            group = order[g:g + window]
            rows = [self.pivot.manifest.shards[shard].rows for shard in group]
            total = sum(rows)
            if skip >= total:
                skip -= total
                continue
            data: list[ShardRows] = []  # drop the previous window before decoding the next one
            data = [self._read(shard, use_mapped) for shard in group]
            owner = np.repeat(np.arange(len(group)), rows)
            local = np.arange(total) - np.repeat(np.cumsum(rows) - rows, rows)
            for i in np.random.default_rng([seed, epoch, rank, g]).permutation(total)[skip:]:
                buf.append((data[owner[i]], int(local[i])))
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
    sample_ids: list[str] = field(default_factory=list)


def collate(batch: list[tuple[ShardRows, int]], nan_policy: str, pad_id: int) -> Batch:
    """(shard, row) pairs → padded tensors; stored log-probs with NaN/+inf follow ``nan_policy``."""
    width = max(len(d.input_ids[r]) for d, r in batch)
    n, n_src = len(batch), len(batch[0][0].sources)
    ids = np.full((n, width), pad_id, np.int64)
    att = np.zeros((n, width), np.int64)
    targets = np.full((n, width), -100, np.int64)
    mask = np.zeros((n, width), bool)
    ks = [len(batch[0][0].sources[j]["mapped_ids"].flat) // max(int(batch[0][0].n_positions.sum()), 1) or 1
          for j in range(n_src)]
    t_lp = [np.full((n, width, k), -np.inf, np.float32) for k in ks]
    t_ids = [np.full((n, width, k), -1, np.int64) for k in ks]
    t_mask = [np.zeros((n, width), bool) for _ in ks]
    t_tgt = [np.full((n, width), np.nan, np.float32) for _ in ks]
    skipped = 0
    for b, (d, r) in enumerate(batch):
        seq = d.input_ids[r]
        ids[b, : len(seq)] = seq
        att[b, : len(seq)] = 1
        rs, npos = int(d.response_start[r]), int(d.n_positions[r])
        if npos == 0:
            continue
        bad = [s["name"] for s in d.sources if s["bad"][r]]
        if bad:
            if nan_policy == "error":
                raise TrainError(f"{d.where}: sample {d.sample_id[r]!r}: NaN or +inf in the stored log-probs of "
                                 f"source {bad[0]!r} (set nan_policy=skip to drop such samples)")
            skipped += 1
            continue
        pos = slice(rs - 1, rs - 1 + npos)
        targets[b, pos] = seq[rs:rs + npos]
        mask[b, pos] = True
        for j, s in enumerate(d.sources):
            t_lp[j][b, pos] = s["logprobs"][r].reshape(npos, ks[j])
            t_ids[j][b, pos] = s["mapped_ids"][r].reshape(npos, ks[j])
            t_mask[j][b, pos] = s["src_index"][r] >= 0
            # MinCE's CE is on the pivot's gold tokens: read from the mapped top-k, not the source's own target
            t_tgt[j][b, pos] = gold_logprobs(torch.from_numpy(s["mapped_logprobs"][r].reshape(npos, ks[j])),
                                             torch.from_numpy(t_ids[j][b, pos]),
                                             torch.from_numpy(seq[rs:rs + npos])).numpy()
    teachers = [{"topk_logprobs": torch.from_numpy(t_lp[j]), "topk_ids": torch.from_numpy(t_ids[j]),
                 "mask": torch.from_numpy(t_mask[j]), "target_logprobs": torch.from_numpy(t_tgt[j])}
                for j in range(n_src)]
    return Batch(torch.from_numpy(ids), torch.from_numpy(att), torch.from_numpy(targets), torch.from_numpy(mask),
                 teachers, int(mask.sum()), skipped, [d.sample_id[r] for d, r in batch])
