"""``logitfuse bench fusion``: the fusion benchmark (Markdown tables + PNG bar chart)."""

from __future__ import annotations

import dataclasses

EPILOG = """fusion: source A (byte-level BPE) trained on multi-step arithmetic and on listing the even numbers
of a list in any order, source B (SentencePiece-style) on Dyck-language completion, a weak pivot with
a third tokenizer. Settings where the teachers know more than the labels: several-answers (evens:
one sampled order per prompt in the fusion data), noisy-labels (20 % wrong fusion responses),
little-data-N (N fusion problems per skill). Variants: pivot (no training), sft, sft+kl, sft+uld,
sft+uld+gld (the full profile runs all but sft+kl); distillation picks the teacher per sample by
MinCE. Training runs go --parallel-runs at a time. λ, temperature, GLD space and
normalisation are chosen on the val split of --select-on (one seed), then each setting's test split
is evaluated once per seed: greedy exact match, pass@4, NLL of the gold answer(s).
Writes OUT/results.jsonl, OUT/results.md, OUT/accuracy.png, OUT/<setting>/selection.json.

Models are built once and cached in $LOGITFUSE_CACHE/bench/ (default ~/.cache/logitfuse/bench/).
Finished runs are reused: a rerun only evaluates. Time: see README "Fusion benchmark" (minutes
per setting and variant, measured on the 2-core development machine)."""


def add_arguments(p, name: str) -> None:
    """Which benchmark and its sizes."""
    from pipeline.bench.fusion import PROFILES
    from pipeline.bench.variants import VARIANTS

    p.add_argument("which", choices=["fusion"], help="fusion: arithmetic/evens + Dyck sources fused into a weak pivot")
    p.add_argument("--out", default="runs/bench-fusion", help="report folder (default runs/bench-fusion)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full",
                   help="full: 5 settings x 4 variants x 3 seeds; quick: the quickstart's shortened version")
    p.add_argument("--seeds", type=int, nargs="+", help="override the profile's seeds")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="override the profile's variants")
    p.add_argument("--settings", nargs="+", help="override the profile's settings (several-answers, noisy-labels, "
                                                 "little-data-<n>, clean)")
    p.add_argument("--select-on", help="setting whose val split chooses the distillation settings; 'none' keeps "
                                       "the profile's")
    p.add_argument("--parallel-runs", type=int, help="training runs at a time, each in its own trainer process "
                                                     "(the train job's local mode) at cores / N torch threads "
                                                     "(default 2: best on the 2-core machine, README)")


def run(args) -> int:
    """Run it and print the tables."""
    from pipeline.bench.fusion import PROFILES, run_benchmark

    profile = dataclasses.replace(PROFILES[args.profile])
    for field in ("seeds", "variants", "settings", "parallel_runs"):
        if getattr(args, field):
            setattr(profile, field, getattr(args, field))
    if args.select_on:
        profile.select_on = None if args.select_on == "none" else args.select_on
    res = run_benchmark(args.out, profile)
    print(res["table"])
    print(f"\nplot: {res['png']}  ({res['seconds'] / 60:.1f} min)")
    return 0
