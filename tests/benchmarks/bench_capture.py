"""Capture throughput: the whole Ray job vs a bare in-process ``forward + top-k`` loop, same model, data, run.

Prints one JSON line per figure. The model is a GPT-2 shaped LM big enough that the forward pass dominates
(as it does for real models); the Ray cluster is started before timing (a cluster outlives jobs). The job's fixed
start-up (Ray Data plan, actor start, model load) is reported on its own: it does not grow with the data, so the
ratio depends on the workload size: ``--samples 600,3000`` measures each size side by side in one run (bare, then
job, per size), so a machine shared with other work loads both sides alike. The ``startup`` figure breaks the
start-up down from start-up marks (``pipeline/trace.py``) of the driver, the tasks and the actor: seconds from the
job's start to each first event; ``cli_startup`` times a fresh ``logitfuse capture --help`` (the imports a
command pays before its job runs) and ``cold_import_s`` the library imports every cold worker pays (torch, and
transformers' tokenizer or model stack): the floor under the job's start-up that no plan change removes.
Usage: python tests/benchmarks/bench_capture.py [--samples 600,3000] [--layers 6] [--hidden 384]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def build_model(hidden: int, layers: int) -> Path:
    import transformers

    from pipeline.tiny.models import cache_root
    from pipeline.tiny.tokenizers import build_tokenizer

    path = cache_root() / "bench_capture" / f"gpt2-h{hidden}-l{layers}"
    if not (path / "config.json").exists():
        tok = build_tokenizer("bpe", 1024)
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(vocab_size=len(tok), n_embd=hidden, n_layer=layers, n_head=hidden // 64,
                                      n_positions=1024, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
        transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
        tok.save_pretrained(path)
    return path


def write_data(path: Path, n: int) -> None:
    from pipeline.tiny.corpus import sentence

    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            resp = " ".join(sentence(rng) for _ in range(rng.randint(4, 16)))
            f.write(json.dumps({"id": f"b{i:05d}", "prompt": sentence(rng), "response": resp}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", default="600,3000", help="comma-separated sample counts, each measured in turn")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()

    import ray

    from pipeline import trace

    cli_startup()
    import_costs()
    model_path = build_model(args.hidden, args.layers)
    marks = Path(tempfile.mkdtemp(prefix="bench_capture-trace-")) / "trace.jsonl"
    os.environ[trace.ENV] = str(marks)  # before ray.init: the workers inherit it
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)  # a cluster outlives jobs
    for n in [int(x) for x in args.samples.split(",")]:
        measure(model_path, n, args.k, marks)
    ray.shutdown()
    shutil.rmtree(marks.parent, ignore_errors=True)


def cli_startup() -> None:
    """Wall time of a fresh ``logitfuse capture --help``: interpreter start and the imports before a job runs."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "capture", "--help"], check=True,
                   stdout=subprocess.DEVNULL, env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[2])})
    print(json.dumps({"bench": "capture", "figure": "cli_startup_s", "value": round(time.perf_counter() - t0, 2),
                      "what": "python -m pipeline.cli capture --help in a fresh process",
                      "loadavg_1m": round(os.getloadavg()[0], 1)}), flush=True)


IMPORTS = {  # what a cold Ray worker of capture imports before its first batch, cumulative
    "torch": "import torch",
    "tokenize_task": "from transformers import AutoTokenizer",  # pulls torch in too when it is installed
    "forward_actor": "import torch; from transformers import AutoModelForCausalLM, GPT2LMHeadModel",
}


def import_costs() -> None:
    """Wall seconds of each cold import in a fresh interpreter: the floor of a cold worker's start-up."""
    out = {}
    for name, code in IMPORTS.items():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        out[name] = round(time.perf_counter() - t0, 2)
    print(json.dumps({"bench": "capture", "figure": "cold_import_s", "value": out,
                      "what": "python -c '<import>' in a fresh process, interpreter start included",
                      "loadavg_1m": round(os.getloadavg()[0], 1)}), flush=True)


# first occurrence of each event after the job's start, in the order a run reaches them; a worker's imports are
# told apart by process: "stages.imported@actor" (the forward actor's), "stages.imported@task" (a tokenize task's)
STARTUP_EVENTS = ("job.samples_loaded", "job.tokenizer_loaded", "job.fingerprinted", "job.pipeline_start",
                  "job.ray_ready", "job.plan_built", "stages.imported@task", "tokenize.start", "tokenize.end",
                  "stages.imported@actor", "actor.init_start", "actor.model_loaded", "actor.call_start",
                  "actor.call_end", "encode.start", "encode.end", "job.batch_received", "job.pipeline_done", "job.end")


def startup_breakdown(marks: Path) -> dict[str, float]:
    """Seconds from the last ``job.start`` in ``marks`` to the first of each event after it."""
    from pipeline import trace

    events = trace.read(str(marks))
    start = [m for m in events if m["event"] == "job.start"][-1]
    events = [m for m in events if m["t"] >= start["t"]]
    actors = {m["pid"] for m in events if m["event"] == "actor.init_start"}
    first: dict[str, float] = {}
    for m in events:
        name = m["event"]
        if name == "stages.imported":
            if m["pid"] == start["pid"]:
                continue  # the driver's own import
            name += "@actor" if m["pid"] in actors else "@task"
        first.setdefault(name, round(m["t"] - start["t"], 2))
    out = {e: first[e] for e in STARTUP_EVENTS if e in first}
    ends = [m["t"] for m in events if m["event"] == "actor.call_end"]
    if ends and "job.end" in out:  # after the last forward: encode, hand-over and write of the last shard, manifest
        out["tail_after_last_forward"] = round(start["t"] + out["job.end"] - ends[-1], 2)
    # worker processes that imported the stages during this job (cold starts: each imports torch + transformers)
    out["cold_workers"] = len({m["pid"] for m in events
                               if m["event"] == "stages.imported" and m["pid"] != start["pid"]})
    return out


def measure(model_path: Path, samples: int, k: int, marks: Path) -> None:
    """Bare forward + top-k, then the whole job, on the same ``samples`` samples; one JSON line per figure."""
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.inputs import load_samples
    from pipeline.capture.job import run_capture
    from pipeline.capture.model import load_model
    from pipeline.capture.render import tokenize_sample, uses_template
    from pipeline.capture.topk import forward_topk
    from pipeline.modeling.load import load_tokenizer

    work = Path(tempfile.mkdtemp(prefix="bench_capture-"))
    data = work / "data.jsonl"
    write_data(data, samples)
    cfg = CaptureConfig.load(None, [f"input={data}", f"output={work / 'out'}", f"model={model_path}",
                                    f"k={k}", "shard_size=100", "progress=false"])

    # bare: tokenised rows prepared beforehand, then only forward + top-k is timed
    tok = load_tokenizer(str(model_path))
    rows = []
    for s in load_samples(str(data)):
        t = tokenize_sample(tok, s, max_length=cfg.max_length, overlength="truncate",
                            use_template=uses_template(tok, "auto"))
        rows.append((t.input_ids, t.response_start))
    positions = sum(len(i) - r for i, r in rows)
    torch.set_num_threads(os.cpu_count() or 1)
    model = load_model(str(model_path), "cpu", torch.float32)
    params = sum(p.numel() for p in model.parameters())
    forward_topk(model, rows[:8], k, cfg.token_budget, cfg.head_chunk)  # warm-up
    t0 = time.perf_counter()
    for s in range(0, len(rows), cfg.shard_size):  # same per-shard grouping as the job
        forward_topk(model, rows[s:s + cfg.shard_size], k, cfg.token_budget, cfg.head_chunk)
    bare = time.perf_counter() - t0
    del model

    t0 = time.perf_counter()
    m = run_capture(cfg)
    job = time.perf_counter() - t0
    common = {"bench": "capture", "device": "cpu", "cores": os.cpu_count(), "params": params,
              "samples": samples, "positions": positions, "k": k, "loadavg_1m": round(os.getloadavg()[0], 1)}
    print(json.dumps(common | {"figure": "bare_forward_topk_tokens_per_s", "value": round(positions / bare, 1)}))
    print(json.dumps(common | {"figure": "job_tokens_per_s", "value": round(positions / job, 1),
                               "padding_fraction": round(m.stats["padding_fraction"], 4)}))
    print(json.dumps(common | {"figure": "job_over_bare_throughput", "value": round(bare / job, 3), "goal": 0.85}))
    fwd = m.stats["forward_seconds"]
    print(json.dumps(common | {"figure": "actor_forward_over_bare", "value": round(bare / fwd, 3),
                               "what": "bare time / time the actor spent in forward + top-k inside the job"}))
    print(json.dumps(common | {"figure": "job_fixed_overhead_s", "value": round(job - fwd, 2),
                               "what": "job wall time not spent in the actor's forward: start-up, first/last block"}))
    print(json.dumps(common | {"figure": "startup", "value": startup_breakdown(marks),
                               "what": "seconds from the job's start to the first of each event"}), flush=True)
    shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
