"""GPU device check, loss part: GLD (rank and vocab space) and the shared student top-k against full-vocabulary CE.

    python tests/gpu/loss_check.py [--dry-run] [--T 4096] [--V 151936] [--k 10] [--repeats 20]

Forward+backward of each on one sequence of T positions in bf16 on the GPU, timed with CUDA events after a warm-up,
interleaved per round, median over rounds (as tests/benchmarks/bench_losses.py does on CPU). The denominator is
``F.cross_entropy`` forward+backward on a ``[T, V]`` bf16 logits leaf (no LM-head matmul, so the ratios are not
flattered by the head's cost). Goals: GLD <= 5 % of CE, the shared top-k <= 50 %. Teacher ids are drawn from a
Zipf law over V, as real top-k ids concentrate on frequent tokens. ``--dry-run``: CPU, tiny sizes, still bf16.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def emit(figure: str, value, **extra) -> None:
    print(json.dumps({"check": "losses", "figure": figure, "value": value, **extra}), flush=True)


def zipf_ids(t: int, k: int, v: int, seed: int):
    """``[1, t, k]`` distinct-per-position ids, Zipf(1.1) over ``v`` (8k draws a position, the first k distinct)."""
    import numpy as np
    import torch

    gen = np.random.default_rng(seed)
    out = np.empty((t, k), dtype=np.int64)
    for row in range(t):
        draw = gen.zipf(1.1, size=8 * k) - 1
        draw = draw[draw < v]
        _, first = np.unique(draw, return_index=True)
        picked = draw[np.sort(first)][:k]
        while len(picked) < k:  # rare: top up with unused ids
            picked = np.append(picked, [i for i in range(v) if i not in picked][: k - len(picked)])
        out[row] = picked
    return torch.from_numpy(out).unsqueeze(0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--V", type=int, default=151_936)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_losses import loss_fns  # the CPU benchmark's calls, here on the GPU in bf16

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        raise SystemExit("loss_check: no CUDA device (use --dry-run on CPU)")
    dev, dtype = ("cpu" if dry else "cuda"), torch.bfloat16  # the dry run takes the same bf16 path on CPU
    t, v, k, repeats = (128, 2048, args.k, 3) if dry else (args.T, args.V, args.k, args.repeats)
    torch.manual_seed(0)
    s_lp = ((torch.randn(1, t, k) * 2).log_softmax(-1).sort(-1, descending=True).values - 1.0).to(dev, dtype)
    t_lp = ((torch.randn(1, t, k) * 2).log_softmax(-1) - 1.0).to(dev, dtype)
    s_ids, t_ids = zipf_ids(t, k, v, 1).to(dev), zipf_ids(t, k, v, 2).to(dev)
    mask = torch.ones(1, t, dtype=torch.bool, device=dev)
    logits = (torch.randn(t, v, device=dev) * 3).to(dtype)
    targets = torch.randint(0, v, (t,), device=dev)

    fns = loss_fns(logits, targets, s_lp, s_ids, t_lp, t_ids, mask, k)

    def timed(fn) -> float:
        if dev == "cpu":
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    for fn in fns.values():
        fn()  # warm-up: kernels, allocator
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    ms = {name: statistics.median(x) * 1e3 for name, x in times.items()}
    shape = {"T": t, "V": v, "k": k, "dtype": str(dtype).removeprefix("torch."), "device": dev, "dry_run": dry,
             "repeats": repeats, "torch": torch.__version__}
    emit("ce_full_vocab_fwd_bwd_ms", round(ms["ce"], 3), **shape)
    res = {}
    for name, goal in (("gld_rank", 0.05), ("gld_vocab", 0.05), ("topk", 0.5)):
        res[name] = ms[name] / ms["ce"]
        emit(f"{name}_fwd_bwd_over_ce", round(res[name], 4), ms=round(ms[name], 3), goal=f"<={goal}", **shape)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
