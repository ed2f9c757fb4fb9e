"""Capture throughput with the output on an S3 API server (moto's, on 127.0.0.1, auth on) vs a local folder: same
model, data and Ray cluster, measured side by side in one run (local, s3, local, s3 …, best of each), so a machine
shared with other work loads both sides alike. Prints one JSON line per figure; the goal is s3/local >= 0.9.

The S3 server runs on this machine and shares its cores; with a remote store the network replaces that cost.
Usage: python tests/benchmarks/bench_capture_s3.py [--samples 600] [--rounds 2] [--layers 6] [--hidden 384]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_capture import build_model, write_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2, help="local/s3 pairs; the best time of each side is reported")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--shard-size", type=int, default=100)
    args = ap.parse_args()

    import ray

    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture
    from pipeline.io.fs import clear_cache, location
    from tests import s3_server

    server = s3_server.start()
    os.environ.update(server.env)  # before Ray starts: its workers see the same endpoint and credentials
    clear_cache()
    bucket = server.bucket("bench-capture")
    model_path = build_model(args.hidden, args.layers)
    work = Path(tempfile.mkdtemp(prefix="bench_capture_s3-"))
    data = work / "data.jsonl"
    write_data(data, args.samples)
    # address="local": a fresh instance even when another `ray start` cluster runs on this machine
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    times: dict[str, list[float]] = {"local": [], "s3": []}
    manifests = {}
    try:
        for r in range(args.rounds):
            for side, out in (("local", str(work / f"out-{r}")), ("s3", f"{bucket}/out-{r}")):
                cfg = CaptureConfig.load(None, [f"input={data}", f"output={out}", f"model={model_path}",
                                                f"k={args.k}", f"shard_size={args.shard_size}", "progress=false"])
                t0 = time.perf_counter()
                manifests[side] = run_capture(cfg)
                times[side].append(time.perf_counter() - t0)
        positions = manifests["local"].total_tokens
        same = [s.sha256 for s in manifests["local"].shards] == [s.sha256 for s in manifests["s3"].shards]
        common = {"bench": "capture_s3", "cores": os.cpu_count(), "samples": args.samples, "positions": positions,
                  "shards": len(manifests["local"].shards), "bytes": manifests["local"].total_bytes, "k": args.k,
                  "rounds": args.rounds, "loadavg_1m": round(os.getloadavg()[0], 1)}
        best = {side: min(t) for side, t in times.items()}
        for side in ("local", "s3"):
            print(json.dumps(common | {"figure": f"{side}_tokens_per_s", "value": round(positions / best[side], 1),
                                       "seconds": [round(t, 2) for t in times[side]]}))
        print(json.dumps(common | {"figure": "s3_over_local_throughput", "value": round(best["local"] / best["s3"], 3),
                                   "goal": 0.9, "identical_shards": same}), flush=True)
        location(bucket)  # the server is still up: nothing above swallowed a failure
    finally:
        ray.shutdown()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
