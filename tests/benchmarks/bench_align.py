"""Align benchmark: offsets alignment vs plain DTW, and the vocabulary map, on two real-size tokenizer families.

    python tests/benchmarks/bench_align.py            # trains the two tokenizers on first use (~2 min, cached)
    python tests/benchmarks/bench_align.py --quick    # skip the plain-Python DTW baseline

Prints one JSON line per figure. Tokenizers: a 32768-id GPT-2 style byte-level BPE (source) and a 32000-id Llama
style SentencePiece BPE (pivot), trained locally on disjoint halves of the Python sources installed here
(``_large_tokenizers.py``). The alignment sample is held-out stdlib text cut to 2048 pivot tokens, tokenised by both.
Times are wall-clock (``*_s``) and CPU (``*_cpu_s``); the CPU figure is the one to compare on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _large_tokenizers  # noqa: E402

from pipeline.align.dtw import dtw_align, path_to_alignment, reference_dtw  # noqa: E402
from pipeline.align.offsets import ONE_TO_ONE, align_offsets  # noqa: E402
from pipeline.align.vocab_map import build_vocab_map, fan_in, summarize  # noqa: E402
from pipeline.modeling.canonical import canonicalize  # noqa: E402

N_TOKENS = 2048


def emit(figure: str, value, **extra) -> None:
    print(json.dumps({"bench": "align", "figure": figure, "value": value, **extra}), flush=True)


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def encode(tok, text: str):
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    offs = np.asarray(enc["offset_mapping"], np.int64)
    return np.asarray(enc["input_ids"], np.int64), offs[:, 0], offs[:, 1]


def sample_text(pivot) -> str:
    """Held-out text that the pivot tokenises into exactly N_TOKENS tokens; it starts with a space so that no
    tokenizer prepends one and token bytes give ground-truth boundaries."""
    text = " " + _large_tokenizers.held_out_text(16 * N_TOKENS).lstrip()
    offs = pivot(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    return text[: offs[N_TOKENS][0]]


def bench_alignment(src, piv, quick: bool) -> None:
    text = sample_text(piv)
    (ids_s, s0, s1), (ids_p, p0, p1) = encode(src, text), encode(piv, text)
    cs, cp = canonicalize(src), canonicalize(piv)
    al = align_offsets(s0, s1, p0, p1)
    runs = [timed(align_offsets, s0, s1, p0, p1)[1:] for _ in range(200)]
    t_off, c_off = (statistics.median(r) for r in zip(*runs))
    # ground truth independent of the tokenizers' offsets: where each token starts in the UTF-8 bytes
    start_s = np.cumsum([0] + [len(cs.token_bytes[i]) for i in ids_s])[:-1]
    start_p = np.cumsum([0] + [len(cp.token_bytes[i]) for i in ids_p])[:-1]
    hit = np.flatnonzero(al.src_index >= 0)
    one = al.relation == ONE_TO_ONE
    common = dict(source_tokens=int(ids_s.size), pivot_tokens=int(ids_p.size), chars=len(text))
    emit("offsets_align_s", t_off, cpu_s=c_off, **common, coverage=al.coverage, relations=al.counts(),
         boundaries_verified=bool(np.array_equal(start_s[al.src_index[hit]], start_p[hit])))
    a_txt, p_txt = cs.texts(ids_s.tolist()), cp.texts(ids_p.tolist())
    fast, wall, cpu = timed(dtw_align, a_txt, p_txt)
    emit("numpy_dtw_s", wall, cpu_s=cpu, **common, cost="containment", coverage=fast.coverage,
         same_as_offsets_on_1to1=float((fast.src_index[one] == al.src_index[one]).mean()),
         offsets_speedup=wall / t_off, offsets_speedup_cpu=cpu / c_off)
    if quick:
        return
    path, wall, cpu = timed(reference_dtw, a_txt, p_txt)
    ref = path_to_alignment(path, len(p_txt))
    emit("reference_dtw_s", wall, cpu_s=cpu, **common, cost="levenshtein (FuseLLM style, Python loops)",
         coverage=ref.coverage, same_as_offsets_on_1to1=float((ref.src_index[one] == al.src_index[one]).mean()))
    emit("offsets_speedup_vs_reference_dtw", wall / t_off, cpu=cpu / c_off, **common, goal=1000)


def bench_vocab_map(src, piv) -> None:
    for name, a, b in (("bpe->sp", src, piv), ("sp->bpe", piv, src)):
        table, wall, cpu = timed(build_vocab_map, a, b)
        share = summarize(table)
        piv = canonicalize(b)
        top = [(piv.token_bytes[p].decode("utf-8", "backslashreplace"), n) for p, n in fan_in(table, 5)]
        emit("vocab_map_s", wall, cpu_s=cpu, direction=name, source_vocab=len(a), pivot_vocab=len(b),
             exact_share=share["exact"], shares=share, fan_in=top, goal_s=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the plain-Python DTW baseline")
    args = ap.parse_args()
    (src, wall, _) = timed(_large_tokenizers.load, "bpe")
    (piv, wall2, _) = timed(_large_tokenizers.load, "sp")
    emit("tokenizers_ready_s", wall + wall2, source_vocab=len(src), pivot_vocab=len(piv))
    bench_alignment(src, piv, args.quick)
    bench_vocab_map(src, piv)


if __name__ == "__main__":
    main()
