"""Vocabulary map at real sizes: a 150,000-id byte-level BPE source onto a 100,000-id byte-level BPE pivot.

    python tests/benchmarks/bench_vocab_map.py     # trains both tokenizers on first use (minutes, cached)

Prints one JSON line per figure (wall ``*_s`` and CPU ``*_cpu_s``; goal: the map in < 60 s wall on a quiet 2-core
machine). Also times the byte edit-distance search on its own (every non-exact source token against the pivot tokens
starting with the same byte): the path a pivot takes when it lacks some bytes (no byte fallback), here forced on all
of them. The exact share is checked against an independent count (source tokens whose bytes some pivot token has).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _large_tokenizers  # noqa: E402

from pipeline.align.nearest import nearest_same_start  # noqa: E402
from pipeline.align.vocab_map import build_vocab_map, fan_in, summarize  # noqa: E402
from pipeline.modeling.canonical import canonicalize  # noqa: E402

GOAL_S = 60


def emit(figure: str, value, **extra) -> None:
    print(json.dumps({"bench": "vocab_map", "figure": figure, "value": value, **extra}, ensure_ascii=False),
          flush=True)


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    toks = {}
    for kind in ("bpe150k", "bpe100k"):
        toks[kind], wall, cpu = timed(_large_tokenizers.load, kind)
        emit("tokenizer_ready_s", wall, cpu_s=cpu, kind=kind, vocab=len(toks[kind]))
    src, piv = toks["bpe150k"], toks["bpe100k"]
    table, wall, cpu = timed(build_vocab_map, src, piv)
    share = summarize(table)
    cs, cp = canonicalize(src), canonicalize(piv)
    pivot_bytes = {b for j, b in enumerate(cp.token_bytes) if not cp.special[j]}
    regular = [i for i in range(len(cs)) if not cs.special[i]]
    exact_count = sum(cs.token_bytes[i] in pivot_bytes for i in regular) / len(cs)
    top = [(cp.token_bytes[p].decode("utf-8", "backslashreplace"), n) for p, n in fan_in(table, 5)]
    emit("vocab_map_s", wall, cpu_s=cpu, source_vocab=len(src), pivot_vocab=len(piv), exact_share=share["exact"],
         exact_share_independent=exact_count, shares=share, fan_in=top, goal_s=GOAL_S)
    todo = [cs.token_bytes[i] for i in regular if cs.token_bytes[i] not in pivot_bytes]
    choices = sorted(pivot_bytes)
    found, wall, cpu = timed(nearest_same_start, todo, choices)
    dist = np.array([d[0] for _, d in found if d.size])
    emit("edit_search_s", wall, cpu_s=cpu, queries=len(todo), choices=len(choices),
         mean_distance=float(dist.mean()) if dist.size else None)


if __name__ == "__main__":
    main()
