"""Fusion benchmark training runs: Ray Train actors per run vs long-lived trainer processes in the train job's local
mode, one at a time vs side by side, on the same prepared setting, in one run.

A training run of the benchmark's tiny pivot is mostly fixed cost when Ray Train runs it: its controller and worker
actors start cold (each a fresh Python process importing Ray, torch and transformers) before the worker builds the
model. ``run_benchmark`` therefore trains in ``Profile.parallel_runs`` long-lived trainer processes, each importing
once and training run after run with ``num_workers=0`` (Ray Train's local mode), at cores // parallel_runs torch
threads. This measures both choices: for each mode (``ray``: one Ray Train worker actor per run, driven from a
thread; ``local``: the trainer processes, created inside the timing, so their imports count) and width it trains
``--runs`` runs of the same variant and seed under fresh run names and prints one JSON line with runs per minute and
the speed-up over the first line. The setting is prepared once (capture + align) before any timing.
Usage: python tests/benchmarks/bench_parallel_runs.py [--modes ray,local] [--widths 1,2] [--runs 4] [--steps 150]
       [--models bench|quick]
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
    ap.add_argument("--modes", default="ray,local", help="ray: a Ray Train worker actor per run; local: trainer "
                                                         "processes in the train job's local mode")
    ap.add_argument("--widths", default="1,2", help="runs side by side, comma-separated; 1 = one at a time")
    ap.add_argument("--runs", type=int, default=4, help="training runs per mode and width")
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
    first = None
    for mode in args.modes.split(","):
        for width in (int(w) for w in args.widths.split(",")):
            profile = dataclasses.replace(base, parallel_runs=width)
            runs = [(f"{args.variant}-{mode}-w{width}-{i}", 0 if mode == "local" else 1) for i in range(args.runs)]
            t0 = time.perf_counter()
            if mode == "local":
                with fusion.trainer_pool(profile) as trainers:
                    futures = [trainers.submit(fusion.train_variant, prep, profile, args.variant, CHOSEN, 0, False,
                                               name, workers) for name, workers in runs]
                    for f in futures:
                        f.result()
            else:
                with ThreadPoolExecutor(width) as pool:
                    list(pool.map(lambda r: fusion.train_variant(prep, profile, args.variant, CHOSEN, 0, False, *r),
                                  runs))
            wall = time.perf_counter() - t0
            per_minute = 60 * args.runs / wall
            first = first or per_minute
            print(json.dumps({"bench": "parallel_runs", "mode": mode, "width": width, "runs": args.runs,
                              "steps": args.steps, "torch_threads": fusion.torch_threads(profile),
                              "wall_s": round(wall, 1), "runs_per_min": round(per_minute, 3),
                              "speedup_over_first": round(per_minute / first, 3), "cores": os.cpu_count(),
                              "models": args.models, "loadavg_1m": round(os.getloadavg()[0], 1)}), flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
