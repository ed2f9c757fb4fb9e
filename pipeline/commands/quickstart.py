"""``logitfuse quickstart``: the whole pipeline on this machine — build (or reuse) two sources with different
tokenizers and a pivot, generate data, capture → align → train (SFT + ULD + GLD) → evaluate — through the same jobs
a cluster user runs. Re-running reuses every finished step."""

from __future__ import annotations

import json
import time
from pathlib import Path

EPILOG = """what it does:
  1. builds (first run) or reuses three small Llama-shaped models with different tokenizers:
     an arithmetic source (byte-level BPE), a Dyck-language source (SentencePiece-style, chat
     template) and a weak pivot (another byte-level BPE), side by side; cached in
     $LOGITFUSE_CACHE/bench/ (default ~/.cache/logitfuse/bench/); each teacher's val exact
     match is printed before any fusion run, WEAK TEACHER below 80 %
  2. the benchmark's headline setting, several-answers: 400 fusion problems per skill (evens,
     one sampled order per prompt, and Dyck) and 100 held-out test problems per skill
  3. capture (top-10 for the sources, tokens only for the pivot) -> align -> train (SFT, and
     SFT+ULD+GLD with the settings the full benchmark chose on validation) -> evaluation
     (exact match, pass@4, NLL of the gold answers), with the jobs a cluster user runs
  4. prints each variant's figures as they come out, then shards, alignment coverage, the
     teachers' entropy and top-1 = gold rate, loss terms and the table; writes OUT/results.md,
     OUT/accuracy.png, OUT/several-answers/inspect-*.png, OUT/several-answers/{shards,aligned}/,
     OUT/several-answers/train/<run>/ (metrics.jsonl, loss_curves.png, model/)

About 2-6 minutes on a fresh, quiet 2-core machine (124 s measured on 2026-12-01 on the faster
of two such machines, 264 s on the slower; the three models build side by side, one process
per core, about 70 s of the 124); a rerun reuses every finished step and the built models.
On shared, busy cores set OMP_NUM_THREADS=1.
The full benchmark (more data, seeds and variants): logitfuse bench fusion"""


def add_arguments(p, name: str) -> None:
    """Options."""
    p.add_argument("--out", default="runs/quickstart", help="report folder (default runs/quickstart)")


def _figures(row: dict) -> str:
    """One line per evaluated model: every metric, as it comes out."""
    cells = "  ".join(f"{k} {v:.2f}" if k.endswith("/nll") else f"{k} {100 * v:.0f}%"
                      for k, v in row.items() if "/" in k)
    return f"  {row['variant']:<26} seed {row['seed']}  {cells}"


def run(args) -> int:
    """Run the quick fusion profile and print what a person wants to see."""
    from pipeline.bench.fusion import PROFILES, run_benchmark
    from pipeline.inspect import plot, summarize

    t0 = time.time()
    out = Path(args.out)
    print("figures per model as they come out (em: greedy exact match, pass@4, nll: nats per problem)", flush=True)
    res = run_benchmark(out, PROFILES["quick"], on_row=lambda row: print(_figures(row), flush=True))
    for setting, prep in res["preps"].items():
        base = out / setting
        print(f"\n{setting}: shards")
        print(f"  {'model':<14} {'samples':>8} {'tokens':>8} {'bytes/token':>12} {'top-1 = target':>15}")
        for name, m in prep["capture"].items():
            agree = "-"
            if m.codec.get("codec") != "none":
                s = summarize(base / "shards" / name)
                plot(s, base / f"inspect-{name}.png")
                agree = f"{s['top1_agreement']:.3f}"
            print(f"  {name:<14} {m.num_samples:>8} {m.total_tokens:>8} {m.stats['bytes_per_token']:>12.2f} "
                  f"{agree:>15}")
        print("\nalignment onto the pivot, and what the teachers carry beyond the labels")
        for name, m in prep["aligned"].items():
            print(f"  {name:<14} coverage {m.stats['coverage']:.1%}  vocab map exact {m.stats['map_exact']:.1%}")
            for skill, d in prep["teacher_stats"][name].items():
                print(f"  {'':<14} {skill:<10} entropy {d['entropy']:.2f} nats  top-1 = gold {d['top1_gold']:.1%}")
        print("\nlast logged loss terms")
        for run_dir in sorted((base / "train").iterdir()):
            lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() \
                else []
            if lines:
                last = json.loads(lines[-1])
                terms = "  ".join(f"{k} {last[k]:.3f}" for k in ("loss", "sft", "uld", "gld", "kl") if k in last)
                print(f"  {run_dir.name:<28} step {last['step']:>4}  {terms}")
    print("\nheld-out test problems\n")
    print(res["table"])
    print(f"\nreport folder: {out}/ (results.md, accuracy.png, <setting>/train/*/loss_curves.png, */model, shards/)")
    print(f"done in {time.time() - t0:.0f} s")
    return 0
