"""GPU training check: bf16 FSDP2 + activation checkpointing on a random-init Qwen2 1.5B shape, 4096-token samples.

Runs the training step the loop runs — ``Student`` (base model + ``chunked_head``), ``parallelize`` (FSDP2 per
decoder layer + root, bf16 compute, fp32 reduction), ``fusion_loss`` (SFT + ULD + GLD against a synthetic teacher
top-k), AdamW — in one process under a 1-rank process group (nccl on CUDA, gloo on CPU), and prints one JSON line
per step and a summary line: tokens/s, MFU, peak GPU memory, and the memory plan's per-rank total for the same
settings (``pipeline.train.plan``), so a GPU run also checks the plan.

MFU = model FLOPs per second / peak. Model FLOPs per token (torchtitan's / PaLM's convention, recomputation not
counted): 6·N + 12·L·H·Q·T, with N the parameters of every matmul (decoder linears + LM head; the embedding lookup
is not a matmul), L layers, H attention heads, Q head dim, T tokens per sample. Peak: H200 dense bf16, 989 TFLOP/s
(``--peak-tflops`` for another GPU).

    python tests/gpu/train_check.py              # on a GPU machine (~30 steps)
    python tests/gpu/train_check.py --dry-run    # tiny shape on CPU, seconds (what the default suite runs)
    pytest -m gpu tests/gpu/train_check.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pytest

H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H200 SXM datasheet: 1,979 TFLOPS bf16 with sparsity, half of it dense
QWEN2_1_5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)
DRY_RUN = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="tiny shape, 128 tokens, 3 steps: CPU, seconds")
    p.add_argument("--steps", type=int, help="optimizer steps (default 30; dry run 3)")
    p.add_argument("--warmup", type=int, help="steps left out of the timing (default 3; dry run 1)")
    p.add_argument("--tokens", type=int, help="tokens per sample (default 4096; dry run 128)")
    p.add_argument("--batch", type=int, default=1, help="samples per step")
    p.add_argument("--k", type=int, default=10, help="student and teacher top-k")
    p.add_argument("--head-chunk", type=int, default=1024, help="positions per LM-head chunk")
    p.add_argument("--no-checkpointing", action="store_true", help="keep every layer's activations")
    p.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS, help="the GPU's dense bf16 peak")
    args = p.parse_args(argv)
    args.steps = args.steps or (3 if args.dry_run else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.dry_run else 3)
    args.tokens = args.tokens or (128 if args.dry_run else 4096)
    if args.warmup >= args.steps:
        p.error(f"--warmup ({args.warmup}) must be less than --steps ({args.steps})")
    return args


def model_flops_per_token(lm, tokens: int) -> int:
    """6·N + 12·L·H·Q·T (see the module docstring)."""
    import torch

    c = lm.config
    matmul = sum(m.weight.numel() for m in lm.modules() if isinstance(m, torch.nn.Linear))
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 6 * matmul + 12 * c.num_hidden_layers * c.num_attention_heads * head_dim * tokens


def plan_total(shape: dict, args, folder: Path) -> int:
    """The memory plan's per-rank total for these settings on 1 GPU (must run before any process group exists)."""
    import transformers

    from pipeline.train.config import TrainConfig
    from pipeline.train.plan import plan_train

    transformers.Qwen2Config(**shape).save_pretrained(folder)
    cfg = TrainConfig.load(None, [f"pivot_model={folder}", "pivot_shards=-", "output=-", "parallelism=fsdp",
                                  "precision=bf16", f"activation_checkpointing={not args.no_checkpointing}",
                                  f"token_budget={args.batch * args.tokens}", f"head_chunk={args.head_chunk}",
                                  f"loss.k={args.k}"])
    return plan_train(cfg, gpus=1, gpu_memory=1 << 40).total


def synthetic_teacher(batch: int, tokens: int, k: int, vocab: int, device, generator):
    """A source's aligned top-k: sorted, normalised-over-k log-probs at random pivot ids, aligned everywhere."""
    import torch

    from pipeline.losses.objective import TeacherInputs

    logits = torch.randn(batch, tokens, k, generator=generator) * 3
    logprobs = torch.log_softmax(logits, -1).sort(-1, descending=True).values
    ids = torch.randint(0, vocab, (batch, tokens, k), generator=generator)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    return TeacherInputs(logprobs.to(device), ids.to(device), mask.to(device), weight=1.0, name="synthetic")


def run(args) -> list[dict]:
    """Train ``args.steps`` steps; print and return one dict per step and a summary dict last."""
    import torch
    import torch.distributed as dist
    import transformers

    from pipeline.losses.chunked_head import HeadOutputs
    from pipeline.losses.objective import LossConfig, fusion_loss
    from pipeline.train.loop import Student
    from pipeline.train.parallel import parallelize

    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    shape = DRY_RUN if args.dry_run else QWEN2_1_5B
    planned, plan_error = None, None
    with tempfile.TemporaryDirectory() as d:
        try:  # GPU time is scarce: a plan failure is reported, the training check still runs
            planned = plan_total(shape, args, Path(d))
        except Exception as e:  # noqa: BLE001
            plan_error = f"{type(e).__name__}: {e}"
    store = tempfile.NamedTemporaryFile(prefix="train_check_store_", delete=False).name
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{store}", rank=0, world_size=1,
                            **({"device_id": device} if cuda else {}))
    try:
        torch.manual_seed(0)
        config = transformers.Qwen2Config(**shape, attn_implementation="sdpa")
        with device:
            lm = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        student = parallelize(Student(lm), lm, parallelism="fsdp", precision="bf16",
                              activation_checkpointing=not args.no_checkpointing)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
        loss_cfg = LossConfig(k=args.k, lambda_sft=1.0, lambda_uld=0.5, lambda_gld=0.5, temperature=2.0)
        flops_per_token = model_flops_per_token(lm, args.tokens)
        g = torch.Generator().manual_seed(0)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        rows, timed_tokens, timed_s = [], 0, 0.0
        for step in range(1, args.steps + 1):
            ids = torch.randint(0, config.vocab_size, (args.batch, args.tokens + 1), generator=g).to(device)
            inputs, targets = ids[:, :-1], ids[:, 1:]
            mask = torch.ones_like(inputs, dtype=torch.bool)
            teacher = synthetic_teacher(args.batch, args.tokens, args.k, config.vocab_size, device, g)
            _sync(cuda)
            t0 = time.perf_counter()
            outs = student(inputs, None, targets, mask, None, args.k, args.head_chunk)
            loss, terms = fusion_loss(HeadOutputs(*outs), [teacher], mask, loss_cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(cuda)
            dt = time.perf_counter() - t0
            tokens = args.batch * args.tokens
            if step > args.warmup:
                timed_tokens, timed_s = timed_tokens + tokens, timed_s + dt
            rows.append(_emit({"step": step, "seconds": round(dt, 4), "tokens_per_s": round(tokens / dt, 1),
                               **{k: round(v, 5) for k, v in terms.items() if "/" not in k}}))
        tps = timed_tokens / timed_s
        peak = torch.cuda.max_memory_allocated() if cuda else None
        rows.append(_emit({
            "summary": "train_check", "device": torch.cuda.get_device_name() if cuda else "cpu",
            "shape": "dry-run" if args.dry_run else "qwen2-1.5b", "parameters": sum(p.numel() for p in lm.parameters()),
            "tokens_per_sample": args.tokens, "batch": args.batch, "steps": args.steps, "timed_steps": args.steps -
            args.warmup, "activation_checkpointing": not args.no_checkpointing, "tokens_per_s": round(tps, 1),
            "model_tflops_per_s": round(tps * flops_per_token / 1e12, 2),
            "mfu": round(tps * flops_per_token / (args.peak_tflops * 1e12), 4) if cuda else None,
            "peak_tflops": args.peak_tflops, "peak_memory_gib": round(peak / 2**30, 2) if cuda else None,
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
            "plan_total_gib": round(planned / 2**30, 2) if planned else None, "plan_total_bytes": planned,
            "plan_error": plan_error,
            "peak_memory_bytes": peak,
            "final_loss": rows[-1]["loss"]}))
        return rows
    finally:
        dist.destroy_process_group()
        Path(store).unlink(missing_ok=True)


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _emit(row: dict) -> dict:
    print(json.dumps({"check": "train"} | row), flush=True)
    return row


@pytest.mark.gpu
def test_train_check_on_gpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    summary = run(parse_args([]))[-1]
    assert summary["tokens_per_s"] > 0 and summary["mfu"] > 0
    assert summary["peak_memory_gib"] <= summary["plan_total_gib"] * 1.25  # the plan is not far below reality


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("train_check: no CUDA device; the 1.5B shape needs a GPU (use --dry-run on CPU)", file=sys.stderr)
        return 2
    run(args)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing
    sys.exit(main())
