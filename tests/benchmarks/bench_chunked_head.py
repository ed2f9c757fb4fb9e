"""Chunked LM head benchmark: peak memory and time of a training-style step, chunked vs unchunked.

    python tests/benchmarks/bench_chunked_head.py [--repeats 5] [--threads N]

Prints one JSON line per figure. Sizes: one sequence of T=2048 positions, H=256, V=32000, k=10, fp32, with 30
teacher ids per position gathered (three sources x top-10), as in training. The step is: head -> SFT + a loss on the
top-k log-probs + a loss on the gathered log-probs -> backward to hidden and lm_head weight. Peak memory is the
growth of the peak RSS (VmHWM, reset first) in a fresh subprocess between "inputs and weight built" and "backward
done", after a 4-position warm-up step: every byte the step made resident (logits, log-softmax, their gradients,
the 31 MiB weight gradient that any implementation needs, allocator slack).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from pipeline.losses import chunked_head, dense_head
from _memory import reset_peak, rss_kib

T, H, V, K, K2 = 2048, 256, 32000, 10, 30


def emit(figure: str, value, **extra) -> None:
    print(json.dumps({"bench": "chunked_head", "figure": figure, "value": value, **extra}), flush=True)


def _inputs(t: int = T):
    torch.manual_seed(0)
    hidden = torch.randn(1, t, H, requires_grad=True)
    weight = (torch.randn(V, H) * H**-0.5).requires_grad_(True)
    targets = torch.randint(0, V, (1, t))
    gather = torch.randint(0, V, (1, t, K2))
    return hidden, weight, targets, gather


def _step(which: str, hidden, weight, targets, gather) -> None:
    if which == "dense":
        out = dense_head(hidden, weight, targets, K, gather_ids=gather)
    else:
        out = chunked_head(hidden, weight, targets, K, int(which), gather_ids=gather)
    loss = -out.target_logprobs.mean() + out.topk_logprobs.exp().mean() - out.gathered_logprobs.mean()
    loss.backward()


def _child(which: str) -> None:
    # Warm-up on 4 positions: lazy inits and the autograd thread are not the head's memory, and a full-size warm-up
    # would leave its buffers in the allocator and hide them from the measured step.
    _step(which, *_inputs(4))
    inputs = _inputs()
    before = reset_peak()
    _step(which, *inputs)
    after = rss_kib("VmHWM")
    print(json.dumps({"peak_kib": after - before}))


def _peak_mib(which: str) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", which], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_kib"] / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--chunks", default="256,1024")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        _child(args.child)
        return
    variants = ["dense"] + args.chunks.split(",")
    note = "peak RSS (VmHWM) growth in a fresh process over one forward+backward"
    sizes = {"T": T, "H": H, "V": V, "k": K, "k2": K2}
    peaks = {v: _peak_mib(v) for v in variants}
    emit("head_step_peak_MiB_unchunked", round(peaks["dense"], 1), how=note, **sizes)
    for chunk in variants[1:]:
        emit(f"head_step_peak_MiB_chunk{chunk}", round(peaks[chunk], 1), how=note, **sizes)
        emit(f"head_step_peak_chunk{chunk}_over_unchunked", round(peaks[chunk] / peaks["dense"], 4))

    inputs = _inputs()
    times: dict[str, list[float]] = {v: [] for v in variants}
    for v in variants:
        _step(v, *inputs)  # warm-up
    for _ in range(args.repeats):
        for v in variants:
            for x in inputs[:2]:
                x.grad = None
            t0 = time.perf_counter()
            _step(v, *inputs)
            times[v].append(time.perf_counter() - t0)
    ms = {v: statistics.median(t) * 1e3 for v, t in times.items()}
    extra = {"threads": torch.get_num_threads(), "repeats": args.repeats, "loadavg_1m": round(os.getloadavg()[0], 1)}
    emit("head_step_ms_unchunked", round(ms["dense"], 1), **extra)
    for chunk in variants[1:]:
        emit(f"head_step_time_chunk{chunk}_over_unchunked", round(ms[chunk] / ms["dense"], 3),
             ms=round(ms[chunk], 1), **extra)


if __name__ == "__main__":
    main()
