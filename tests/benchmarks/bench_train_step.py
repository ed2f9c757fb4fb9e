"""Training step benchmark: fusion step vs plain SFT step; FSDP vs DDP step time and peak RSS on CPU, 2 workers.

    python tests/benchmarks/bench_train_step.py [--steps 3] [--repeats 2] [--layers 4] [--hidden 256] [--vocab 8000]

Prints one JSON line per figure, each with the machine context (``cores``, ``loadavg_1m``). The model is a random
Llama of the given shape saved with ``save_pretrained`` and loaded the way training loads it (meta device, sharded,
broadcast from rank 0: ``pipeline.train.loop.build_model``); a step is ``pipeline.train.step.train_step`` (chunked
head, losses, backward, clip, AdamW) on a fixed batch (B=4, T=256, k=10). The teachers' top-k are drawn from random
logits: the cost of the losses depends on the shapes, not on the values.

- ``fusion_over_sft``: SFT + ULD + GLD with two sources (default LossConfig) vs SFT only, same model and batch, one
  process, timed alternately, median over rounds (goal <= 1.15).
- ``fsdp`` / ``ddp``: 2 processes with a real gloo process group (no Ray: its start-up is not the step), median
  step time and each rank's peak RSS (VmHWM) after the run; FSDP holds half the weights, gradients and AdamW state
  per rank, DDP all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.dirname(__file__))
from _memory import rss_kib  # noqa: E402

B, T, K = 4, 256, 10


def emit(figure: str, value, **extra) -> None:
    ctx = {"cores": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps({"bench": "train_step", "figure": figure, "value": value, **extra, **ctx}), flush=True)


def save_model(folder: str, layers: int, hidden: int, vocab: int) -> None:
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 3,
                                   num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                                   num_key_value_heads=max(1, hidden // 64), max_position_embeddings=T)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)


def batch(vocab: int, n_sources: int, seed: int = 0):
    """A fixed micro-batch: full-length samples, the second half of each is the response."""
    from pipeline.train.data import Batch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, T // 2:-1] = True
    targets = torch.where(mask, ids.roll(-1, 1), -100)
    teachers = []
    for _ in range(n_sources):
        lp, tid = (torch.randn(B, T, vocab, generator=g) * 3).log_softmax(-1).topk(K, dim=-1)
        teachers.append({"topk_logprobs": lp, "topk_ids": tid, "mask": mask.clone(),
                         "target_logprobs": lp[..., 0].clone()})
    return Batch(ids, torch.ones_like(ids), targets, mask, teachers, int(mask.sum()), 0)


def _setup(model_path: str, parallelism: str, world: int, rank: int, sources: int):
    from pipeline.train.config import TrainConfig, TrainSource
    from pipeline.train.loop import build_model

    cfg = TrainConfig(parallelism=parallelism, num_workers=world,
                      sources=[TrainSource(shards=f"s{i}") for i in range(sources)])
    model, student, par = build_model(cfg, model_path, rank, world, torch.device("cpu"))
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    return cfg, model, student, par, opt


def _time_step(cfg, model, student, opt, par, world, b, names) -> float:
    from pipeline.train.step import train_step

    t = time.perf_counter()
    train_step(model, student, opt, [b], cfg, cfg.sources, names, torch.device("cpu"), par, world)
    return time.perf_counter() - t


def bench_fusion_over_sft(model_path: str, vocab: int, steps: int, repeats: int) -> None:
    import torch.distributed as dist

    from pipeline.losses.objective import LossConfig

    with tempfile.TemporaryDirectory() as d:
        dist.init_process_group("gloo", init_method=f"file://{d}/store", rank=0, world_size=1)
        cfg, model, student, par, opt = _setup(model_path, "ddp", 1, 0, sources=2)
        sft_cfg = dataclasses.replace(cfg, sources=[], loss=LossConfig(lambda_uld=0.0, lambda_gld=0.0))
        fusion_b, sft_b = batch(vocab, 2), batch(vocab, 0)
        names = ["src0", "src1"]
        _time_step(cfg, model, student, opt, par, 1, fusion_b, names)  # warm-up
        fusion, sft = [], []
        for _ in range(repeats):
            fusion.append(statistics.median(_time_step(cfg, model, student, opt, par, 1, fusion_b, names)
                                            for _ in range(steps)))
            sft.append(statistics.median(_time_step(sft_cfg, model, student, opt, par, 1, sft_b, [])
                                         for _ in range(steps)))
        dist.destroy_process_group()
    f, s = statistics.median(fusion), statistics.median(sft)
    emit("fusion_over_sft", round(f / s, 3), fusion_step_s=round(f, 4), sft_step_s=round(s, 4), goal="<= 1.15",
         what="SFT+ULD+GLD, 2 sources, default LossConfig vs SFT only; train_step, 1 process, torch threads "
              f"{torch.get_num_threads()}", batch=f"{B}x{T}", k=K)


def _worker(rank: int, world: int, store: str, model_path: str, parallelism: str, vocab: int, steps: int,
            out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    cfg, model, student, par, opt = _setup(model_path, parallelism, world, rank, sources=2)
    loaded = rss_kib("VmHWM")
    b = batch(vocab, 2, seed=rank)
    times = [_time_step(cfg, model, student, opt, par, world, b, ["src0", "src1"]) for _ in range(steps + 1)][1:]
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"step_s": statistics.median(times), "peak_rss_mib": rss_kib("VmHWM") / 1024,
                   "after_load_mib": loaded / 1024}, f)
    dist.destroy_process_group()


def bench_parallelism(model_path: str, vocab: int, steps: int, params: int) -> None:
    import torch.multiprocessing as mp

    for parallelism in ("fsdp", "ddp"):
        with tempfile.TemporaryDirectory() as d:
            mp.spawn(_worker, args=(2, f"{d}/store", model_path, parallelism, vocab, steps, f"{d}/out"), nprocs=2)
            ranks = [json.load(open(f"{d}/out.{r}")) for r in range(2)]
        emit(f"{parallelism}_step", round(statistics.median(r["step_s"] for r in ranks), 3), unit="s",
             peak_rss_mib=[round(r["peak_rss_mib"]) for r in ranks],
             after_load_mib=[round(r["after_load_mib"]) for r in ranks], params=params, workers=2,
             what="train_step, fusion loss, 2 gloo processes with 1 torch thread each, median over steps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        save_model(d, args.layers, args.hidden, args.vocab)
        from safetensors import safe_open

        with safe_open(f"{d}/model.safetensors", "pt") as f:
            params = sum(torch.Size(f.get_slice(k).get_shape()).numel() for k in f.keys())
        bench_fusion_over_sft(d, args.vocab, args.steps, args.repeats)
        bench_parallelism(d, args.vocab, args.steps, params)


if __name__ == "__main__":
    main()
