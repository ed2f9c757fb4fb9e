"""``logitfuse quickstart``: the whole pipeline on tiny built-in models and data, through the same jobs a cluster
user runs. Re-running reuses every finished step."""

from __future__ import annotations

import json
import time
from pathlib import Path


def add_arguments(p, name: str) -> None:
    """Options."""
    p.add_argument("--out", default="runs/quickstart", help="report folder (default runs/quickstart)")
    p.add_argument("--samples", type=int, default=240, help="generated prompt/response samples")


def run(args) -> int:
    """Generate data, capture the two sources and the pivot, print a summary table."""
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture
    from pipeline.inspect import plot, summarize
    from pipeline.tiny.corpus import records

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data.jsonl"
    with open(data, "w") as f:
        for r in records(args.samples, seed=0):
            f.write(json.dumps(r) + "\n")
    rows = []
    for model, k in (("tiny-gpt2-bpe", 10), ("tiny-llama-sp", 10), ("tiny-llama-pivot", 0)):
        cfg = CaptureConfig.load(None, [f"input={data}", f"output={out / 'shards'}", f"model=tiny:{model}",
                                        f"k={k}", "shard_size=64"])
        m = run_capture(cfg)
        s = summarize(out / "shards" / model)
        if k:
            plot(s, out / f"inspect-{model}.png")
        rows.append((model, m.num_samples, m.total_tokens, m.stats["bytes_per_token"], s.get("top1_agreement")))
    print(f"\n{'model':<18} {'samples':>8} {'tokens':>8} {'bytes/tok':>10} {'top1=target':>12}")
    for name, n, tok, bpt, agree in rows:
        print(f"{name:<18} {n:>8} {tok:>8} {bpt:>10.2f} {'-' if agree is None else f'{agree:.3f}':>12}")
    print(f"\nreport folder: {out}  ({time.time() - t0:.0f} s)")
    return 0
