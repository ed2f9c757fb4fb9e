"""``logitfuse bench fusion``: the two-skill fusion benchmark (Markdown table + PNG bar chart)."""

from __future__ import annotations

import dataclasses

EPILOG = """fusion: source A (byte-level BPE) trained on multi-step arithmetic, source B (SentencePiece-style)
on Dyck-language completion, a weak pivot with a third tokenizer. Every variant fine-tunes the
same pivot on the same fusion data through capture -> align -> train; accuracy is exact match on
held-out problems no model trained on. Variants: pivot (no training), sft, sft+kl (FuseLLM-style),
sft+uld, sft+uld+gld(rank), sft+uld+gld(vocab); distillation picks the teacher per sample by
MinCE, temperature 2. Writes OUT/results.jsonl, OUT/results.md, OUT/accuracy.png.

full profile: about 10 minutes on 2 cores once the models are built (building them: 7-10 minutes,
once, cached in $LOGITFUSE_CACHE/bench/). Finished runs are reused: a rerun only evaluates."""


def add_arguments(p, name: str) -> None:
    """Which benchmark and its sizes."""
    from pipeline.bench.fusion import PROFILES, VARIANTS

    p.add_argument("which", choices=["fusion"], help="fusion: arithmetic + Dyck sources fused into a weak pivot")
    p.add_argument("--out", default="runs/bench-fusion", help="report folder (default runs/bench-fusion)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full",
                   help="full: 6 variants x 3 seeds; quick: the quickstart's shortened version")
    p.add_argument("--seeds", type=int, nargs="+", help="override the profile's seeds")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="override the profile's variants")


def run(args) -> int:
    """Run it and print the table."""
    from pipeline.bench.fusion import PROFILES, run_benchmark

    profile = dataclasses.replace(PROFILES[args.profile])
    if args.seeds:
        profile.seeds = args.seeds
    if args.variants:
        profile.variants = args.variants
    res = run_benchmark(args.out, profile)
    print(res["table"])
    print(f"\nplot: {res['png']}  ({res['seconds'] / 60:.1f} min)")
    return 0
