"""Build the folder a Hub dataset repo is uploaded from.

Layout::

    README.md                                         dataset card with the `configs:` front matter
    data/<config>/train-00000-of-00003.parquet        the shards, byte-identical (hard link, or copy), or with
                                                      ``codec`` their top-k re-encoded (``convert.py``)
    logitfuse/<config>/manifest.json                  the manifest, file names rewritten to ../../data/<config>/…
    logitfuse/<config>/vocab_map.parquet              aligned sets: the source→pivot vocabulary map

``logitfuse/<config>`` is a complete shard folder (checksums unchanged, or those of the converted files), so
``ShardSet``/``verify`` read the staged or downloaded repo directly. Re-staging into the same folder keeps files
that already match.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PublishError
from pipeline.io.atomic import TMP_PREFIX, clean_tmp, sha256_file, write_parquet, write_text
from pipeline.io.fs import Location
from pipeline.io.reader import verify
from pipeline.io.resolve import DATA_DIR, META_DIR
from pipeline.io.writer import write_options
from pipeline.publish import card, convert
from pipeline.publish.discover import ShardSource
from schemas.manifest import ShardEntry

EXTRA_FILES = ("vocab_map.parquet",)  # travel next to the manifest when the shard folder has them


def staged_name(index: int, total: int) -> str:
    """The Hub's split file name for shard ``index`` of ``total``."""
    return f"train-{index:05d}-of-{total:05d}.parquet"


@dataclass
class Staged:
    """What was staged: the folder, its configs, and how many bytes were linked or copied this time."""

    folder: Path
    configs: list[str]
    files: int
    bytes_written: int


def _data_file(config: str, index: int, total: int) -> str:
    return f"{DATA_DIR}/{config}/{staged_name(index, total)}"


def _plan(sources: list[ShardSource], converted: set[str]) -> dict[str, tuple[Location, str | None]]:
    """Relative path in the repo → (source file, expected sha256 or None) for every file placed as it is (data
    files of ``converted`` configs are written by ``_convert`` instead)."""
    plan: dict[str, tuple[Path, str | None]] = {}
    for s in sources:
        n = len(s.shards)
        for i, e in enumerate(s.shards.manifest.shards):
            if s.config not in converted:
                plan[_data_file(s.config, i, n)] = (s.shards.path(i), e.sha256)
        for extra in EXTRA_FILES:
            if (s.shards.folder / extra).is_file():
                plan[f"{META_DIR}/{s.config}/{extra}"] = (s.shards.folder / extra, None)
    return plan


def _place(src: Location, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (shards are never rewritten in place), else copy (streamed from an object
    store); atomic either way."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{TMP_PREFIX}{dst.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    if not src.local:
        with src.fs.open_input_stream(src.path) as f, open(tmp, "wb") as g:
            shutil.copyfileobj(f, g, 1 << 20)
    else:
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _same(dst: Path, src: Location, sha: str | None) -> bool:
    if not dst.is_file() or dst.stat().st_size != src.size():
        return False
    return sha256_file(dst) == (sha or sha256_file(src))


def _check_out(out: Path, sources: list[ShardSource], planned: set[str], overwrite: bool) -> None:
    """Refuse a folder that holds a source, or files this staging would not write (unless ``overwrite``)."""
    o = out.resolve()
    for s in sources:
        if not s.shards.folder.local:
            continue  # an object store never overlaps a local staging folder
        f = Path(s.shards.folder.path).resolve()
        if o == f or o in f.parents or f in o.parents:
            raise PublishError(f"the staging folder {out} overlaps the shard folder {s.shards.folder}; "
                               f"choose a folder outside it")
    if not out.exists():
        return
    if not out.is_dir():
        raise PublishError(f"{out} exists and is not a folder")
    clean_tmp(out)
    others = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                    if (p.is_file() or p.is_symlink()) and str(p.relative_to(out)) not in planned)
    if others and not overwrite:
        shown = ", ".join(others[:5]) + (f" … ({len(others)} files)" if len(others) > 5 else "")
        raise PublishError(f"{out} already holds files this dataset would not contain ({shown}); choose an empty "
                           f"folder or pass --overwrite (overwrite=true) to remove them")
    for rel in others:
        (out / rel).unlink()
    for d in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def _convert(s: ShardSource, spec, out: Path) -> tuple[list[ShardEntry], int]:
    """Write the config's shards re-encoded as ``spec``; their manifest entries and the bytes that changed."""
    entries, written, n = [], 0, len(s.shards)
    for i, e in enumerate(s.shards.manifest.shards):
        rel = _data_file(s.config, i, n)
        before = sha256_file(out / rel) if (out / rel).is_file() else None
        table = convert.convert_shard(s.shards, i, spec)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_parquet(out / rel, table, **write_options(table.schema))
        size, sha = (out / rel).stat().st_size, sha256_file(out / rel)
        written += size if sha != before else 0
        entries.append(ShardEntry(index=i, file=f"../../{rel}", rows=table.num_rows, tokens=e.tokens, bytes=size,
                                  sha256=sha, first_sample=e.first_sample))
    return entries, written


def stage(sources: list[ShardSource], out: str | Path, repo_id: str, license: str = "other",
          overwrite: bool = False, codec: str | None = None) -> Staged:
    """Write the repo layout for ``sources`` into ``out``; keeps files already there that match. ``codec``
    (native | lossless): re-encode the top-k of logit sets written with another codec."""
    out = Path(out)
    specs = {s.config: convert.target_spec(s.shards, codec) for s in sources
             if convert.needs_conversion(s.shards, codec)}
    plan = _plan(sources, set(specs))
    converted = {_data_file(s.config, i, len(s.shards)) for s in sources if s.config in specs
                 for i in range(len(s.shards))}
    meta = {f"{META_DIR}/{s.config}/manifest.json" for s in sources}
    _check_out(out, sources, set(plan) | converted | meta | {"README.md"}, overwrite)
    written = 0
    for rel, (src, sha) in plan.items():
        if not _same(out / rel, src, sha):
            _place(src, out / rel)
            written += src.size()
    manifests = {}
    for s in sources:
        if s.config in specs:
            entries, w = _convert(s, specs[s.config], out)
            manifests[s.config], written = convert.converted_manifest(s.shards, specs[s.config], entries), written + w
            continue
        m = copy.deepcopy(s.shards.manifest)
        for i, e in enumerate(m.shards):
            e.file = f"../../{_data_file(s.config, i, len(m.shards))}"
        manifests[s.config] = m
    for s in sources:
        m = manifests[s.config]
        folder = out / META_DIR / s.config
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "manifest.json", m.to_json())
    write_text(out / "README.md", card.render(sources, repo_id, license, manifests))
    problems = [p for s in sources for p in verify(out / META_DIR / s.config, checksums=False)]
    if problems:  # sizes, schemas and row counts of what was just placed
        raise PublishError(f"the staged folder {out} does not validate:\n  " + "\n  ".join(problems))
    return Staged(out, [s.config for s in sources], len(plan) + len(converted) + len(meta) + 1, written)
