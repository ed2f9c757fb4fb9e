"""The fusion benchmark: per setting one fusion dataset, several objectives, several seeds.

Source A (byte-level BPE) is trained on multi-step arithmetic and on the several-answers skill (evens), source B
(SentencePiece-style with a chat template) on Dyck-language completion, the pivot (a third tokenizer) gets a weak
start. Every variant runs the project's own jobs — capture, align, train — exactly as a cluster user would. The
distillation settings are chosen on the val split of the selection setting (``pipeline.bench.select``), then every
setting's test split is evaluated once per seed; no model trains on a val or test problem
(``pipeline.bench.tasks`` buckets problems by a hash of their canonical form).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from pipeline.align.config import AlignConfig, SourceSpec
from pipeline.align.job import run_align
from pipeline.bench import report, settings as bench_settings, tasks
from pipeline.bench.evaluate import evaluate
from pipeline.bench.select import coordinate_search
from pipeline.bench.source_train import ensure_bench_models
from pipeline.bench.variants import CHOSEN, DEFAULT, DISTILLED, GRID, loss_settings, run_name
from pipeline.capture.config import CaptureConfig
from pipeline.capture.job import run_capture
from pipeline.errors import ConfigError
from pipeline.io.atomic import write_text
from pipeline.losses.objective import LossConfig
from pipeline.train.config import TrainConfig, TrainSource
from pipeline.train.job import run_train

SOURCES = {"arith-source": ("arithmetic", "evens"), "dyck-source": ("dyck",)}  # role (shard folder) -> its skills
ROLES = (*SOURCES, "pivot")


@dataclass
class Profile:
    """Sizes of one benchmark run."""

    settings: list[str] = field(default_factory=lambda: ["several-answers", "noisy-labels", "little-data-200",
                                                         "little-data-800", "little-data-3200"])
    fusion_per_skill: int = 800  # fusion problems per skill (a little-data setting sets its own)
    val_per_skill: int = 100
    test_per_skill: int = 200
    epochs: int = 3
    # Cap on the optimizer steps of one training run (None: epochs decide). The full profile caps every setting at
    # the 800-problem setting's 3 epochs (300 steps), so little-data-3200 sees each problem at most once.
    max_steps: int | None = 300
    batch_size: int = 16
    lr: float = 2e-3
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # sft+kl (FuseLLM-style KL on the mapped top-k, the one distillation term that knows which token the teacher
    # prefers; ULD and GLD compare sorted values only) is a variant to add with --variants: measured once (README),
    # it was no better than SFT and took 15 of the 66 training runs.
    variants: list[str] = field(default_factory=lambda: ["pivot", "sft", "sft+uld", "sft+uld+gld"])
    select_on: str | None = "several-answers"  # setting whose val split chooses the settings; None: use `distill`
    distill: dict = field(default_factory=lambda: dict(DEFAULT))  # the search's start, or the settings used
    grid: dict = field(default_factory=lambda: dict(GRID))
    k: int = 4  # pass@k samples
    # A teacher's greedy exact match on the val split of each of its skills must reach this before any fusion run;
    # below it the run goes on, but warns on stderr and at the top of results.md.
    min_teacher_em: float = 0.8
    # role -> benchmark model (``pipeline.bench.source_train.BENCH_MODELS``)
    models: dict[str, str] = field(default_factory=lambda: {role: role for role in ROLES})
    # Training runs at a time, each in its own long-lived trainer process (the train job's local mode) at
    # cores // parallel_runs torch threads. On the 2-core machine (tests/benchmarks/bench_parallel_runs.py, 150-step
    # runs) two side by side did 11.1 runs/min against 7.7 one at a time, and a Ray Train actor per run 3.8 / 3.0.
    parallel_runs: int = 2


PROFILES = {
    "full": Profile(),
    # The quickstart's: models trained for a fraction of the steps (same shapes' tokenizers), the headline setting
    # only, one seed, and the distillation settings the full profile's validation search chose.
    "quick": Profile(settings=["several-answers"], fusion_per_skill=400, test_per_skill=100, epochs=4, max_steps=None,
                     lr=3e-3, seeds=[0], variants=["pivot", "sft", "sft+uld+gld"], select_on=None, distill=dict(CHOSEN),
                     models={role: f"{role}-quick" for role in ROLES}),
}


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return path


def prepare(out: Path, profile: Profile, setting: str, models: dict, progress: bool = True) -> dict:
    """Write the setting's fusion, val and test sets, capture and align: shared by all its variants."""
    s = bench_settings.setting(setting)
    records = bench_settings.fusion_records(s, profile.fusion_per_skill)
    data = _write_jsonl(out / "data" / "fusion.jsonl", records)
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
    skill_of = {r["id"]: r["skill"] for r in records}
    stats = {n: report.teacher_stats(shards / "pivot", out / "aligned" / n, skill_of) for n in SOURCES}
    # Evaluations are stored for the whole benchmark, not per setting: the teachers and the untrained pivot meet the
    # same test sets in several settings (noisy-labels and little-data-* share arithmetic + Dyck).
    return {"out": out, "evals": out.parent / "evals", "models": models, "shards": shards, "capture": manifests,
            "aligned": aligned,
            "val": bench_settings.eval_records(s, "val", profile.val_per_skill),
            "test": bench_settings.eval_records(s, "test", profile.test_per_skill), "teacher_stats": stats}


_EVALUATING = threading.Lock()
EVAL_VERSION = 1  # bump when evaluate() changes what it measures: stored metrics are then recomputed


def evaluate_once(model: Path, records: list[dict], store: Path, **options) -> dict:
    """``evaluate(model, None, records, **options)``, stored under ``store`` by a hash of the model's weights, the
    records and the options: a rerun of the benchmark (more variants, a killed run) reads what it measured already."""
    h = hashlib.sha256(json.dumps([EVAL_VERSION, options, [[r["id"], r["prompt"], r["response"]] for r in records]],
                                  sort_keys=True).encode())
    weights = sorted(Path(model).glob("*.safetensors"))
    if not weights:
        raise ConfigError(f"{model}: no *.safetensors weights to evaluate")
    for f in weights:
        h.update(f.read_bytes())
    path = Path(store) / f"{h.hexdigest()[:20]}.json"
    if path.exists():
        return json.loads(path.read_text())
    # One evaluation at a time in a process: sampling for pass@k seeds torch's global generator, which evaluations
    # side by side would share (trained runs are evaluated in their own trainer process).
    with _EVALUATING:
        metrics = evaluate(model, None, records, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(metrics) + "\n")
    return metrics


def torch_threads(profile: Profile) -> int:
    """Torch threads of one training run: the cores shared by the runs that train side by side."""
    return max(1, (os.cpu_count() or 1) // max(1, profile.parallel_runs))


def train_variant(prep: dict, profile: Profile, variant: str, distill: dict, seed: int, progress: bool = True,
                  name: str | None = None, num_workers: int = 0) -> tuple[Path, int]:
    """Train one variant with one seed (resumable, reused when done; ``name``: the run folder, default
    ``variants.run_name``): (model folder, steps). ``num_workers`` 0 trains in this process (the train job's local
    mode, see :func:`train_and_evaluate`); 1 in one Ray Train worker actor."""
    losses = loss_settings(variant, distill)
    if losses is None:
        return prep["models"]["pivot"], 0
    out = prep["out"]
    sources = [] if variant == "sft" else [TrainSource(shards=str(out / "aligned" / n)) for n in SOURCES]
    cfg = TrainConfig(pivot_model=str(prep["models"]["pivot"]), pivot_shards=str(prep["shards"] / "pivot"),
                      sources=sources, output=str(out / "train"), run_name=name or run_name(variant, distill, seed),
                      loss=LossConfig(**losses), epochs=profile.epochs, max_steps=profile.max_steps,
                      batch_size=profile.batch_size,
                      lr=profile.lr, warmup_steps=10, seed=seed, checkpoint_every=1000, progress=progress,
                      torch_threads=torch_threads(profile), num_workers=num_workers)
    cfg.validate()
    res = run_train(cfg)
    return Path(res["model"]), res["step"]


def train_and_evaluate(prep: dict, profile: Profile, variant: str, distill: dict, seed: int, split: str,
                       progress: bool, options: dict) -> tuple[int, dict]:
    """Train one run and evaluate it on ``prep[split]`` with ``evaluate`` ``options``: (steps, metrics). Runs in one
    of the benchmark's trainer processes (:func:`trainer_pool`): the train job's local mode trains in the calling
    process and seeds its global RNGs, so two runs side by side need two processes."""
    model, steps = train_variant(prep, profile, variant, distill, seed, progress)
    return steps, evaluate_once(model, prep[split], prep["evals"], **options)


def trainer_pool(profile: Profile) -> ProcessPoolExecutor:
    """``profile.parallel_runs`` long-lived trainer processes. Each imports torch and the project once and then trains
    run after run in the train job's local mode (``num_workers=0``: no Ray Train controller or worker actors to start
    per run), which is most of what a run of these tiny models costs (README "Fusion benchmark")."""
    return ProcessPoolExecutor(profile.parallel_runs, mp_context=get_context("spawn"))


def check_teachers(models: dict, profile: Profile, progress: bool = True) -> tuple[dict, list[str]]:
    """Each source's greedy exact match on the val split of each of its skills that the profile's settings fuse, and
    a warning per skill below ``profile.min_teacher_em``: a fusion run can only show what distillation carries once
    its teachers solve the task."""
    used = {skill for name in profile.settings for skill in bench_settings.setting(name).skills}
    ems, weak = {}, []
    for role, skills in SOURCES.items():
        recs = [r for skill in skills if skill in used for r in tasks.generate(skill, "val", profile.val_per_skill)]
        if not recs:
            continue
        ems[role] = {k.split("/")[0]: v for k, v in evaluate(models[role], None, recs, k=0, nll=False).items()}
        for skill, em in ems[role].items():
            line = f"{role} on {skill}: val exact match {100 * em:.1f} %"
            if em < profile.min_teacher_em:
                weak.append(f"WEAK TEACHER: {line}, below the {100 * profile.min_teacher_em:.0f} % a teacher needs")
                print(weak[-1], file=sys.stderr, flush=True)
            elif progress:
                print(f"teacher {line}", flush=True)
    return ems, weak


def choose_settings(prep: dict, profile: Profile, pool: ThreadPoolExecutor, trainers: ProcessPoolExecutor,
                    progress: bool = True) -> dict:
    """Coordinate search on the val split (seed = the profile's first), one setting's values trained side by side
    (``pool`` waits on ``trainers``); writes ``selection.json`` next to the data."""
    seed = profile.seeds[0]

    def val_metrics(distill: dict) -> dict:
        _, metrics = trainers.submit(train_and_evaluate, prep, profile, "sft+uld+gld", distill, seed, "val",
                                     progress, {"k": 0}).result()
        if progress:
            print(json.dumps({"selection": distill, **metrics}), flush=True)
        return metrics

    best, trials = coordinate_search(val_metrics, grid=profile.grid, start=profile.distill, map_fn=pool.map)
    write_text(prep["out"] / "selection.json", json.dumps({"chosen": best, "trials": trials}, indent=1) + "\n")
    return best


def run_benchmark(out: str | Path, profile: Profile, progress: bool = True, on_row=None) -> dict:
    """Choose the distillation settings on val (when ``profile.select_on``), then every setting × variant × seed on
    test; writes results.jsonl, results.md and accuracy.png into ``out``. ``on_row(row)`` sees each row as it comes."""
    from pipeline.ray_utils import ensure_ray

    t0 = time.time()
    out = Path(out)
    missing = [role for role in ROLES if role not in profile.models]
    if missing:
        raise ConfigError(f"Profile.models has no model for {missing}; it maps each of {list(ROLES)} to a bench model")
    for name in profile.settings:
        bench_settings.setting(name)  # refuse an unknown setting before any work
    if profile.parallel_runs < 1:
        raise ConfigError(f"Profile.parallel_runs must be >= 1, got {profile.parallel_runs}")
    ensure_ray()
    built = ensure_bench_models([profile.models[role] for role in ROLES], progress=progress)
    models = {role: built[profile.models[role]] for role in ROLES}
    teacher_val, weak = check_teachers(models, profile, progress)
    distill = dict(profile.distill)
    preps = {}
    # Training runs (each with its evaluation) go side by side; rows are still reported in the plan's order.
    pool = ThreadPoolExecutor(profile.parallel_runs, thread_name_prefix="bench-run")
    trainers = trainer_pool(profile)
    runs = _Runs(pool, trainers, profile, progress)
    try:
        if profile.select_on:
            name = profile.select_on
            preps[name] = prepare(out / name, profile, name, models, progress)
            # Test runs the search cannot change (sft) queue first: they fill the pool's free place while the search
            # trains one value at a time (its later settings have a single value left to try).
            for variant in profile.variants:
                if variant not in DISTILLED and loss_settings(variant, distill) is not None:
                    for seed in profile.seeds:
                        runs.submit(preps[name], name, variant, seed, distill)
            distill = choose_settings(preps[name], profile, pool, trainers, progress)
        rows = _run_settings(out, profile, models, distill, preps, runs, progress, on_row)
    finally:
        pool.shutdown(cancel_futures=True)
        trainers.shutdown(cancel_futures=True)
    summary = report.summarize(rows)

    stats = {name: p["teacher_stats"] for name, p in preps.items()}
    _write_jsonl(out / "results.jsonl", rows)
    table = report.markdown(summary, len(profile.seeds), stats, rows)
    teachers = "; ".join(f"{role} {skill} {100 * em:.1f} %" for role, d in teacher_val.items()
                         for skill, em in d.items())
    table = f"Distillation settings: {json.dumps(distill)}\n\nTeachers' val exact match: {teachers}\n\n{table}"
    if weak:
        table = "\n".join(f"**{w}**" for w in weak) + "\n\n" + table
    write_text(out / "results.md", table + "\n")
    png = report.bar_chart(summary, out / "accuracy.png")
    return {"rows": rows, "summary": summary, "table": table, "png": str(png), "seconds": time.time() - t0,
            "preps": preps, "distill": distill, "teacher_val": teacher_val, "weak_teachers": weak}


class _Runs:
    """Training runs of the test phase, each with its test evaluation, at most one per (setting, variant, seed): a run
    submitted early is the one its row waits for later. A thread of ``pool`` waits on each run's trainer process."""

    def __init__(self, pool: ThreadPoolExecutor, trainers: ProcessPoolExecutor, profile: Profile, progress: bool):
        self.pool, self.trainers, self.profile, self.progress = pool, trainers, profile, progress
        self.futures: dict[tuple, Future] = {}

    def submit(self, prep: dict, name: str, variant: str, seed: int, distill: dict) -> Future:
        key = (name, variant, seed)
        if key not in self.futures:
            self.futures[key] = self.pool.submit(self._one, prep, name, variant, seed, distill)
        return self.futures[key]

    def _one(self, prep: dict, name: str, variant: str, seed: int, distill: dict) -> dict:
        options = {"k": self.profile.k, "seed": seed}
        if loss_settings(variant, distill) is None:  # the untrained pivot: nothing to train, evaluated here
            steps, metrics = train_and_evaluate(prep, self.profile, variant, distill, seed, "test", self.progress,
                                                options)
        else:
            steps, metrics = self.trainers.submit(train_and_evaluate, prep, self.profile, variant, distill, seed,
                                                  "test", self.progress, options).result()
        return {"setting": name, "variant": variant, "seed": seed, "steps": steps, **metrics}


def _run_settings(out: Path, profile: Profile, models: dict, distill: dict, preps: dict, runs: _Runs,
                  progress: bool, on_row) -> list[dict]:
    """Every setting's teachers, then its variants x seeds on test (trained and evaluated by ``runs``); the rows in
    plan order, each handed to ``on_row`` (or printed) as soon as it and the rows before it are done."""
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        if on_row:
            on_row(row)
        elif progress:
            print(json.dumps(row), flush=True)

    for name in profile.settings:
        prep = preps.get(name) or prepare(out / name, profile, name, models, progress)
        preps[name] = prep
        pending = [runs.submit(prep, name, variant, seed, distill) for variant in profile.variants
                   for seed in (profile.seeds if loss_settings(variant, distill) is not None else profile.seeds[:1])]
        # The teachers: the ceiling a fused pivot could reach on each skill (one evaluation, no seeds).
        for role in SOURCES:
            add({"setting": name, "variant": f"{role} (teacher)", "seed": 0, "steps": 0,
                 **evaluate_once(models[role], prep["test"], prep["evals"], k=profile.k)})
        for run in pending:
            add(run.result())
    return rows
