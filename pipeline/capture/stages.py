"""The Ray Data stages of capture: tokenize (CPU tasks) → forward + top-k (actor pool) → encode (CPU tasks).

Each stage is a thin wrapper around plain functions of ``pipeline.capture``, so the logic tests without Ray. Stages
exchange Arrow tables with explicit types (never numpy object columns, which Ray turns into tensor extensions).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

import numpy as np
import pyarrow as pa

from pipeline.capture.inputs import Sample
from pipeline.capture.model import LoadOptions, load_model, resolve_dtype
from pipeline.capture.render import tokenize_sample, uses_template
from pipeline.modeling.load import load_tokenizer
from pipeline.trace import mark

I32_LIST, F32_LIST = pa.list_(pa.int32()), pa.list_(pa.float32())
mark("stages.imported")  # in a Ray worker: the stage's imports are done


@lru_cache(maxsize=4)
def _tokenizer(model: str, revision: str | None, trust_remote_code: bool):
    tok = load_tokenizer(model, revision, trust_remote_code)
    special = frozenset(i for i, t in tok.added_tokens_decoder.items() if t.special)
    return tok, special


def tokenize_batch(batch: pa.Table, *, model: str, max_length: int, overlength: str, chat_template: str,
                   append_eos: bool, revision: str | None = None, trust_remote_code: bool = False) -> pa.Table:
    """Render and tokenize a batch of samples (columns: sample_index, sample_id, messages)."""
    mark("tokenize.start")
    tok, special = _tokenizer(model, revision, trust_remote_code)
    use_template = uses_template(tok, chat_template)
    cols: dict[str, list] = {k: [] for k in ("input_ids", "response_start", "char_start", "char_end",
                                             "n_positions", "status", "response_sha256")}
    for sid, msgs in zip(batch.column("sample_id").to_pylist(), batch.column("messages").to_pylist()):
        s = Sample(sid, tuple(tuple(m) for m in json.loads(msgs)))
        t = tokenize_sample(tok, s, max_length=max_length, overlength=overlength, use_template=use_template,
                            append_eos=append_eos, special_ids=special)
        for key in ("input_ids", "response_start", "char_start", "char_end", "n_positions", "status"):
            cols[key].append(getattr(t, key))
        cols["response_sha256"].append(s.response_sha256)
    mark("tokenize.end")
    return pa.table({
        "sample_index": batch.column("sample_index"),
        "sample_id": batch.column("sample_id"),
        "status": pa.array(cols["status"], pa.string()),
        "response_sha256": pa.array(cols["response_sha256"], pa.string()),
        "input_ids": pa.array(cols["input_ids"], I32_LIST),
        "response_start": pa.array(cols["response_start"], pa.int32()),
        "char_start": pa.array(cols["char_start"], I32_LIST),
        "char_end": pa.array(cols["char_end"], I32_LIST),
        "n_positions": pa.array(cols["n_positions"], pa.int32()),
    })


class ForwardTopK:
    """Actor: loads the model once, then runs teacher-forced forward + chunked top-k on each batch."""

    def __init__(self, model: str, device: str, dtype: str, k: int, token_budget: int, head_chunk: int,
                 torch_threads: int, options: LoadOptions = LoadOptions()):
        mark("actor.init_start")
        import torch

        # Ray sets OMP_NUM_THREADS from the actor's (fractional) CPU share; on CPU we want every core.
        torch.set_num_threads(torch_threads or os.cpu_count() or 1)
        self.k = k
        self.budget, self.chunk = token_budget, head_chunk
        self.model = load_model(model, device, resolve_dtype(dtype, device), options) if k > 0 else None
        mark("actor.model_loaded")

    def __call__(self, batch: pa.Table) -> pa.Table:
        from pipeline.capture.topk import forward_topk

        import time

        n, t0 = batch.num_rows, time.perf_counter()
        mark("actor.call_start")
        if self.model is None:  # k = 0: tokens only, no forward pass
            ids = lps = [[] for _ in range(n)]
            pad = real = 0
        else:
            rows = list(zip(batch.column("input_ids").to_pylist(), batch.column("response_start").to_pylist()))
            res, pad, real = forward_topk(self.model, rows, self.k, self.budget, self.chunk,
                                          names=batch.column("sample_id").to_pylist())
            ids = [i.numpy().astype(np.int32).ravel() for i, _ in res]
            lps = [lp.numpy().astype(np.float32).ravel() for _, lp in res]
        # counters ride on the first row of the batch; the driver sums them
        seconds = time.perf_counter() - t0
        mark("actor.call_end")
        return batch.append_column("topk_ids_raw", pa.array(ids, I32_LIST)) \
            .append_column("topk_lp_raw", pa.array(lps, F32_LIST)) \
            .append_column("pad_tokens", pa.array([pad] + [0] * (n - 1), pa.int64())) \
            .append_column("real_tokens", pa.array([real] + [0] * (n - 1), pa.int64())) \
            .append_column("forward_seconds", pa.array([seconds] + [0.0] * (n - 1), pa.float64()))


def encode_batch(batch: pa.Table, *, codec: dict | None) -> pa.Table:
    """Encode each row's raw top-k arrays into the codec's two cells: blobs (empty when k = 0), or the native
    codec's (n, k) lists."""
    mark("encode.start")
    ids_cells, lp_cells = [b""] * batch.num_rows, [b""] * batch.num_rows
    if codec:
        from pipeline.io.codec import CodecSpec, encode

        spec = CodecSpec(**codec)
        raw_ids, raw_lps = batch.column("topk_ids_raw"), batch.column("topk_lp_raw")
        for r, n in enumerate(batch.column("n_positions").to_pylist()):
            ids = raw_ids[r].values.to_numpy(zero_copy_only=False).reshape(n, spec.k)
            lps = raw_lps[r].values.to_numpy(zero_copy_only=False).reshape(n, spec.k)
            ids_cells[r], lp_cells[r] = encode(spec, ids, lps)
    mark("encode.end")
    batch = batch.drop_columns(["topk_ids_raw", "topk_lp_raw"])
    if codec and codec["name"] == "native":
        from pipeline.io import native
        from schemas.logit_shard import topk_types

        ids_type, lp_type = topk_types(native.NAME, codec["k"])
        return batch.append_column("topk_ids", native.column(ids_cells, ids_type)) \
            .append_column("topk_logprobs", native.column(lp_cells, lp_type))
    return batch.append_column("topk_ids", pa.array(ids_cells, pa.binary())) \
        .append_column("topk_logprobs", pa.array(lp_cells, pa.binary()))
