"""The training loader: steps of length-grouped micro-batches for one worker, its resumable state, a prefetch thread.

A step takes ``batch_size × grad_accum_steps`` samples per worker in the deterministic order of ``FusionData``,
sorts them by length and cuts them into micro-batches: ``batch_size`` rows each, or, with a ``token_budget``, as
many rows as fit the budget (capture's ``token_budget_batches``), so one 4K-token sample and many short ones both fit.

The state is a few numbers: seed, epoch, the global count of samples taken in that epoch (all workers together)
and the shard fingerprint. A run resumed at another world size continues at the same global sample count (rounded
down to a whole step of the new world size); each worker's shards and rows then differ from the old run's, since
shards are dealt to workers by rank.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator

from pipeline.errors import TrainError
from pipeline.modeling.batching import token_budget_batches
from pipeline.train.data import Batch, FusionData, collate


@dataclass
class Step:
    """One optimizer step of one worker: its micro-batches and where the data stands after it."""

    micro: list[Batch]
    epoch: int
    samples: int  # global samples taken in ``epoch`` after this step
    padding: float  # padded share of the step's token slots


class TrainLoader:
    """Steps for worker ``rank`` of ``world``; ``state_dict`` / ``load_state_dict`` resume it."""

    def __init__(self, data: FusionData, *, seed: int, epochs: int, rank: int, world: int, batch_size: int,
                 grad_accum_steps: int = 1, token_budget: int | None = None, max_length: int | None = None,
                 window: int = 8, use_mapped: bool = False, nan_policy: str = "error", pad_id: int = 0):
        self.data, self.seed, self.epochs, self.rank, self.world = data, seed, epochs, rank, world
        self.batch_size, self.token_budget, self.max_length = batch_size, token_budget, max_length
        self.window, self.use_mapped, self.nan_policy, self.pad_id = window, use_mapped, nan_policy, pad_id
        self.per_step = batch_size * grad_accum_steps  # samples per worker per step
        self.steps_per_epoch = data.steps_per_epoch(self.per_step, world, seed, epochs)
        self.fingerprint = data.fingerprint()
        self.epoch, self.samples = 0, 0

    def state_dict(self) -> dict:
        """Where the data stands: enough to continue exactly (same world size) or at the same sample count."""
        return {"seed": self.seed, "epoch": self.epoch, "samples": self.samples, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict, force: bool = False) -> None:
        """Continue from ``state``; refuse another dataset or seed unless ``force``."""
        for key in ("fingerprint", "seed"):
            if state[key] != getattr(self, key) and not force:
                raise TrainError(f"the checkpoint's data {key} is {state[key]!r}, these shards and settings give "
                                 f"{getattr(self, key)!r}: it was made on another dataset (force=true to continue)")
        self.epoch, self.samples = int(state["epoch"]), int(state["samples"])

    def resume_note(self) -> str:
        """What resuming means at this world size (for the log)."""
        start = self._start_step()
        lost = self.samples - start * self.per_step * self.world
        return (f"epoch {self.epoch}, global sample {self.samples} of the epoch, step {start} of "
                f"{self.steps_per_epoch} at world size {self.world}"
                + (f" ({lost} samples of the last partial step are repeated)" if lost else ""))

    def _start_step(self) -> int:
        return self.samples // (self.per_step * self.world)

    def _steps(self) -> Iterator[Step]:
        for epoch in range(self.epoch, self.epochs):
            start = self._start_step() if epoch == self.epoch else 0
            batches = self.data.batches(self.seed, epoch, self.rank, self.world, self.per_step, start,
                                        self.use_mapped, self.window)
            for i, rows in zip(range(start, self.steps_per_epoch), batches):
                yield self._step(rows, epoch, (i + 1) * self.per_step * self.world)

    def _step(self, rows, epoch: int, samples: int) -> Step:
        lengths = [len(d.input_ids[r]) for d, r in rows]
        if self.max_length is not None:
            for (d, r), n in zip(rows, lengths):
                if n > self.max_length:
                    raise TrainError(f"{d.where}: sample {d.sample_id[r]!r} has {n} tokens, more than "
                                     f"max_length={self.max_length} (raise it, or filter the sample out)")
        if self.token_budget is not None:
            groups = token_budget_batches(lengths, self.token_budget)
        else:
            order = sorted(range(len(rows)), key=lambda i: lengths[i])
            groups = [order[g:g + self.batch_size] for g in range(0, len(order), self.batch_size)]
        slots = sum(max(lengths[i] for i in g) * len(g) for g in groups)
        micro = [collate([rows[i] for i in g], self.nan_policy, self.pad_id) for g in groups]
        return Step(micro, epoch, samples, 1 - sum(lengths) / slots)

    def __iter__(self) -> Iterator[Step]:
        """Steps from the current position; the next one is read and collated on a thread meanwhile."""
        q: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for step in self._steps():
                    if not put(step):
                        return
                put(None)
            except BaseException as e:  # re-raised in the consumer, naming the sample
                put(e)

        thread = threading.Thread(target=produce, name="train-loader-prefetch", daemon=True)
        thread.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                self.epoch, self.samples = item.epoch, item.samples
                if self.samples >= self.steps_per_epoch * self.per_step * self.world:
                    self.epoch, self.samples = item.epoch + 1, 0  # the epoch is complete
                yield item
        finally:
            stop.set()
            thread.join()
