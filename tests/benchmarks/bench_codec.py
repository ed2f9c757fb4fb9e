"""Codec benchmark: bytes per captured position of every codec (lossless, quantized, native Parquet columns and
the variants native was chosen from) and throughput, against two baselines, on the same real top-k.

    python tests/benchmarks/bench_codec.py                 # builds its own teacher (cached) and captures text
    python tests/benchmarks/bench_codec.py --shards DIR    # one model's capture output (the folder with manifest.json)

Every `*_in_parquet_bytes_per_token` figure is the two top-k columns alone written as a shard writes them (row
groups of 64 samples, `pipeline.io.writer.write_options`): the compact codecs' blobs pay Parquet's framing there, the
native columns their list levels; `native_variant` lines say which readers decode each candidate layout.

Prints one JSON line per figure. Default data: a byte-level BPE tokenizer (8k) trained on Python stdlib sources, a
small GPT-2 shaped model trained on ~20k tokens of them for 600 steps (a few minutes on two quiet cores, capped
at TRAIN_SECONDS), both cached under ~/.cache/logitfuse/bench_codec/, then run teacher-forced over that same text:
log_softmax over the full vocabulary, top-10 at every position. The corpus is small on purpose: two minutes of CPU
cannot teach a model much, and a model that has seen its text several times is peaked the way a real LM is on SFT
data (mean top-1 probability ~0.5 here). An undertrained or random-init model instead gives flat top-k over a
handful of frequent ids, which flatters the id stream and is nothing like a real capture.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import os
import sysconfig
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import codec
from _large_tokenizers import read_texts

K = 10
CACHE = Path(os.environ.get("LOGITFUSE_CACHE", Path.home() / ".cache" / "logitfuse")) / "bench_codec"
VOCAB, EMBD, LAYERS = 8192, 128, 2
CORPUS_CHARS = 60_000  # small enough that training sees it many times: peaked predictions, like a real LM on SFT data
SEQ, BATCH, LR, TRAIN_STEPS, TRAIN_SECONDS = 128, 8, 3e-3, 600, 1200
EVAL_SAMPLES, EVAL_SEQ = 48, 384


def emit(figure: str, value, **extra) -> None:
    print(json.dumps({"bench": "codec", "figure": figure, "value": value, **extra}), flush=True)


# ---------------------------------------------------------------------------------------------------- real data
def _stdlib_texts(budget_chars: int, skip: int = 0) -> list[str]:
    """Python stdlib sources in a stable order (every `skip`-th file left out when skip > 0), up to a budget."""
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(f for f in glob.glob(os.path.join(root, "**", "*.py"), recursive=True) if "site-packages" not in f)
    return read_texts([f for i, f in enumerate(files) if not (skip and i % skip == 0)], budget_chars)


def build_teacher():
    """Tokenizer (trained on 8 MB of stdlib) + GPT-2 shaped LM trained on CORPUS_CHARS of it; cached."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok_path, model_dir = CACHE / "tokenizer.json", CACHE / "model"
    if tok_path.exists():
        tok = Tokenizer.from_file(str(tok_path))
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=["<|endoftext|>"])
        tok.train_from_iterator(_stdlib_texts(8_000_000, skip=7), trainer)
        CACHE.mkdir(parents=True, exist_ok=True)
        tok.save(str(tok_path))
    if (model_dir / "config.json").exists():
        return tok, GPT2LMHeadModel.from_pretrained(model_dir).eval()

    torch.manual_seed(0)
    eot = tok.token_to_id("<|endoftext|>")
    cfg = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=512, n_embd=EMBD, n_layer=LAYERS, n_head=4,
                     bos_token_id=eot, eos_token_id=eot)
    model = GPT2LMHeadModel(cfg)
    stream = []
    for text in _stdlib_texts(CORPUS_CHARS):
        stream.extend(tok.encode(text).ids + [eot])
    data = torch.tensor(stream, dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    t0, step, progress = time.time(), 0, 0.0
    model.train()
    while progress < 1:  # TRAIN_STEPS, or TRAIN_SECONDS on a slow or busy machine, whichever comes first
        for group in opt.param_groups:  # linear warm-up, cosine decay over the progress fraction
            group["lr"] = LR * min(1.0, progress / 0.05 + 0.01) * 0.5 * (1 + math.cos(math.pi * progress))
        starts = torch.randint(0, len(data) - SEQ - 1, (BATCH,), generator=gen)
        x = torch.stack([data[s:s + SEQ] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        progress = max(step / TRAIN_STEPS, (time.time() - t0) / TRAIN_SECONDS)
        if step % 100 == 0 or progress >= 1:
            print(f"# train step {step} loss {loss.item():.3f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    model.save_pretrained(model_dir.with_suffix(".tmp"))
    os.replace(model_dir.with_suffix(".tmp"), model_dir)  # a half-written cache is never picked up
    return tok, model


def capture_default(k: int = K) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Teacher-forced top-k over the teacher's own corpus (like a capture over an SFT set the teacher has seen)."""
    import torch

    tok, model = build_teacher()
    eot = tok.token_to_id("<|endoftext|>")
    stream = [t for text in _stdlib_texts(CORPUS_CHARS) for t in tok.encode(text).ids + [eot]]
    samples = []
    with torch.no_grad():
        for start in range(0, min(len(stream) - 1, EVAL_SAMPLES * EVAL_SEQ), EVAL_SEQ):
            ids = stream[start: start + EVAL_SEQ + 1]
            logits = model(input_ids=torch.tensor([ids[:-1]])).logits[0].float()
            top = torch.log_softmax(logits, dim=-1).topk(k, dim=-1)
            samples.append((top.indices.numpy().astype(np.int64), top.values.numpy().astype(np.float32)))
    return samples, tok.get_vocab_size()


def capture_from_shards(folder: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Decoded (ids, logprobs) per sample of one model's capture output (the folder holding manifest.json)."""
    from pipeline.io.reader import ShardSet, decode_topk

    shards = ShardSet(folder)
    spec = shards.codec()
    if spec.name != "lossless":
        print(f"# {folder} was captured with the {spec.name} codec: figures are for re-encoding decoded values")
    rows = shards.iter_rows(columns=["topk_ids", "topk_logprobs", "n_positions"])
    return [decode_topk(spec, row) for row in rows if row["n_positions"]], spec.vocab_size


# ---------------------------------------------------------------------------------------------------- baselines
def parquet_baseline_bytes(samples) -> int:
    """FuseLLM-style: one row per position, fp16 values + int64 ids, no compression, no dictionary."""
    ids = np.concatenate([s[0] for s in samples])
    vals = np.concatenate([s[1] for s in samples]).astype(np.float16)
    k = ids.shape[1]
    table = pa.table({
        "topk_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids.ravel(), pa.int64()), k),
        "topk_values": pa.FixedSizeListArray.from_arrays(pa.array(vals.ravel(), pa.float16()), k),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none", use_dictionary=False)
    return buf.getbuffer().nbytes


def bitpack_baseline_bytes(samples, vocab: int) -> int:
    """DistillKit-style: per sample, 16-bit values and ceil(log2 V)-bit ids bit-packed, no entropy coding."""
    id_bits = max(1, math.ceil(math.log2(vocab)))
    total = 0
    for ids, lps in samples:
        bits = np.unpackbits(ids.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1)[:, 32 - id_bits:]
        total += np.packbits(bits).nbytes + lps.astype(np.float16).nbytes
    return total


# ---------------------------------------------------------------------------------------------------- main
def _best_time(fn, repeats: int = 3) -> tuple[float, object]:
    """Fastest of a few runs: the machine may be shared, and the slow runs measure the neighbours."""
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_codec(spec: codec.CodecSpec, samples, positions: int, base_a: int, base_b: int) -> None:
    t_enc, blobs = _best_time(lambda: [codec.encode(spec, ids, lps) for ids, lps in samples])
    t_dec, decoded = _best_time(lambda: [codec.decode(spec, a, b, len(s[0])) for (a, b), s in zip(blobs, samples)])
    size = sum(len(a) + len(b) for a, b in blobs)
    id_size = sum(len(a) for a, _ in blobs)
    assert all(np.array_equal(d[0], s[0]) for d, s in zip(decoded, samples))
    err = max(float(np.abs(d[1].astype(np.float64) - s[1]).max()) for d, s in zip(decoded, samples))
    raw_mb = sum(s[0].size * 6 for s in samples) / 1e6  # int32 id + fp16 value per entry
    name, goal_a, goal_b = spec.name, (4.5 if spec.name == "lossless" else 6.0), 2.0
    emit(f"{name}_bytes_per_token", round(size / positions, 3), id_bytes=round(id_size / positions, 3),
         value_bytes=round((size - id_size) / positions, 3), zstd_level=spec.zstd_level)
    emit(f"{name}_ratio_vs_parquet", round(base_a / size, 2), goal=goal_a, met=base_a / size >= goal_a)
    emit(f"{name}_ratio_vs_bitpack", round(base_b / size, 2), goal=None if name == "lossless" else goal_b,
         met=None if name == "lossless" else base_b / size >= goal_b)
    emit(f"{name}_max_abs_error_nats", round(err, 9), bound=round(spec.max_abs_error, 9), vs="float32 input")
    load = round(os.getloadavg()[0], 1)
    emit(f"{name}_encode_MBps", round(raw_mb / t_enc, 1), unit="MB/s of int32 ids + fp16 values", load_avg=load)
    emit(f"{name}_decode_MBps", round(raw_mb / t_dec, 1), unit="MB/s of int32 ids + fp16 values", load_avg=load)


# ---------------------------------------------------------------------------------------------------- native
def _nested(cells: list[np.ndarray], k: int, value_type: pa.DataType, fixed: bool = True) -> pa.Array:
    """list<fixed_size_list<value, k>> (or a flat list<value> of n*k when not ``fixed``) from per-sample (n, k)."""
    flat = pa.array(np.concatenate([c.ravel() for c in cells]), value_type)
    if not fixed:
        return pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum([c.size for c in cells])], pa.int32()), flat)
    offsets = pa.array(np.r_[0, np.cumsum([len(c) for c in cells])], pa.int32())
    return pa.ListArray.from_arrays(offsets, pa.FixedSizeListArray.from_arrays(flat, k))


def _parquet_size(table: pa.Table, **options) -> tuple[int, bytes]:
    from pipeline.io.writer import ROW_GROUP_ROWS

    buf = io.BytesIO()
    pq.write_table(table, buf, **({"row_group_size": ROW_GROUP_ROWS} | options))
    return buf.getbuffer().nbytes, buf.getvalue()


def _readers(data: bytes) -> dict[str, bool]:
    """Which readers decode a file: polars and DuckDB (datasets reads through pyarrow, which decodes them all)."""
    import tempfile

    out = {}
    with tempfile.NamedTemporaryFile(suffix=".parquet") as f:
        f.write(data)
        f.flush()
        try:
            import polars as pl

            pl.read_parquet(f.name)
            out["polars"] = True
        except Exception:  # noqa: BLE001 - any failure means "this reader cannot"
            out["polars"] = False
        try:
            import duckdb

            duckdb.connect().execute(f"SELECT * FROM read_parquet('{f.name}')").fetchall()  # decodes every value
            out["duckdb"] = True
        except Exception:  # noqa: BLE001
            out["duckdb"] = False
    return out


def native_variants(samples, k: int, positions: int) -> None:
    """The layouts and encodings native was chosen from, each with the readers that decode it."""
    ids = [s[0].astype(np.int32) for s in samples]
    lp16 = [s[1].astype(np.float16) for s in samples]
    lp32 = [c.astype(np.float32) for c in lp16]  # the same fp16 values, stored as float32
    leaf = "list.element.list.element"
    variants = {  # name -> (fixed inner lists, log-prob cells, write options)
        "fp16 zstd-3 dictionary (pyarrow defaults)": (True, lp16, dict(compression="zstd", compression_level=3)),
        "fp16 zstd-9": (True, lp16, dict(compression="zstd", compression_level=9, use_dictionary=False)),
        "fp16 zstd-9 BYTE_STREAM_SPLIT": (True, lp16, dict(compression="zstd", compression_level=9,
                                                            use_dictionary=False, use_byte_stream_split=True)),
        "fp32 zstd-9 BYTE_STREAM_SPLIT (ids too)": (True, lp32, dict(
            compression="zstd", compression_level=9, use_dictionary=False, use_byte_stream_split=True)),
        "fp16 zstd-19": (True, lp16, dict(compression="zstd", compression_level=19, use_dictionary=False)),
        "fp32 zstd-9 BSS log-probs only (native, capture)": (True, lp32, dict(
            compression="zstd", compression_level=9, use_dictionary=False,
            use_byte_stream_split=[f"topk_logprobs.{leaf}"])),
        "fp32 zstd-19 BSS log-probs only": (True, lp32, dict(
            compression="zstd", compression_level=19, use_dictionary=False,
            use_byte_stream_split=[f"topk_logprobs.{leaf}"])),
        "fp32 zstd-19 BSS, ids dictionary": (True, lp32, dict(
            compression="zstd", compression_level=19, use_dictionary=[f"topk_ids.{leaf}"],
            use_byte_stream_split=[f"topk_logprobs.{leaf}"])),
        "fp32 zstd-9 BSS, ids dictionary": (True, lp32, dict(
            compression="zstd", compression_level=9, use_dictionary=[f"topk_ids.{leaf}"],
            use_byte_stream_split=[f"topk_logprobs.{leaf}"])),
        "fp32 zstd-19 BYTE_STREAM_SPLIT (ids too)": (True, lp32, dict(
            compression="zstd", compression_level=19, use_dictionary=False, use_byte_stream_split=True)),
        "fp16 zstd-9 flat list<n*k>": (False, lp16, dict(compression="zstd", compression_level=9,
                                                         use_dictionary=False)),
        "fp32 zstd-9 BSS flat list<n*k>": (False, lp32, dict(compression="zstd", compression_level=9,
                                                             use_dictionary=False, use_byte_stream_split=True)),
    }
    for name, (fixed, lps, options) in variants.items():
        lp_type = pa.float16() if lps[0].dtype == np.float16 else pa.float32()
        table = pa.table({"topk_ids": _nested(ids, k, pa.int32(), fixed),
                          "topk_logprobs": _nested(lps, k, lp_type, fixed)})
        size, data = _parquet_size(table, **options)
        emit("native_variant_bytes_per_token", round(size / positions, 3), variant=name, **_readers(data))


def in_parquet(spec: codec.CodecSpec, samples, positions: int) -> None:
    """The top-k columns of ``spec`` written as a shard writer writes them: the figure a shard's size follows."""
    from pipeline.io import native
    from pipeline.io.writer import write_options
    from schemas import logit_shard

    cells = [codec.encode(spec, ids, lps) for ids, lps in samples]
    ids_type, lp_type = logit_shard.topk_types(spec.name, spec.k)
    if spec.name == native.NAME:
        cols = [native.column([c[0] for c in cells], ids_type), native.column([c[1] for c in cells], lp_type)]
    else:
        cols = [pa.array([c[0] for c in cells], pa.binary()), pa.array([c[1] for c in cells], pa.binary())]
    schema = pa.schema([pa.field(n, t.type) for n, t in zip(logit_shard.TOPK, cols)],
                       metadata={k.encode(): v.encode() for k, v in spec.to_metadata().items()})
    table = pa.Table.from_arrays(cols, schema=schema)
    t_write, (size, data) = _best_time(lambda: _parquet_size(table, **write_options(table.schema)))
    raw_mb = sum(s[0].size * 6 for s in samples) / 1e6
    emit(f"{spec.name}_in_parquet_bytes_per_token", round(size / positions, 3), zstd_level=spec.zstd_level,
         parquet_write_MBps=round(raw_mb / t_write, 1), load_avg=round(os.getloadavg()[0], 1), **_readers(data))
    if spec.name == native.NAME:
        t_dec, decoded = _best_time(lambda: [codec.decode(spec, i, p, len(i)) for i, p in zip(
            table.column("topk_ids").to_pylist(), table.column("topk_logprobs").to_pylist())])
        err = max(float(np.abs(d[1].astype(np.float64) - s[1]).max()) for d, s in zip(decoded, samples))
        emit("native_max_abs_error_nats", round(err, 9), bound=round(spec.max_abs_error, 9), vs="float32 input")
        emit("native_decode_MBps", round(raw_mb / t_dec, 1), unit="MB/s of int32 ids + fp16 values, from Python "
             "lists (decode_topk on iter_rows)", load_avg=round(os.getloadavg()[0], 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", help="capture output folder (default: build a teacher and capture stdlib text)")
    ap.add_argument("--zstd-level", type=int, default=codec.CodecSpec.zstd_level)
    args = ap.parse_args()
    samples, vocab = capture_from_shards(args.shards) if args.shards else capture_default()
    samples = [s for s in samples if len(s[0])]
    k = samples[0][0].shape[1]
    positions = sum(len(s[0]) for s in samples)
    top1 = np.exp(np.concatenate([s[1][:, 0] for s in samples]))
    distinct = np.mean([len(np.unique(ids)) / ids.size for ids, _ in samples])
    emit("data", positions, unit="positions", vocab_size=vocab, k=k, samples=len(samples),
         source=args.shards or "stdlib teacher", mean_top1_prob=round(float(top1.mean()), 3),
         median_top1_prob=round(float(np.median(top1)), 3), distinct_ids_per_id=round(float(distinct), 3))
    base_a, base_b = parquet_baseline_bytes(samples), bitpack_baseline_bytes(samples, vocab)
    emit("parquet_fp16_int64_bytes_per_token", round(base_a / positions, 3))
    emit("bitpack_bytes_per_token", round(base_b / positions, 3))
    for name in ("lossless", "quantized"):
        spec = codec.CodecSpec(name=name, k=k, vocab_size=vocab, zstd_level=args.zstd_level)
        bench_codec(spec, samples, positions, base_a, base_b)
    for name in ("lossless", "quantized", "native"):
        in_parquet(codec.CodecSpec(name=name, k=k, vocab_size=vocab, zstd_level=args.zstd_level), samples, positions)
    # the level trade-off: smaller, but how much slower to write (capture and publish use the spec's default, 9)
    in_parquet(codec.CodecSpec(name="native", k=k, vocab_size=vocab, zstd_level=19), samples, positions)
    native_variants(samples, k, positions)


if __name__ == "__main__":
    main()
