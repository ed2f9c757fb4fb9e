"""Fusion-benchmark ground: build the two skilled sources and the weak pivot, then score each on held-out problems.

    python tests/benchmarks/bench_sources.py                  # build (or reuse) under ~/.cache/logitfuse/bench/
    python tests/benchmarks/bench_sources.py --cache /tmp/c   # a fresh cache: measures the full build time

Prints one JSON line per model (exact-match accuracy per skill on ``--n-test`` test-split problems per skill,
parameters, train and build seconds, whether it came from the cache) and a last line with the total. Goals: each
source >= 0.85 on its own skill, the pivot <= 0.5 on both, the whole build <= 480 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def emit(**fields) -> None:
    print(json.dumps({"bench": "sources", **fields}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", help="cache root to build into (sets LOGITFUSE_CACHE)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--n-test", type=int, default=500, help="test problems per skill")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    if args.cache:
        os.environ["LOGITFUSE_CACHE"] = args.cache
    # Before torch starts OpenMP: with active spinning, two threads on a machine that other processes also use
    # ran 10-20x slower than one; passive waiting keeps two threads at least as fast as one.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.bench import tasks
    from pipeline.bench.evaluate import evaluate
    from pipeline.bench.source_train import BENCH_MODELS, ensure_bench_model, load_meta

    torch.set_num_threads(args.threads)
    test = tasks.mixed("test", args.n_test, seed=0)
    total_build, total_cpu, t_all = 0.0, 0.0, time.perf_counter()
    for name, bm in BENCH_MODELS.items():
        t0 = time.perf_counter()
        path = ensure_bench_model(name, progress=not args.quiet)
        built = time.perf_counter() - t0
        meta = load_meta(path)
        cached = built < 0.5 * meta["build_seconds"]
        total_build += meta["build_seconds"]
        total_cpu += meta["build_cpu_seconds"]
        tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
        t0 = time.perf_counter()
        acc = evaluate(model, tok, test)
        goal = {s: (">=0.85" if s in bm.train.skills else None) for s in tasks.SKILLS} if bm.role == "source" \
            else {s: "<=0.5" for s in tasks.SKILLS}
        emit(model=name, role=bm.role, arch=bm.spec.arch, tokenizer=bm.spec.tokenizer, vocab=len(tok),
             params=meta["params"], accuracy={k: round(v, 3) for k, v in acc.items()}, goal=goal,
             n_test=args.n_test, train_steps=bm.train.steps, train_records=meta["train_records"],
             final_loss=round(meta["final_loss"], 4), train_seconds=meta["train_seconds"],
             build_seconds=meta["build_seconds"], build_cpu_seconds=meta["build_cpu_seconds"],
             built_threads=meta["torch_threads"], cached=cached,
             eval_seconds=round(time.perf_counter() - t0, 1), path=str(path))
    emit(model="all", build_seconds=round(total_build, 1), build_cpu_seconds=round(total_cpu, 1), goal="<=480",
         wall_seconds=round(time.perf_counter() - t_all, 1), load_average_1m=round(os.getloadavg()[0], 2),
         cpus=os.cpu_count())


if __name__ == "__main__":
    main()
