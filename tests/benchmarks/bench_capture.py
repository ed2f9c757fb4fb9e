"""Capture throughput: the whole Ray job vs a bare in-process ``forward + top-k`` loop, same model, data, run.

Prints one JSON line per figure. The model is a GPT-2 shaped LM big enough that the forward pass dominates
(as it does for real models); the Ray cluster is started before timing (a cluster outlives jobs). The job's fixed
start-up (Ray Data plan, actor start, model load) is reported on its own: it does not grow with the data, so the
ratio depends on the workload size: ``--samples 600,3000`` measures each size side by side in one run (bare, then
job, per size), so a machine shared with other work loads both sides alike.
Usage: python tests/benchmarks/bench_capture.py [--samples 600,3000] [--layers 6] [--hidden 384]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
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

    model_path = build_model(args.hidden, args.layers)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)  # a cluster outlives jobs
    for n in [int(x) for x in args.samples.split(",")]:
        measure(model_path, n, args.k)
    ray.shutdown()


def measure(model_path: Path, samples: int, k: int) -> None:
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
                               "what": "job wall time not spent in the actor's forward: start-up, first/last block"}),
          flush=True)
    shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
