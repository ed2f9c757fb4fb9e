"""Find the shard folder behind a published dataset, so readers accept it wherever they accept a shard folder.

A published (or staged) dataset repo keeps each config's manifest in ``logitfuse/<config>/manifest.json``, whose
file names point at ``../../data/<config>/train-*.parquet``; that manifest folder is a complete shard folder.
Accepted forms:

- a plain shard folder (holding ``manifest.json``): returned unchanged;
- ``<staged>/<config>`` (or ``<staged>/data/<config>``), or ``<staged>`` with ``config`` given (or a single config);
- ``hf://datasets/ORG/NAME[@REVISION]/<config>``: downloaded with ``snapshot_download`` (only that config's files).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import ShardError

META_DIR = "logitfuse"  # per-config manifests (and vocab maps) inside a dataset repo
DATA_DIR = "data"
HF_PREFIX = "hf://datasets/"


def staged_configs(root: str | Path) -> list[str]:
    """Config names of a staged or downloaded dataset repo (folders of ``logitfuse/`` holding a manifest)."""
    meta = Path(root) / META_DIR
    if not meta.is_dir():
        return []
    return sorted(p.name for p in meta.iterdir() if (p / "manifest.json").is_file())


def parse_hf_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``hf://datasets/ORG/NAME[@REV][/CONFIG]`` → (repo_id, revision, config); ShardError when malformed."""
    parts = uri.removeprefix(HF_PREFIX).strip("/").split("/")
    if not uri.startswith(HF_PREFIX) or len(parts) not in (2, 3) or not all(parts):
        raise ShardError(f"{uri!r} is not a Hub dataset address: expected hf://datasets/ORG/NAME/<config>")
    org, name, config = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
    name, _, revision = name.partition("@")
    return f"{org}/{name}", revision or None, config


def _download(repo_id: str, revision: str | None, config: str | None) -> Path:
    """Only the config's data and manifest files (and the card); from the local cache when offline."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ShardError("reading hf://datasets/… needs huggingface_hub: pip install 'huggingface_hub>=1.0'") \
            from None
    patterns = ["README.md"] + ([f"{META_DIR}/{config}/*", f"{DATA_DIR}/{config}/*"] if config else [f"{META_DIR}/*"])
    try:
        local = snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=patterns)
    except Exception as e:  # offline, missing repo or revision, no access: say which dataset
        raise ShardError(f"cannot download dataset {repo_id!r}"
                         f"{f' at revision {revision!r}' if revision else ''} from the Hub: {e}") from None
    return Path(local)


def resolve_shard_folder(spec: str | Path, config: str | None = None) -> Path:
    """The local folder holding ``manifest.json`` for ``spec`` (see the module docstring for the forms)."""
    text = str(spec)
    if text.startswith("hf://"):
        repo_id, revision, uri_config = parse_hf_uri(text)
        config = config or uri_config
        root = _download(repo_id, revision, config)
        if config is None:  # a whole repo: fetch its manifests first, then the one config it holds
            found = staged_configs(root)
            if len(found) != 1:
                raise ShardError(f"{text} holds {len(found)} configs ({', '.join(found) or 'none'}): "
                                 f"name one as {text.rstrip('/')}/<config>")
            config = found[0]
            root = _download(repo_id, revision, config)
        return _in_repo(root, config, where=text)
    path = Path(spec)
    if config is None and (path / "manifest.json").is_file():
        return path  # a plain shard folder: unchanged
    if config is None and (path.parent / META_DIR / path.name / "manifest.json").is_file():
        return path.parent / META_DIR / path.name  # <staged>/<config>
    if config is None and path.parent.name == DATA_DIR and (path.parent.parent / META_DIR / path.name).is_dir():
        return _in_repo(path.parent.parent, path.name, where=str(path))  # <staged>/data/<config>
    if (path / META_DIR).is_dir():
        if config is None:
            found = staged_configs(path)
            if len(found) != 1:
                raise ShardError(f"{path} is a staged dataset with {len(found)} configs "
                                 f"({', '.join(found) or 'none'}): give {path}/<config>")
            config = found[0]
        return _in_repo(path, config, where=str(path))
    return path  # not a published layout: the reader reports the missing manifest as before


def _in_repo(root: Path, config: str, where: str) -> Path:
    folder = root / META_DIR / config
    if not (folder / "manifest.json").is_file():
        found = staged_configs(root)
        raise ShardError(f"{where}: no config {config!r} (configs: {', '.join(found) or 'none'})")
    return folder
