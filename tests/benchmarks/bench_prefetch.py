"""Capture start-up with the weights out of the page cache: the weight prefetch on vs off, side by side in one run.

The weight files are evicted from the page cache (``posix_fadvise(DONTNEED)``, no root needed) before each job, so
the actor's ``from_pretrained`` reads them from disk unless the driver's prefetch thread (``pipeline/capture/
prefetch.py``) got there first. Jobs alternate off / on, ``--reps`` each, on a model large enough that its read
takes seconds (a GPT-2 shape of ~1.2 GB fp32 by default) and a few samples (start-up is what is measured), after
one warm-up job that is not counted. Prints JSON lines: per job the seconds from the job's start to the actor's
model loaded and the job's wall time, then the medians and their difference. The gain grows with the read time
(a slower disk, a network file system, a bigger checkpoint) up to the start-up it hides behind. ``--read-mbps N`` (root, cgroup v1 blkio) first moves this process into a cgroup whose reads from the weights'
disk are throttled to N MB/s; Ray and its workers, started after, inherit it: a slow disk or network file system
on a machine whose own disk is fast.
Usage: python tests/benchmarks/bench_prefetch.py [--hidden 1024] [--layers 24] [--reps 3] [--read-mbps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench_capture import build_model, write_data


def evict(files: list[Path]) -> None:
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def throttle_reads(mbps: float, path: Path, root: Path = Path("/sys/fs/cgroup/blkio")) -> str:
    """Move this process into a blkio cgroup reading ``path``'s device at ``mbps`` MB/s; returns the device."""
    st = os.stat(path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    group = root / "logitfuse-bench-prefetch"
    try:
        group.mkdir(exist_ok=True)
        (group / "blkio.throttle.read_bps_device").write_text(f"{dev} {int(mbps * 1e6)}")
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as e:
        raise SystemExit(f"--read-mbps needs root and cgroup v1 blkio at {root}: {e}") from None
    return dev


def cold_read_s(files: list[Path]) -> float:
    """Seconds to read the files right after evicting them: the disk's share of a cold load."""
    evict(files)
    t0 = time.perf_counter()
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(16 << 20):
                pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--read-mbps", type=float, default=None, help="throttle reads of the weights' disk (root)")
    args = ap.parse_args()

    import ray

    from pipeline import trace
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture
    from pipeline.capture.prefetch import weight_files

    model = build_model(args.hidden, args.layers)
    files = weight_files(str(model))
    size = sum(f.stat().st_size for f in files)
    throttled = throttle_reads(args.read_mbps, files[0]) if args.read_mbps else None
    work = Path(tempfile.mkdtemp(prefix="bench_prefetch-"))
    data, marks = work / "data.jsonl", work / "trace.jsonl"
    write_data(data, args.samples)
    os.environ[trace.ENV] = str(marks)  # before ray.init: the workers inherit it
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)  # a cluster outlives jobs
    common = {"bench": "prefetch", "weights_mib": size >> 20, "samples": args.samples,
              "read_mbps_limit": args.read_mbps, "device": throttled, "cold_read_s": round(cold_read_s(files), 2)}
    run_capture(CaptureConfig.load(None, [f"input={data}", f"output={work / 'warm-up'}", f"model={model}", "k=10",
                                          "progress=false"]))  # Ray Data's first start in this driver is slower
    rows: dict[bool, list[dict]] = {False: [], True: []}
    for rep in range(args.reps):
        for on in (False, True):
            out = work / f"out-{rep}-{on}"
            cfg = CaptureConfig.load(None, [f"input={data}", f"output={out}", f"model={model}", "k=10",
                                            "progress=false", f"prefetch_weights={str(on).lower()}"])
            evict(files)
            t0 = time.time()
            m = run_capture(cfg)
            wall = time.time() - t0
            loaded = [e["t"] for e in trace.read(str(marks)) if e["event"] == "actor.model_loaded" and e["t"] > t0]
            row = {"prefetch": on, "rep": rep, "job_s": round(wall, 2),
                   "model_loaded_s": round(loaded[0] - t0, 2) if loaded else None,
                   "prefetch_s": m.stats.get("prefetch_seconds"), "prefetch_mib": int(m.stats.get("prefetch_bytes",
                                                                                                    0)) >> 20}
            rows[on].append(row)
            print(json.dumps(common | row | {"loadavg_1m": round(os.getloadavg()[0], 1)}), flush=True)
            shutil.rmtree(out, ignore_errors=True)
    med = {on: {k: statistics.median(r[k] for r in rows[on]) for k in ("job_s", "model_loaded_s")} for on in rows}
    print(json.dumps(common | {"figure": "median_off_minus_on_s",
                               "model_loaded_s": round(med[False]["model_loaded_s"] - med[True]["model_loaded_s"], 2),
                               "job_s": round(med[False]["job_s"] - med[True]["job_s"], 2),
                               "off": med[False], "on": med[True]}), flush=True)
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
