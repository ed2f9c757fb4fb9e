"""The two-skill fusion benchmark: one fusion dataset and budget, several objectives, several seeds.

Source A (byte-level BPE) is trained on multi-step arithmetic, source B (SentencePiece-style with a chat template)
on Dyck-language completion, the pivot (a third tokenizer) gets a weak start. Every variant runs the project's own
jobs — capture, align, train — exactly as a cluster user would; accuracy is exact match on held-out problems that
no model saw in training (``pipeline.bench.tasks`` buckets problems by a hash of their canonical form).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.align.config import AlignConfig, SourceSpec
from pipeline.align.job import run_align
from pipeline.bench import tasks
from pipeline.bench.evaluate import evaluate
from pipeline.bench.source_train import ensure_bench_model
from pipeline.capture.config import CaptureConfig
from pipeline.capture.job import run_capture
from pipeline.errors import ConfigError
from pipeline.io.atomic import write_text
from pipeline.losses.objective import LossConfig
from pipeline.train.config import TrainConfig, TrainSource
from pipeline.train.job import run_train

# Objective per variant; None = the pivot before fusion (no training). The two sources are specialists, each poor
# on the other skill's half of the fusion data, so every distillation variant picks per sample the source with the
# lowest cross-entropy on the gold tokens (FuseLLM's MinCE) instead of averaging a right and a wrong teacher. All
# distillation terms use temperature 2 (the usual KD softening): these teachers put ~99 % on the gold token, and at
# temperature 1 ULD/GLD mostly push the student to be as confident as the teacher whether it is right or not (one
# seed of the full profile: SFT+ULD 14.5 % arithmetic at T=1, 19 % at T=2, SFT 20.5 %; see README).
DISTILL = {"source_selection": "mince", "temperature": 2.0}
VARIANTS: dict[str, dict | None] = {
    "pivot": None,
    "sft": {"lambda_uld": 0.0, "lambda_gld": 0.0, "lambda_kl": 0.0},
    "sft+kl": {"lambda_uld": 0.0, "lambda_gld": 0.0, "lambda_kl": 0.5} | DISTILL,
    "sft+uld": {"lambda_uld": 0.5, "lambda_gld": 0.0} | DISTILL,
    "sft+uld+gld(rank)": {"lambda_uld": 0.5, "lambda_gld": 0.5, "gld_space": "rank"} | DISTILL,
    "sft+uld+gld(vocab)": {"lambda_uld": 0.5, "lambda_gld": 0.5, "gld_space": "vocab"} | DISTILL,
}
SOURCES = {"arith-source": "arithmetic", "dyck-source": "dyck"}  # role (shard folder name) -> its skill
ROLES = (*SOURCES, "pivot")


@dataclass
class Profile:
    """Sizes of one benchmark run."""

    fusion_per_skill: int = 800  # fusion-split problems per skill (the fusion data)
    test_per_skill: int = 200  # held-out test problems per skill
    epochs: int = 3
    batch_size: int = 16
    lr: float = 2e-3
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    # role -> benchmark model (``pipeline.bench.source_train.BENCH_MODELS``)
    models: dict[str, str] = field(default_factory=lambda: {role: role for role in ROLES})


PROFILES = {
    "full": Profile(),
    # The quickstart's: models trained for a fraction of the steps (same shapes and tokenizers), less fusion data.
    "quick": Profile(fusion_per_skill=400, test_per_skill=100, epochs=4, lr=3e-3, seeds=[0],
                     variants=["pivot", "sft", "sft+uld+gld(rank)"],
                     models={role: f"{role}-quick" for role in ROLES}),
}


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return path


def prepare(out: Path, profile: Profile, progress: bool = True) -> dict:
    """Build (or reuse) the models, write the fusion and test sets, capture and align: shared by all variants."""
    missing = [role for role in ROLES if role not in profile.models]
    if missing:
        raise ConfigError(f"Profile.models has no model for {missing}; it maps each of {list(ROLES)} to a bench model")
    models = {role: ensure_bench_model(profile.models[role], progress=progress) for role in ROLES}
    data = _write_jsonl(out / "data" / "fusion.jsonl", tasks.mixed("fusion", profile.fusion_per_skill))
    test = tasks.mixed("test", profile.test_per_skill)
    shards = out / "shards"
    common = [f"input={data}", f"output={shards}", "shard_size=128", f"progress={progress}"]
    manifests = {"pivot": run_capture(CaptureConfig.load(None, common + [f"model={models['pivot']}", "k=0",
                                                                          "name=pivot"]))}
    for name in SOURCES:
        manifests[name] = run_capture(CaptureConfig.load(None, common + [f"model={models[name]}", "k=10",
                                                                         f"name={name}"]))
    aligned = run_align(AlignConfig(pivot=str(shards / "pivot"), pivot_model=str(models["pivot"]), output=str(out),
                                    progress=progress,
                                    sources=[SourceSpec(shards=str(shards / n), model=str(models[n]))
                                             for n in SOURCES]))
    return {"models": models, "test": test, "shards": shards, "capture": manifests, "aligned": aligned}


def run_variant(out: Path, prep: dict, profile: Profile, variant: str, seed: int, progress: bool = True) -> dict:
    """Train one variant with one seed (resumable, reused when done) and evaluate it on the test set."""
    losses = VARIANTS[variant]
    if losses is None:
        model = prep["models"]["pivot"]
        steps = 0
    else:
        sources = [] if variant == "sft" else [TrainSource(shards=str(out / "aligned" / n)) for n in SOURCES]
        cfg = TrainConfig(pivot_model=str(prep["models"]["pivot"]), pivot_shards=str(prep["shards"] / "pivot"),
                          sources=sources, output=str(out / "train"), run_name=f"{variant}-s{seed}",
                          loss=LossConfig(**losses), epochs=profile.epochs, batch_size=profile.batch_size,
                          lr=profile.lr, warmup_steps=10, seed=seed, checkpoint_every=1000, progress=progress)
        cfg.validate()
        res = run_train(cfg)
        model, steps = Path(res["model"]), res["step"]
    acc = evaluate(model, None, prep["test"])
    return {"variant": variant, "seed": seed, "steps": steps, **acc}


def summarize(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """variant → skill → (mean, std) over seeds."""
    out: dict = {}
    for v in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == v]
        out[v] = {}
        for skill in tasks.SKILLS:
            vals = [r[skill] for r in sel]
            out[v][skill] = (statistics.fmean(vals), statistics.pstdev(vals) if len(vals) > 1 else 0.0)
    return out


def markdown(summary: dict, n_seeds: int) -> str:
    """Markdown table of exact-match accuracy, mean ± std over seeds."""
    lines = [f"| variant | arithmetic | dyck | mean |", "| --- | --- | --- | --- |"]
    for v, skills in summary.items():
        cells = [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in (skills[k] for k in tasks.SKILLS)]
        mean = statistics.fmean(skills[k][0] for k in tasks.SKILLS)
        lines.append(f"| {v} | {' | '.join(cells)} | {100 * mean:.1f} |")
    lines.append(f"\nExact-match accuracy (%) on held-out problems, mean ± std over {n_seeds} seed(s) of the fused "
                 "variants (the teachers and the pivot are not trained here: one evaluation).")
    return "\n".join(lines)


def bar_chart(summary: dict, path: Path) -> Path:
    """PNG: per-skill accuracy bars per variant with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(summary)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(variants)), 3.6))
    width = 0.8 / len(tasks.SKILLS)
    for j, skill in enumerate(tasks.SKILLS):
        means = [100 * summary[v][skill][0] for v in variants]
        stds = [100 * summary[v][skill][1] for v in variants]
        ax.bar([i + (j - 0.5) * width for i in range(len(variants))], means, width, yerr=stds, capsize=3,
               label=skill)
    ax.set_xticks(range(len(variants)), variants, rotation=20, ha="right")
    ax.set(ylabel="exact match (%)", ylim=(0, 100), title="per-skill accuracy after fusion")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_benchmark(out: str | Path, profile: Profile, progress: bool = True) -> dict:
    """Evaluate the sources, run every variant × seed of ``profile``; write results.jsonl, results.md and
    accuracy.png into ``out``."""
    from pipeline.ray_utils import ensure_ray

    t0 = time.time()
    out = Path(out)
    ensure_ray()
    prep = prepare(out, profile, progress)
    # The teachers first: the ceiling a fused pivot could reach on each skill.
    rows = [{"variant": f"{role} (teacher)", "seed": 0, "steps": 0,
             **evaluate(prep["models"][role], None, prep["test"])} for role in SOURCES]
    for variant in profile.variants:
        for seed in (profile.seeds if VARIANTS[variant] is not None else profile.seeds[:1]):
            rows.append(run_variant(out, prep, profile, variant, seed, progress))
            if progress:
                print(json.dumps(rows[-1]))
    summary = summarize(rows)
    _write_jsonl(out / "results.jsonl", rows)
    table = markdown(summary, len(profile.seeds))
    write_text(out / "results.md", table + "\n")
    png = bar_chart(summary, out / "accuracy.png")
    return {"rows": rows, "summary": summary, "table": table, "png": str(png), "seconds": time.time() - t0,
            "prep": prep}
