"""Loss benchmark: GLD and the shared top-k against full-vocabulary CE, GLD memory, GLD vs exact GW.

    python tests/benchmarks/bench_losses.py [--repeats 9] [--threads N]

Prints one JSON line per figure. Sizes: one sequence of T=2048 positions, k=10, V=32000, fp32, on CPU.
`--threads` defaults to torch's; on an oversubscribed machine prefer 1: there each small op's parallel region waits
for a descheduled OpenMP thread, which inflates the millisecond-scale GLD timings 30-60x but not CE.
The denominator is full-vocabulary cross-entropy forward+backward on a `[T,V]` logits leaf (`F.cross_entropy`, no
LM-head matmul, so the ratios are not flattered by the head's cost). Every timed function runs once per repeat in an
interleaved round and the figure is the median over rounds, so the ratios come from the same machine state.
Peak memory is the growth of the peak RSS (VmHWM, reset first) in a fresh subprocess between "inputs built" and
"forward+backward done", after a 16-position warm-up call: every byte the operation made resident, allocator
included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.losses import gld_rank_loss, gld_vocab_loss
from pipeline.losses.reference import gld_and_exact_gw
from _memory import reset_peak, rss_kib

T, K, V = 2048, 10, 32000
ZIPF_A = 1.1  # top-k ids of real LMs are concentrated on frequent tokens; a Zipf draw gives a realistic node count


def emit(figure: str, value, **extra) -> None:
    print(json.dumps({"bench": "losses", "figure": figure, "value": value, **extra}), flush=True)


def _ids(gen: np.random.Generator, positions: int = T) -> torch.Tensor:
    """`[1,T,K]` distinct-per-position pivot ids drawn from a Zipf law over V."""
    out = np.empty((positions, K), dtype=np.int64)
    for t in range(positions):
        row: list[int] = []
        while len(row) < K:
            v = int(gen.zipf(ZIPF_A)) - 1
            if v < V and v not in row:
                row.append(v)
        out[t] = row
    return torch.from_numpy(out).unsqueeze(0)


def _inputs(seed: int = 0, t: int = T):
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)
    s_lp = (torch.randn(1, t, K) * 2).log_softmax(-1).sort(-1, descending=True).values - 1.0
    t_lp = (torch.randn(1, t, K) * 2).log_softmax(-1) - 1.0
    return s_lp, _ids(gen, t), t_lp, _ids(gen, t), torch.ones(1, t, dtype=torch.bool)


# ---------------------------------------------------------------------------------------------------- timing
def loss_fns(logits, targets, s_lp, s_ids, t_lp, t_ids, mask, k: int = K) -> dict:
    """The timed forward+backward calls on given tensors (any size, device, dtype): full-vocabulary CE on a
    ``[T,V]`` logits leaf, the student top-k with its gradient scatter, GLD rank and vocab. Shared with
    tests/gpu/loss_check.py."""

    def ce():
        x = logits.detach().requires_grad_(True)
        F.cross_entropy(x, targets).backward()

    def topk():
        x = logits.detach().requires_grad_(True)
        x.topk(k, dim=-1).values.float().sum().backward()  # forward + the scatter of its gradient into [T,V]

    def rank():
        x = s_lp.detach().requires_grad_(True)
        gld_rank_loss(x, t_lp, mask).backward()

    def vocab():
        x = s_lp.detach().requires_grad_(True)
        gld_vocab_loss(x, s_ids, t_lp, t_ids, mask).backward()

    return {"ce": ce, "topk": topk, "gld_rank": rank, "gld_vocab": vocab}


def bench_time(repeats: int) -> None:
    s_lp, s_ids, t_lp, t_ids, mask = _inputs()
    logits = torch.randn(T, V) * 3
    targets = torch.randint(0, V, (T,))
    fns = loss_fns(logits, targets, s_lp, s_ids, t_lp, t_ids, mask)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ms = {name: statistics.median(v) * 1e3 for name, v in times.items()}
    shape = {"T": T, "k": K, "V": V, "threads": torch.get_num_threads(), "repeats": repeats,
             "loadavg_1m": round(os.getloadavg()[0], 1)}
    emit("ce_full_vocab_fwd_bwd_ms", round(ms["ce"], 2), **shape)
    for name, goal in (("gld_rank", 0.05), ("gld_vocab", 0.05), ("topk", 0.5)):
        emit(f"{name}_fwd_bwd_over_ce", round(ms[name] / ms["ce"], 4), ms=round(ms[name], 3), goal=f"<={goal}",
             **shape)


# ---------------------------------------------------------------------------------------------------- memory
def dense_vocab_gld(s_lp, s_ids, t_lp, t_ids, mask) -> torch.Tensor:
    """The naive vocab-space GLD: dense Z `[M,U]`, C = ZᵀZ `[U,U]`, row sums, sort (one sequence, all masked in)."""
    nodes, inverse = torch.unique(torch.cat([s_ids.flatten(), t_ids.flatten()]), return_inverse=True)
    u, n, positions = nodes.numel(), s_ids.numel(), s_lp.shape[1]
    rows = torch.arange(positions).repeat_interleave(K)
    degrees = []
    for lp, inv in ((s_lp, inverse[:n]), (t_lp, inverse[n:])):
        z = lp.new_zeros(positions, u).index_put((rows, inv), lp.softmax(-1).flatten(), accumulate=True)
        degrees.append((z.T @ z).sum(1).sort(descending=True).values)
    return (degrees[0] - degrees[1]).abs().sum() / positions


def _child_memory(which: str) -> None:
    fns = {"gld_vocab": gld_vocab_loss, "gld_rank": gld_rank_loss, "dense": dense_vocab_gld}

    def run(s_lp, s_ids, t_lp, t_ids, mask):
        x = s_lp.requires_grad_(True)
        if which == "gld_rank":
            gld_rank_loss(x, t_lp, mask).backward()
        else:
            fns[which](x, s_ids, t_lp, t_ids, mask).backward()

    # Warm-up on 16 positions: lazy inits and the autograd thread are not the loss's memory, and a full-size
    # warm-up would leave its buffers in the allocator and hide them from the measured call.
    run(*_inputs(1, 16))
    inputs = _inputs()
    before = reset_peak()
    run(*inputs)
    after = rss_kib("VmHWM")
    nodes = torch.unique(torch.cat([inputs[1].flatten(), inputs[3].flatten()])).numel()
    print(json.dumps({"peak_kib": after - before, "nodes": nodes}))


def _measure(which: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", which], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_memory() -> None:
    dense, rank, vocab = _measure("dense"), _measure("gld_rank"), _measure("gld_vocab")
    note = "peak RSS (VmHWM) growth in a fresh process during forward+backward"
    emit("gld_dense_C_peak_MiB", round(dense["peak_kib"] / 1024, 1), nodes_U=dense["nodes"], T=T, k=K, how=note)
    emit("gld_vocab_peak_MiB", round(vocab["peak_kib"] / 1024, 1), nodes_U=vocab["nodes"], how=note)
    emit("gld_rank_peak_MiB", round(rank["peak_kib"] / 1024, 1), how=note)
    emit("gld_vocab_peak_over_dense", round(vocab["peak_kib"] / max(dense["peak_kib"], 1), 4))


# ---------------------------------------------------------------------------------------------------- GW
def bench_gw(seeds: int, pairs: int = 30, m: int = 8, k: int = 6) -> None:
    from scipy.stats import pearsonr, spearmanr

    rhos, pearsons = [], []
    for seed in range(seeds):
        gld, gw = gld_and_exact_gw(pairs, m, k, seed)
        rhos.append(spearmanr(gld, gw).statistic)
        pearsons.append(pearsonr(gld, gw).statistic)
    emit("gld_vs_exact_gw_spearman", round(float(np.median(rhos)), 3), min=round(float(min(rhos)), 3),
         max=round(float(max(rhos)), 3), pearson_median=round(float(np.median(pearsons)), 3), seeds=seeds,
         pairs=pairs, graph=f"C=AᵀA, A: {m} positions x top-{k}, POT gromov_wasserstein2 square loss")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for the timings (0 = torch default)")
    ap.add_argument("--gw-seeds", type=int, default=10)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child_memory(args.child)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_time(args.repeats)
    bench_memory()
    bench_gw(args.gw_seeds)


if __name__ == "__main__":
    main()
