"""Model fingerprint: ties shards to the exact checkpoint without reading gigabytes of weights.

What is hashed, in this order of preference (the method is returned with the hash and stored in the manifest):

- ``hub-commit``: a Hub id resolves (through the local cache, or the network where allowed) to a commit; the commit
  plus the config's content identify every file of that revision.
- every local folder: the content of its JSON files (``config.json``, ``generation_config.json``,
  ``model.safetensors.index.json`` with its weight map and total size, …), then per weight file
  (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``):
  - ``blob-sha256`` when the file is a link into a Hugging Face cache ``blobs/`` folder: the blob's name *is* the
    sha256 of the file (the Hub's LFS object id), so it is used as is;
  - ``content`` for files under 64 MiB (tiny and test models): their bytes;
  - ``size+sampled`` for larger files: the size and the first and last MiB. Not size+mtime: a copy (``cp``,
    ``aws s3 sync``) changes mtimes, and a resume on a node that holds its own copy would be refused for nothing.
    Two checkpoints of equal size and equal first/last MiB would be confused; the safetensors header in the first
    MiB names every tensor, its dtype, shape and offset, and the tail holds the last tensor's bytes.
- ``hub-id``: a Hub id that cannot be resolved offline: only its name and revision (a weak fingerprint; said so).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth"}
WHOLE_FILE_LIMIT = 64 << 20
SAMPLE = 1 << 20


def _file_identity(f: Path) -> tuple[str, str]:
    """(method, identity) of one weight file; reads at most 2 MiB."""
    target = f.resolve()
    if f.is_symlink() and target.parent.name == "blobs" and len(target.name) == 64:
        return "blob-sha256", target.name
    size = target.stat().st_size
    with open(target, "rb") as fh:
        if size < WHOLE_FILE_LIMIT:
            return "content", hashlib.sha256(fh.read()).hexdigest()
        head = fh.read(SAMPLE)
        fh.seek(size - SAMPLE)
        return "size+sampled", f"{size}:{hashlib.sha256(head + fh.read(SAMPLE)).hexdigest()}"


def folder_fingerprint(path: Path) -> tuple[str, str]:
    """(16-hex fingerprint, method) of a checkpoint folder; method lists the weight-file methods used."""
    h = hashlib.sha256()
    methods: set[str] = set()
    for f in sorted(path.iterdir()):
        if not f.is_file():
            continue
        if f.suffix == ".json":
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        elif f.suffix in WEIGHT_SUFFIXES:
            how, ident = _file_identity(f)
            methods.add(how)
            h.update(f"{f.name}\0{how}\0{ident}".encode())
    return h.hexdigest()[:16], "+".join(sorted(methods)) or "json-only"


def hub_snapshot(spec: str, revision: str | None) -> Path | None:
    """The cached (or, where the network allows, downloaded) snapshot folder of a Hub id's JSON files, else None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, revision=revision, allow_patterns=["*.json"]))
    except Exception:  # offline and not cached, unknown repo, no access: the fingerprint says it is weak
        return None


def model_fingerprint(path_or_id: str, revision: str | None = None) -> tuple[str, str]:
    """(16-hex fingerprint, method) of a local checkpoint folder or a Hub id (see the module docstring)."""
    path = Path(path_or_id)
    if path.is_dir():
        return folder_fingerprint(path)
    snap = hub_snapshot(path_or_id, revision)
    if snap is None:
        return hashlib.sha256(json.dumps([path_or_id, revision]).encode()).hexdigest()[:16], "hub-id"
    config = (snap / "config.json").read_bytes() if (snap / "config.json").is_file() else b""
    return hashlib.sha256(snap.name.encode() + b"\0" + config).hexdigest()[:16], f"hub-commit {snap.name}"
