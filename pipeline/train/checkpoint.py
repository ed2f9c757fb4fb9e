"""Training checkpoints with torch.distributed.checkpoint: each rank writes its own shards of the model and optimizer
(``dcp/``), its RNG states (``rng-<rank>.pt``); rank 0 the scheduler, and ``state.json`` LAST.

Ray Train V2 merges every rank's folder of one report into one checkpoint folder. ``state.json`` (step, data
position, fingerprint) is written by rank 0 into that merged folder only after every rank's upload has finished
(a barrier after ``ray.train.report``), so a folder without it is a checkpoint cut short and is never resumed from.
DCP reshards on load: a checkpoint of N ranks loads into M ranks, FSDP or DDP alike.

Checkpoints live where Ray Train's ``storage_path`` puts them: a local folder or an object store. Each rank writes
its part to a local temporary folder and Ray Train uploads it; loading reads straight from the storage through
pyarrow (``ArrowReader``: one ranged read per stored tensor, so a rank fetches only what it loads).
"""

from __future__ import annotations

import io
import json
import posixpath
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import torch
from torch.distributed.checkpoint.filesystem import FileSystemBase, FileSystemReader

from pipeline.io.fs import Location, location

STATE = "state.json"
SHARDS = "dcp"


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA, when present) RNG states of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _state_dicts(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


def save(folder: str | Path, rank: int, model, optimizer, scheduler) -> None:
    """Write this rank's part of a checkpoint (collective: every rank calls it). No state.json: see :func:`finish`."""
    import torch.distributed.checkpoint as dcp

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dcp.save(_state_dicts(model, optimizer), checkpoint_id=str(folder / SHARDS))
    torch.save(rng_state(), folder / f"rng-{rank}.pt")
    if rank == 0:
        torch.save(scheduler.state_dict(), folder / "scheduler.pt")


def finish(checkpoint, state: dict) -> None:
    """Mark a persisted checkpoint complete: write ``state.json`` into it (rank 0, after every rank's upload).
    ``checkpoint``: Ray Train's ``Checkpoint`` or a :class:`Location`."""
    fs = checkpoint.fs if isinstance(checkpoint, Location) else checkpoint.filesystem
    path = f"{checkpoint.path}/{STATE}"
    data = json.dumps(state, indent=1).encode()
    if not isinstance(fs, pafs.LocalFileSystem):  # one PUT: the object appears whole or not at all
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    tmp = path + ".tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def load(folder: Location, rank: int, model, optimizer, scheduler) -> dict:
    """Restore a checkpoint (local or object store) into the given (sharded or replicated) objects, resharding as
    needed; returns its state.

    RNG states are restored when the checkpoint has this rank's (same world size), else left as seeded."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    sd = _state_dicts(model, optimizer)
    dcp.load(sd, storage_reader=ArrowReader(folder / SHARDS))
    set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    scheduler.load_state_dict(_torch_load(folder / "scheduler.pt", weights_only=True))
    state = json.loads((folder / STATE).read_text())
    rng = folder / f"rng-{rank}.pt"
    if state.get("world") == _world() and rng.exists():
        set_rng_state(_torch_load(rng, weights_only=False))
    return state


def _torch_load(where: Location, weights_only: bool):
    return torch.load(io.BytesIO(where.read_bytes()), weights_only=weights_only)


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def latest(folder: str | Location) -> Location | None:
    """The complete checkpoint with the highest step below ``folder`` (local or object store), if any."""
    folder = location(folder)
    found = []
    for info in folder.list(recursive=True):
        if posixpath.basename(info.path) != STATE:
            continue
        ckpt = folder / posixpath.relpath(posixpath.dirname(info.path), folder.path)
        try:
            found.append((json.loads((ckpt / STATE).read_text())["step"], ckpt.path, ckpt))
        except (ValueError, KeyError, FileNotFoundError):
            continue  # a checkpoint cut short while being written
    return max(found, key=lambda f: f[:2])[2] if found else None


def prune(folder: Location, keep: int) -> None:
    """Remove every checkpoint below ``folder`` but the newest ``keep`` complete ones (and any unfinished one older
    than those): what Ray Train's ``CheckpointConfig(num_to_keep)`` does for its own reports."""
    found = sorted((info.path for info in folder.list() if posixpath.basename(info.path).startswith("checkpoint-")),
                   reverse=True)  # checkpoint-<step, 7 digits>: newest first
    complete = [p for p in found if (folder / posixpath.basename(p) / STATE).exists()]
    if len(complete) < keep:
        return
    oldest_kept = complete[keep - 1]
    for p in found:
        if p < oldest_kept:
            (folder / posixpath.basename(p)).rmtree()


class _ArrowFileSystem(FileSystemBase):
    """DCP's file interface over a pyarrow filesystem, read-only (checkpoints are written by Ray Train's upload)."""

    def __init__(self, fs):
        self.fs = fs

    @contextmanager
    def create_stream(self, path, mode: str):
        if mode != "rb":
            raise NotImplementedError("checkpoints are written locally and uploaded by Ray Train")
        with self.fs.open_input_file(str(path)) as f:
            # the metadata is unpickled with many small reads: fetch it whole; shards are read by range
            yield io.BytesIO(f.read()) if str(path).endswith(".metadata") else f

    def concat_path(self, path, suffix: str) -> str:
        return posixpath.join(str(path), suffix)

    def init_path(self, path) -> str:
        return str(path)

    def exists(self, path) -> bool:
        return self.fs.get_file_info(str(path)).type != pafs.FileType.NotFound

    def rename(self, path, new_path) -> None:
        raise NotImplementedError

    def mkdir(self, path) -> None:
        raise NotImplementedError

    def rm_file(self, path) -> None:
        raise NotImplementedError

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        return False


class ArrowReader(FileSystemReader):
    """torch.distributed.checkpoint reader of a DCP folder on any pyarrow filesystem (local, s3, gs): each stored
    tensor is one ranged read, so a rank reads only the shards' bytes it needs, never a whole copy of the state."""

    def __init__(self, folder: Location):
        super().__init__(folder.path)
        self.fs = _ArrowFileSystem(folder.fs)
        self.path = folder.path

    def _slice_file(self, file, sinfo):
        file.seek(sinfo.offset)
        return io.BytesIO(file.read(sinfo.length))
