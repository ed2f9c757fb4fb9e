"""Build the fusion benchmark's models: two skilled sources and a weak pivot, each with its own tokenizer.

``ensure_bench_model(name)`` returns a cached folder (``cache_root()/bench/<name>-<key>``) holding an HF causal LM
and its tokenizer, trained here by plain torch SFT on generated ``train``-split problems (response-only loss,
AdamW, warmup + cosine, token-budget batches, seeded). The key hashes the model and training specs, the task
generators' version, the example encoding's version (``evaluate.ENCODING``) and the transformers version, so a
changed recipe builds a new folder and never reuses a stale one. Folders are written under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.bench import tasks
from pipeline.bench.evaluate import ENCODING, encode_example
from pipeline.errors import ConfigError
from pipeline.modeling.batching import token_budget_batches
from pipeline.tiny.models import TinySpec, build, cache_root

META = "logitfuse_bench.json"
_NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


@dataclass(frozen=True)
class TrainSpec:
    """What one model is trained on and for how long."""

    skills: tuple[str, ...]  # task skills drawn from the train split
    n_per_skill: int  # distinct problems per skill
    n_general: int = 0  # generic chat records mixed in (the pivot's warm-up)
    steps: int = 600
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: int = 30
    weight_decay: float = 0.01
    batch_tokens: int = 2048  # padded tokens per batch (rows x longest row)
    seed: int = 0

    def validate(self) -> None:
        """Raise ConfigError naming the bad field."""
        for skill in self.skills:
            if skill not in tasks.SKILLS:
                raise ConfigError(f"TrainSpec.skills: unknown skill {skill!r}; known: {list(tasks.SKILLS)}")
        if self.steps < 1 or self.warmup < 0 or self.warmup >= self.steps:
            raise ConfigError(f"TrainSpec needs steps >= 1 and 0 <= warmup < steps, got {self.steps}, {self.warmup}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"TrainSpec needs lr > 0 and min_lr_ratio in [0, 1], got {self.lr}, {self.min_lr_ratio}")
        if self.batch_tokens < 64:
            raise ConfigError(f"TrainSpec.batch_tokens must be >= 64 (one example), got {self.batch_tokens}")
        if self.n_per_skill * len(self.skills) + self.n_general < 1:
            raise ConfigError("TrainSpec trains on no data: set skills and n_per_skill, or n_general")


@dataclass(frozen=True)
class BenchModel:
    """One benchmark model: its shape and tokenizer, and its training recipe."""

    spec: TinySpec
    train: TrainSpec
    role: str = "source"  # "source" (skilled at train.skills) | "pivot" (weak start, the model fusion trains)


# Three tokenizers: byte-level BPE (seed 0), SentencePiece-style with a chat template (seed 1), and a second
# byte-level BPE trained on other text with another vocabulary size for the pivot (seed 2). All Llama-shaped: at
# this size GPT-2's learned positions need about twice the steps to learn the copying the tasks need.
_SHAPE = dict(hidden=128, layers=4, heads=4, max_positions=128)
BENCH_MODELS: dict[str, BenchModel] = {
    # Source A also knows the several-answers skill (evens): trained on random orders, it spreads its probability
    # over every even number still to list, which one sampled order in the fusion data cannot show.
    "arith-source": BenchModel(
        TinySpec("llama", "bpe", vocab_size=1024, tokenizer_seed=0, seed=10, **_SHAPE),
        TrainSpec(skills=("arithmetic", "evens"), n_per_skill=20000, steps=1600, batch_tokens=2048, seed=10)),
    "dyck-source": BenchModel(
        TinySpec("llama", "sp", vocab_size=1024, tokenizer_seed=1, seed=11, **_SHAPE),
        TrainSpec(skills=("dyck",), n_per_skill=20000, steps=600, batch_tokens=2048, seed=11)),
    # Weak start: generic chat plus a few problems of each skill for a short while, so it writes the answer format
    # but gets few answers right (fewer examples left it emitting "= = = ..." instead of the format).
    "pivot": BenchModel(
        TinySpec("llama", "bpe", vocab_size=1280, tokenizer_seed=2, seed=12, **_SHAPE),
        TrainSpec(skills=tasks.SKILLS, n_per_skill=1000, n_general=2000, steps=250, batch_tokens=2048, seed=12),
        role="pivot"),
}

# The quickstart's models: the same tokenizers and data, a smaller shape (hidden 64, 3 layers) and a fraction of the
# steps. The arithmetic/evens source needs the most. With evens numbers in 1..29 (tasks.VERSION 3) its val exact match
# on evens at this shape was 72 % after 800 steps, 82 % after 1000 and 76 % after 1200 (one build each: the cosine
# schedule's length changes the run, so the curve is noisy); the quickstart fuses only evens and Dyck, so it takes
# the 1000-step build (arithmetic 59 %). With numbers in 1..99 it had taken 1600 steps to reach 66 %.
_QUICK_SHAPE = dict(hidden=64, layers=3, heads=4, max_positions=128)
_QUICK_STEPS = {"arith-source": 1000, "dyck-source": 400, "pivot": 120}

BENCH_MODELS |= {
    f"{name}-quick": BenchModel(replace(bm.spec, **_QUICK_SHAPE),
                                replace(bm.train, steps=_QUICK_STEPS[name], warmup=20), bm.role)
    for name, bm in BENCH_MODELS.items()
}


def lr_lambda(spec: TrainSpec):
    """Multiplier of the base lr at a step: linear warmup, then cosine down to ``min_lr_ratio``."""
    def f(step: int) -> float:
        if step < spec.warmup:
            return (step + 1) / spec.warmup
        t = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def token_batches(lengths: list[int], batch_tokens: int, rng: random.Random, pool: int = 64) -> list[list[int]]:
    """Index batches whose padded size (rows x longest row) stays within ``batch_tokens``, in random order.

    Examples are shuffled, then packed by capture's ``token_budget_batches`` (sorted by length, no bucket limit)
    inside pools of ``pool`` batches' worth, so rows of a batch have similar lengths (little padding) while batches
    still mix the whole data set.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mean = max(1, sum(lengths) // max(1, len(lengths)))
    span = max(1, pool * batch_tokens // mean)
    batches: list[list[int]] = []
    for lo in range(0, len(order), span):
        chunk = order[lo:lo + span]
        packed = token_budget_batches([lengths[i] for i in chunk], batch_tokens, bucket_ratio=math.inf)
        batches += [[chunk[j] for j in b] for b in packed]
    rng.shuffle(batches)
    return batches


def collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` and ``labels`` that are -100 on prompt and padding."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (seq, n_prompt) in enumerate(examples):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
        labels[row, n_prompt:len(seq)] = ids[row, n_prompt:len(seq)]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def training_records(spec: TrainSpec) -> list[dict]:
    """The records a spec trains on: train-split problems of its skills plus generic chat."""
    recs = [r for skill in spec.skills for r in tasks.generate(skill, "train", spec.n_per_skill, spec.seed)]
    return recs + tasks.general_records(spec.n_general, spec.seed)


def train_sft(model, tok, records: list[dict], spec: TrainSpec, progress: bool = True, desc: str = "sft",
              position: int | None = None) -> dict:
    """Train ``model`` in place with response-only cross-entropy; returns losses per step, wall and CPU seconds."""
    spec.validate()
    if not records:
        raise ConfigError("train_sft got no records")
    torch.manual_seed(spec.seed)
    rng = random.Random(spec.seed)
    examples = [encode_example(tok, r["prompt"], r["response"]) for r in records]
    limit = min(spec.batch_tokens, getattr(model.config, "max_position_embeddings", None) or spec.batch_tokens)
    too_long = [r["id"] for r, (ids, _) in zip(records, examples) if len(ids) > limit]
    if too_long:
        raise ConfigError(f"{len(too_long)} records are longer than {limit} tokens (batch_tokens or the model's "
                          f"positions), e.g. {too_long[0]}")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    # No weight decay on biases and norms (the usual AdamW split).
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=spec.lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(spec))
    lengths = [len(ids) for ids, _ in examples]
    model.train()
    losses, queue, t0, cpu0 = [], [], time.perf_counter(), time.process_time()
    bar = tqdm(range(spec.steps), desc=desc, disable=not progress, mininterval=2.0, position=position)
    for _ in bar:
        if not queue:
            queue = token_batches(lengths, spec.batch_tokens, rng)
        batch = collate([examples[i] for i in queue.pop()], pad)
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return {"losses": losses, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0}


def model_key(name: str) -> str:
    """Hash of everything that changes a built model; part of its cache folder name."""
    import transformers

    bm = BENCH_MODELS[name]
    blob = json.dumps([asdict(bm.spec), asdict(bm.train), tasks.VERSION, ENCODING, transformers.__version__],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_bench_model(name: str, out: Path, progress: bool = True, position: int | None = None) -> dict:
    """Initialise ``name`` (tokenizer + seeded random weights), train it, and save it to ``out``; returns the meta."""
    bm = BENCH_MODELS[name]
    bm.train.validate()
    t0, cpu0 = time.perf_counter(), time.process_time()
    build(bm.spec, out)  # tokenizer and seeded initial weights, saved like a downloaded checkpoint
    tok = AutoTokenizer.from_pretrained(out)
    # GPT-2 configs default to 10% dropout, which only slows these tiny, data-rich runs down.
    model = AutoModelForCausalLM.from_pretrained(out, **(_NO_DROPOUT if bm.spec.arch == "gpt2" else {}))
    records = training_records(bm.train)
    result = train_sft(model, tok, records, bm.train, progress=progress, desc=name, position=position)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    tail = result["losses"][-20:]
    meta = {"name": name, "key": model_key(name), "spec": asdict(bm.spec), "train": asdict(bm.train),
            "params": sum(p.numel() for p in model.parameters()), "train_records": len(records),
            "final_loss": sum(tail) / len(tail), "train_seconds": round(result["seconds"], 1),
            "build_seconds": round(time.perf_counter() - t0, 1),
            # CPU time is what the build costs on an idle machine (x threads); wall time depends on other load.
            "build_cpu_seconds": round(time.process_time() - cpu0, 1), "torch_threads": torch.get_num_threads()}
    (out / META).write_text(json.dumps(meta, indent=1))
    return meta


def bench_model_path(name: str) -> Path:
    """Where the built model ``name`` lives (it exists once its meta file does)."""
    if name not in BENCH_MODELS:
        raise ConfigError(f"unknown bench model {name!r}; known: {sorted(BENCH_MODELS)}")
    return cache_root() / "bench" / f"{name}-{model_key(name)}"


def ensure_bench_model(name: str, progress: bool = True, position: int | None = None) -> Path:
    """Folder of the trained benchmark model ``name``; built atomically on first use, reused afterwards."""
    path = bench_model_path(name)
    if (path / META).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=path.parent))
    try:
        build_bench_model(name, tmp, progress=progress, position=position)
        try:
            os.rename(tmp, path)  # atomic; a concurrent builder that lost the race keeps the winner's copy
        except OSError:
            if not (path / META).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _build_cost(name: str) -> int:
    """Relative cost of building ``name`` (steps x tokens per step x hidden x layers): the longest starts first."""
    bm = BENCH_MODELS[name]
    return bm.train.steps * bm.train.batch_tokens * bm.spec.hidden * bm.spec.layers


def _one_build(name: str, bm: BenchModel, progress: bool, position: int, threads: int) -> Path:
    """One build in a fresh (spawned) process, which sees the parent's registry entry for ``name``."""
    BENCH_MODELS.setdefault(name, bm)
    torch.set_num_threads(threads)
    return ensure_bench_model(name, progress=progress, position=position)


def ensure_bench_models(names, progress: bool = True, workers: int | None = None) -> dict[str, Path]:
    """``{name: folder}`` of the benchmark models ``names``; the missing ones are built side by side.

    A tiny model's training step scales poorly past one thread, so on ``workers`` cores (default: all) the builds
    run in that many processes with ``cores // workers`` torch threads each, the costliest first: on 2 cores the
    quickstart's longest build runs next to the two others instead of before them. One missing model, or one core,
    builds in this process as before.
    """
    names = list(dict.fromkeys(names))
    missing = sorted((n for n in names if not (bench_model_path(n) / META).exists()), key=_build_cost, reverse=True)
    cores = os.cpu_count() or 1
    workers = max(1, min(len(missing), workers or cores))
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        if progress:
            print(f"building {len(missing)} benchmark models in {workers} processes: {', '.join(missing)}", flush=True)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_one_build, n, BENCH_MODELS[n], progress, i, max(1, cores // workers))
                       for i, n in enumerate(missing)]
            for f in futures:
                f.result()  # a failed build raises here, naming its model (build_bench_model's errors)
    return {n: ensure_bench_model(n, progress=progress) for n in names}


def load_meta(path: Path) -> dict:
    """The build record saved next to a benchmark model."""
    return json.loads((Path(path) / META).read_text())
