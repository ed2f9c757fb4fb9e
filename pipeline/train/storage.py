"""Where a training run lives: ``<output>/<run_name>``, a local folder or an object-store prefix (s3://, gs://).

Every process (driver, each Ray Train worker) resolves the run folder itself from the config (``run_location``), so
no path that exists only on the driver's node and no filesystem object with credentials is ever handed on. Files a
process builds (the final model, plots, metrics, TensorBoard events) are written to a local scratch folder first and
then uploaded with one object PUT per file; a folder that is complete only as a whole (the model) gets a completion
record last. On a local output nothing is staged: the files are written in place as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.fs as pafs

from pipeline.io.fs import Location, is_url, location

RAY_DIR = "ray"  # Ray Train's experiment folder inside the run folder: checkpoint-<step>/ …
COMPLETE = "logitfuse_complete.json"  # written last into an uploaded folder: its files, sizes and sha256


def run_location(cfg) -> Location:
    """``<output>/<run_name>`` of a TrainConfig (a local ``output`` must already be absolute in workers: the driver
    makes it so, since Ray Train workers do not share its working directory)."""
    return location(cfg.output) / cfg.run_name


def absolute_output(output: str) -> str:
    """``output`` made absolute against this process's working directory when local; URLs unchanged."""
    return output if is_url(output) else str(Path(output).expanduser().resolve())


def upload_file(src: str | Path, dest: Location) -> None:
    """``src`` as the object ``dest`` in one PUT (all or nothing on an object store)."""
    dest.put(Path(src).read_bytes())


def upload_folder(src: str | Path, dest: Location, complete: bool = True) -> None:
    """Every file below ``src`` to ``dest`` (one PUT each), replacing what ``dest`` held; with ``complete``, the
    completion record :data:`COMPLETE` goes last, so a reader that finds it finds every file it names."""
    src = Path(src)
    (dest / COMPLETE).delete()  # first: a folder being replaced is never taken for a complete one
    dest.rmtree()
    files = {}
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        data = path.read_bytes()
        rel = path.relative_to(src).as_posix()
        (dest / rel).put(data)
        files[rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if complete:
        (dest / COMPLETE).put(json.dumps({"files": files}, indent=1).encode())


def folder_complete(folder: Location) -> bool:
    """An uploaded folder with its completion record (an object store), or a local folder renamed into place
    (written whole to ``<name>.tmp`` first) holding ``config.json``."""
    return (folder / "config.json").exists() if folder.local else (folder / COMPLETE).exists()


def download_folder(src: Location, dest: str | Path) -> None:
    """Every object below ``src`` into the local folder ``dest`` (nothing when ``src`` does not exist)."""
    for info in src.list(recursive=True):
        if info.type != pafs.FileType.File:
            continue
        rel = os.path.relpath(info.path, src.path)
        out = Path(dest) / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes((src / rel).read_bytes())
