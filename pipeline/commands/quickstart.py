"""``logitfuse quickstart``: the whole pipeline on this machine — build (or reuse) two sources with different
tokenizers and a pivot, generate data, capture → align → train (SFT + ULD + GLD) → evaluate — through the same jobs
a cluster user runs. Re-running reuses every finished step."""

from __future__ import annotations

import json
import time
from pathlib import Path


def add_arguments(p, name: str) -> None:
    """Options."""
    p.add_argument("--out", default="runs/quickstart", help="report folder (default runs/quickstart)")


def run(args) -> int:
    """Run the quick fusion profile and print what a person wants to see."""
    from pipeline.bench.fusion import PROFILES, run_benchmark
    from pipeline.inspect import plot, summarize

    t0 = time.time()
    out = Path(args.out)
    res = run_benchmark(out, PROFILES["quick"])
    prep = res["prep"]
    print("\nshards")
    print(f"  {'model':<14} {'samples':>8} {'tokens':>8} {'bytes/token':>12} {'top-1 = target':>15}")
    for name, m in prep["capture"].items():
        agree = "-"
        if m.codec.get("codec") != "none":
            s = summarize(out / "shards" / name)
            plot(s, out / f"inspect-{name}.png")
            agree = f"{s['top1_agreement']:.3f}"
        print(f"  {name:<14} {m.num_samples:>8} {m.total_tokens:>8} {m.stats['bytes_per_token']:>12.2f} {agree:>15}")
    print("\nalignment onto the pivot")
    for name, m in prep["aligned"].items():
        print(f"  {name:<14} coverage {m.stats['coverage']:.1%}  vocab map exact {m.stats['map_exact']:.1%}")
    print("\nlast logged loss terms")
    for run_dir in sorted((out / "train").iterdir()):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
        if lines:
            last = json.loads(lines[-1])
            terms = "  ".join(f"{k} {last[k]:.3f}" for k in ("loss", "sft", "uld", "gld", "kl") if k in last)
            print(f"  {run_dir.name:<24} step {last['step']:>4}  {terms}")
    print("\nexact-match accuracy on held-out problems\n")
    print(res["table"])
    print(f"\nreport folder: {out}/ (results.md, accuracy.png, train/*/loss_curves.png, train/*/model, shards/)")
    print(f"done in {time.time() - t0:.0f} s")
    return 0
