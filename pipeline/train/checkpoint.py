"""Training checkpoints with torch.distributed.checkpoint: each rank writes its own shards of the model and optimizer
(``dcp/``), its RNG states (``rng-<rank>.pt``); rank 0 the scheduler, and ``state.json`` LAST.

Ray Train V2 merges every rank's folder of one report into one checkpoint folder. ``state.json`` (step, data
position, fingerprint) is written by rank 0 into that merged folder only after every rank's upload has finished
(a barrier after ``ray.train.report``), so a folder without it is a checkpoint cut short and is never resumed from.
DCP reshards on load: a checkpoint of N ranks loads into M ranks, FSDP or DDP alike.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

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
    """Mark a persisted checkpoint complete: write ``state.json`` into it (rank 0, after every rank's upload)."""
    path = f"{checkpoint.path}/{STATE}"
    tmp = path + ".tmp"
    with checkpoint.filesystem.open_output_stream(tmp) as f:
        f.write(json.dumps(state, indent=1).encode())
    checkpoint.filesystem.move(tmp, path)


def load(folder: str | Path, rank: int, model, optimizer, scheduler) -> dict:
    """Restore a checkpoint into the given (sharded or replicated) objects, resharding as needed; returns its state.

    RNG states are restored when the checkpoint has this rank's (same world size), else left as seeded."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    folder = Path(folder)
    sd = _state_dicts(model, optimizer)
    dcp.load(sd, checkpoint_id=str(folder / SHARDS))
    set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    state = json.loads((folder / STATE).read_text())
    rng = folder / f"rng-{rank}.pt"
    if state.get("world") == _world() and rng.exists():
        set_rng_state(torch.load(rng, weights_only=False))
    return state


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def latest(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``run_dir``, if any."""
    found = []
    for state in Path(run_dir).glob(f"**/{STATE}"):
        try:
            found.append((json.loads(state.read_text())["step"], state.parent))
        except (ValueError, KeyError):
            continue  # a checkpoint cut short while being written
    return max(found)[1] if found else None
