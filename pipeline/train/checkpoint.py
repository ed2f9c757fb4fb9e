"""Training checkpoints: model, optimizer, scheduler, every rank's RNG states, and the data position.

A checkpoint folder is complete when ``state.json`` is in it (written last by rank 0). The data position is a few
integers (epoch, step within the epoch, global step): with the deterministic order of ``FusionData`` that is
enough to continue exactly where the run stopped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

STATE = "state.json"


def rng_state() -> dict:
    """Python, numpy and torch RNG states of this process."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(folder: str | Path, rank: int, model, optimizer, scheduler, state: dict) -> None:
    """Write this rank's part of a checkpoint (rank 0: model, optimizer, scheduler and state.json last)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), folder / f"rng-{rank}.pt")
    if rank == 0:
        torch.save(model.state_dict(), folder / "model.pt")
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(scheduler.state_dict(), folder / "scheduler.pt")
        (folder / STATE).write_text(json.dumps(state, indent=1))


def load(folder: str | Path, rank: int, model, optimizer, scheduler) -> dict:
    """Restore a checkpoint into the given objects; returns its state (step, epoch, position, fingerprints)."""
    folder = Path(folder)
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    rng = folder / f"rng-{rank}.pt"
    if rng.exists():
        set_rng_state(torch.load(rng, weights_only=False))
    return json.loads((folder / STATE).read_text())


def latest(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``run_dir``, if any."""
    found = []
    for state in Path(run_dir).glob(f"**/{STATE}"):
        try:
            found.append((json.loads(state.read_text())["step"], state.parent))
        except (ValueError, KeyError):
            continue  # a checkpoint cut short while being written
    return max(found)[1] if found else None
