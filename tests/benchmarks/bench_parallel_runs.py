"""Fusion benchmark training runs: one at a time vs side by side, on the same prepared setting, in one run.

A training run of the benchmark's tiny pivot is about half fixed cost: Ray Train starts its controller and worker
actors cold (each a fresh Python process importing Ray, torch and transformers) and the worker builds the model
before the first step. ``run_benchmark`` therefore trains ``Profile.parallel_runs`` runs at a time, each at
cores // parallel_runs torch threads. This measures that choice: for each width (1 = one at a time with every core)
it trains ``width`` runs of the same variant and seed under fresh run names (at width 1 as many runs as the widest
width trains, so both sides do the same work) and prints one JSON line per width with runs per minute, and the speed-up over one
at a time. The setting is prepared once (capture + align) before any timing.
Usage: python tests/benchmarks/bench_parallel_runs.py [--widths 1,2,3] [--steps 150] [--models bench|quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="1,2,3", help="runs side by side, comma-separated; 1 = one at a time")
    ap.add_argument("--steps", type=int, default=150, help="optimizer steps of each run")
    ap.add_argument("--models", choices=["bench", "quick"], default="bench",
                    help="bench: the full profile's models (built once and cached); quick: the quickstart's")
    ap.add_argument("--variant", default="sft+uld+gld")
    args = ap.parse_args()

    from pipeline.bench import fusion
    from pipeline.bench.source_train import ensure_bench_models
    from pipeline.bench.variants import CHOSEN
    from pipeline.ray_utils import ensure_ray

    ensure_ray()
    suffix = "" if args.models == "bench" else "-quick"
    names = {role: role + suffix for role in fusion.ROLES}
    built = ensure_bench_models(list(names.values()))
    models = {role: built[name] for role, name in names.items()}
    work = Path(tempfile.mkdtemp(prefix="bench_parallel_runs-"))
    base = dataclasses.replace(fusion.PROFILES["full"], max_steps=args.steps, epochs=100)
    prep = fusion.prepare(work / "several-answers", base, "several-answers", models, progress=False)
    widths = [int(w) for w in args.widths.split(",")]
    most = max(widths)
    per_minute = {}
    for width in widths:
        profile = dataclasses.replace(base, parallel_runs=width)
        n = most if width == 1 else width  # one at a time trains as many runs as the widest side by side
        t0 = time.perf_counter()
        with ThreadPoolExecutor(width) as pool:
            # fresh run names: never a run already trained
            list(pool.map(lambda i: fusion.train_variant(prep, profile, args.variant, CHOSEN, 0, progress=False,
                                                         name=f"{args.variant}-w{width}-{i}"), range(n)))
        wall = time.perf_counter() - t0
        per_minute[width] = 60 * n / wall
        print(json.dumps({"bench": "parallel_runs", "width": width, "runs": n, "steps": args.steps,
                          "torch_threads": fusion.torch_threads(profile), "wall_s": round(wall, 1),
                          "runs_per_min": round(per_minute[width], 3),
                          "speedup_over_one_at_a_time": round(per_minute[width] / per_minute[widths[0]], 3)
                          if widths[0] == 1 else None, "cores": os.cpu_count(), "models": args.models,
                          "loadavg_1m": round(os.getloadavg()[0], 1)}), flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
