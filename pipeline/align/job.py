"""The align driver: check plans and fingerprints, build (or reuse) each vocab map, align shards in Ray tasks."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import lru_cache

import numpy as np

from pipeline.align.config import AlignConfig, SourceSpec
from pipeline.align.vocab_map import (build_vocab_map, check_map_matches, fan_in_counts, gather_cooc, map_array,
                                      read_vocab_map, summarize, write_vocab_map)
from pipeline.config import local_path
from pipeline.errors import AlignmentError, SchemaError, ShardError
from pipeline.io.fs import Location, check_bucket, is_url, location
from pipeline.io.lock import folder_lock
from pipeline.io.reader import ShardSet
from pipeline.io.writer import ShardSetWriter
from pipeline.modeling.load import load_tokenizer, tokenizer_fingerprint
from schemas import aligned_shard, logit_shard
from schemas import vocab_map as vocab_map_schema
from schemas.manifest import Manifest

ROW_COLUMNS = ["sample_index", "sample_id", "status", "response_sha256", "input_ids", "response_start",
               "char_start", "char_end", "n_positions", "topk_ids", "topk_logprobs"]


def check_tokenizer(shards: ShardSet, tok, model: str) -> None:
    """The shards must have been captured with exactly this tokenizer."""
    want = shards.manifest.fingerprints.get("tokenizer")
    have = tokenizer_fingerprint(tok)
    if want != have:
        raise AlignmentError(f"{shards.folder} was captured with tokenizer {str(want)[:12]}…, but the tokenizer given "
                             f"({model!r}) is {have[:12]}…: give the model the shards were captured with")


def check_plans(src: ShardSet, piv: ShardSet) -> None:
    """Source and pivot must share one shard plan; names the first shard that differs."""
    a, b = src.manifest, piv.manifest
    if a.plan != b.plan:
        raise AlignmentError(f"shard plans differ: {src.folder} has {a.num_samples} samples in shards of "
                             f"{a.shard_size}, {piv.folder} has {b.num_samples} in shards of {b.shard_size}")
    if a.plan_fingerprint == b.plan_fingerprint:
        return
    for i in range(len(piv)):
        ids_a = src.read(i, ["sample_id"]).column("sample_id").to_pylist()
        ids_b = piv.read(i, ["sample_id"]).column("sample_id").to_pylist()
        if ids_a != ids_b:
            raise AlignmentError(f"shard plans differ at {src.folder / a.shards[i].file} vs "
                                 f"{piv.folder / b.shards[i].file}: other samples")
    # same ids everywhere but another input: the per-sample response hash check names the sample at fault


def _cooc(src: ShardSet, piv: ShardSet, limit: int) -> Counter:
    from pipeline.align.offsets import align_offsets

    counts: Counter = Counter()
    seen = 0
    cols = ["status", "input_ids", "response_start", "char_start", "char_end", "n_positions"]
    for i in range(len(piv)):
        for a, b in zip(src.read(i, cols).to_pylist(), piv.read(i, cols).to_pylist()):
            if "skipped" in (a["status"], b["status"]) or not a["n_positions"] or not b["n_positions"]:
                continue
            al = align_offsets(a["char_start"], a["char_end"], b["char_start"], b["char_end"])
            gather_cooc(a["input_ids"][a["response_start"]:], b["input_ids"][b["response_start"]:], al.src_index,
                        counts)
            seen += 1
            if seen >= limit:
                return counts
    return counts


def vocab_map_for(cfg: AlignConfig, spec: SourceSpec, src: ShardSet, piv: ShardSet, src_tok, piv_tok,
                  out: Location):
    """The source→pivot map: given, reused from ``out``, or built (exact, edit distance, co-occurrence)."""
    path = location(spec.vocab_map) if spec.vocab_map else out / "vocab_map.parquet"
    if path.exists():
        table = read_vocab_map(path)
        check_map_matches(table, src_tok, piv_tok)
        return table
    cooc = _cooc(src, piv, cfg.cooc_samples) if cfg.cooc else None
    table = build_vocab_map(src_tok, piv_tok, edit_candidates=cfg.edit_candidates, max_distance=cfg.max_distance,
                            cooc=cooc)
    write_vocab_map(table, path)
    return table


@lru_cache(maxsize=4)
def _token_texts(model: str) -> list[str]:
    from pipeline.modeling.canonical import canonicalize

    return canonicalize(load_tokenizer(model)).texts()


def align_shard(pivot_dir: str, source_dir: str, index: int, id_map: np.ndarray, flags: dict, models: tuple):
    """Align shard ``index`` of a source onto the pivot's (runs as a Ray task)."""
    from pipeline.align.shards import rows_to_table

    src, piv = ShardSet(source_dir), ShardSet(pivot_dir)
    codec = src.codec()
    clipped = {f"{side}_clipped": logit_shard.version(s.schema(index)) < 2 for side, s in (("src", src), ("piv", piv))}
    try:
        rows, counts = _align_rows(src, piv, index, codec, id_map, flags | clipped, models)
    except SchemaError as e:  # e.g. a blob that does not decode: the sample is named already, add the shard
        shard = src.folder / src.manifest.shards[index].file
        raise (e if str(shard) in str(e) else ShardError(f"{shard}: {e}")) from None
    table = rows_to_table(rows, aligned_shard.schema(flags_meta(codec.k, src, piv)))
    return table, dict(counts)


def _align_rows(src: ShardSet, piv: ShardSet, index: int, codec, id_map, flags: dict, models: tuple):
    from pipeline.align.shards import align_row

    rows, counts = [], Counter()
    for p_batch, s_batch in zip(piv.iter_batches(index, columns=ROW_COLUMNS),
                                src.iter_batches(index, columns=ROW_COLUMNS)):
        for p, s in zip(p_batch.to_pylist(), s_batch.to_pylist()):
            toks = {}
            if len(s["char_start"]) != s["n_positions"] and flags["dtw_fallback"]:
                st, pt = _token_texts(models[0]), _token_texts(models[1])
                toks = dict(src_tokens=[st[i] for i in s["input_ids"][s["response_start"]:]],
                            piv_tokens=[pt[i] for i in p["input_ids"][p["response_start"]:]])
            row, c = align_row(p, s, codec, id_map, codec.k, **flags, **toks)
            rows.append(row)
            counts.update(c)
    return rows, counts


def flags_meta(k: int, src: ShardSet, piv: ShardSet) -> dict[str, str]:
    """Schema metadata of an aligned shard."""
    return {"k": str(k), "source": src.manifest.name, "pivot": piv.manifest.name,
            "source_tokenizer_fingerprint": src.manifest.fingerprints.get("tokenizer", ""),
            "pivot_tokenizer_fingerprint": piv.manifest.fingerprints.get("tokenizer", "")}


def run_align(cfg: AlignConfig) -> dict[str, Manifest]:
    """Align every source of ``cfg`` onto the pivot; resumable per shard."""
    cfg.pivot, cfg.pivot_model = local_path(cfg.pivot), local_path(cfg.pivot_model)
    cfg.output = location(cfg.output).uri  # to be created: never a Hub id; a local one made absolute
    for s in cfg.sources:
        s.shards, s.model, s.vocab_map = local_path(s.shards), local_path(s.model), local_path(s.vocab_map)
    for spec in [cfg.pivot, cfg.output, *(x for s in cfg.sources for x in (s.shards, s.vocab_map) if x)]:
        if is_url(spec) and not spec.startswith("hf://"):  # one clear error per store, before any work
            check_bucket(location(spec))
    piv = ShardSet(cfg.pivot)
    piv_tok = load_tokenizer(cfg.pivot_model)
    check_tokenizer(piv, piv_tok, cfg.pivot_model)
    return {m.name: m for m in (_locked_align(cfg, spec, piv, piv_tok) for spec in cfg.sources)}


def output_folder(cfg: AlignConfig, spec: SourceSpec, src: ShardSet) -> Location:
    """Where the aligned shards of source ``spec`` go (a local folder or an object-store prefix)."""
    return location(cfg.output) / "aligned" / (spec.name or src.manifest.name)


def _locked_align(cfg: AlignConfig, spec: SourceSpec, piv: ShardSet, piv_tok) -> Manifest:
    out = output_folder(cfg, spec, ShardSet(spec.shards))
    with folder_lock(out, "align", cfg.fingerprint(list(AlignConfig.OUTPUT_KEYS))):
        return _align_source(cfg, spec, piv, piv_tok)


def _align_source(cfg: AlignConfig, spec: SourceSpec, piv: ShardSet, piv_tok) -> Manifest:
    import ray
    from tqdm import tqdm

    from pipeline.ray_utils import ensure_ray, original_error

    src = ShardSet(spec.shards)
    if src.manifest.codec.get("codec") == "none":
        raise AlignmentError(f"{src.folder} holds no top-k (captured with k=0): capture the source with k >= 1")
    src_tok = load_tokenizer(spec.model)
    check_tokenizer(src, src_tok, spec.model)
    check_plans(src, piv)
    out = output_folder(cfg, spec, src)
    name = out.name
    describe = {k: getattr(cfg, k) for k in AlignConfig.OUTPUT_KEYS} | {
        "source": [s.sha256 for s in src.manifest.shards], "pivot": [s.sha256 for s in piv.manifest.shards],
        "vocab_map": spec.vocab_map, "vocab_map_version": vocab_map_schema.VERSION}
    fingerprint = hashlib.sha256(json.dumps(describe, sort_keys=True).encode()).hexdigest()[:16]
    writer = ShardSetWriter(out, fingerprint, {k: str(v)[:80] for k, v in describe.items()}, cfg.overwrite)
    table = vocab_map_for(cfg, spec, src, piv, src_tok, piv_tok, out)
    shares = summarize(table)
    missing = [i for i in range(len(piv)) if writer.complete(i) is None]
    if missing:
        ensure_ray(cfg.ray_address)
        task = ray.remote(num_cpus=cfg.num_cpus_per_task)(align_shard)
        id_map = ray.put(map_array(table))
        flags = {"require_same_span": cfg.require_same_span, "dtw_fallback": cfg.dtw_fallback}
        refs = {task.remote(str(piv.folder), str(src.folder), i, id_map, flags, (spec.model, cfg.pivot_model)): i
                for i in missing}
        bar = tqdm(total=len(missing), desc=f"align {name}", unit="shard", disable=not cfg.progress)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                shard_table, counts = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                raise original_error(e) from None
            _save_counts(out, refs[done[0]], counts)  # before the shard's sidecar, which marks it complete
            writer.write_shard(refs[done[0]], shard_table, tokens=int(sum(counts.values())))
            bar.update(1)
        bar.close()
    counts = _load_counts(out, len(piv))
    positions = sum(counts.values())
    aligned = positions - counts.get("masked", 0)
    manifest = Manifest(
        kind="aligned", shard_schema=aligned_shard.NAME, shard_schema_version=aligned_shard.VERSION, name=name,
        config_fingerprint=fingerprint, shard_size=piv.manifest.shard_size, num_samples=piv.manifest.num_samples,
        plan_fingerprint=piv.manifest.plan_fingerprint, shards=[],
        fingerprints={"source_tokenizer": src.manifest.fingerprints.get("tokenizer", ""),
                      "pivot_tokenizer": piv.manifest.fingerprints.get("tokenizer", ""),
                      "source_model": src.manifest.fingerprints.get("model", ""),
                      "source_config": src.manifest.config_fingerprint,
                      "pivot_config": piv.manifest.config_fingerprint},
        codec={"k": str(src.codec().k)},
        counts=counts | {"positions": positions, "aligned": aligned} | fan_in_counts(table),
        stats={"coverage": aligned / max(positions, 1)} | {f"map_{k}": v for k, v in shares.items()},
        config=cfg.to_dict())
    return writer.finalize(manifest)


def _save_counts(out: Location, index: int, counts: dict) -> None:
    from pipeline.io.atomic import write_text

    write_text(out / "_progress" / f"counts-{index:05d}.json", json.dumps(counts))


def _load_counts(out: Location, n: int) -> dict[str, int]:
    total: Counter = Counter()
    for i in range(n):
        total.update(json.loads((out / "_progress" / f"counts-{i:05d}.json").read_text()))
    return dict(total)
