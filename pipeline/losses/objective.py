"""The fusion objective L = λ_sft·SFT + Σ_s w_s·(λ_uld·ULD_s + λ_gld·GLD_s + λ_kl·KL_s) and its config."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.errors import ConfigError
from pipeline.losses.chunked_head import HeadOutputs
from pipeline.losses.gld import NORMALIZATIONS, gld_rank_loss, gld_sequences, gld_vocab_loss
from pipeline.losses.kl import kl_loss, kl_positions
from pipeline.losses.mince import mince_weights
from pipeline.losses.sft import sft_loss
from pipeline.losses.uld import uld_loss, uld_positions

GLD_SPACES = ("rank", "vocab")
SOURCE_SELECTIONS = ("none", "mince")


@dataclass
class LossConfig:
    """Loss weights and top-k settings.

    Defaults, since InfiGFusion publishes none of its weights or k:
    - lambda_sft=1.0: the gold tokens stay the anchor of the objective.
    - lambda_uld=0.5, lambda_gld=0.5: both distances lie in [0, 2] per position/sequence, and with "topk"
      normalisation GLD (L1 between sequence-averaged sorted distributions) is at most the un-standardised ULD by
      the triangle inequality, so equal halves keep the whole distillation part no larger than a typical SFT loss
      (1–2 nats) while GLD adds its structural signal on top of ULD, as in the paper; tune per run.
    - lambda_kl=0.0: the FuseLLM KL baseline is off unless asked for.
    - k=10: the student's top-k (FuseLLM/FuseChat keep top-10); teachers use the k stored at capture.
    - temperature=1.0, zscore=True: InfiFusion standardises top-k logits before the softmax.
    - gld_space="rank": tokenizer-agnostic and needs no vocabulary map; gld_normalize="topk": rows sum to 1.
    - source_selection="none": every source contributes with its weight; "mince" keeps, per sample, the source
      with the lowest cross-entropy on the gold tokens (FuseLLM).
    """

    lambda_sft: float = 1.0  # weight of the cross-entropy on the gold tokens
    lambda_uld: float = 0.5  # weight of ULD: per-position L1 between sorted top-k distributions (InfiFusion)
    lambda_gld: float = 0.5  # weight of GLD: graph-on-logits distance over the sequence (arXiv 2505.13893)
    lambda_kl: float = 0.0  # weight of the FuseLLM-style KL(T‖S) over the teacher's mapped top-k ids
    gld_space: str = "rank"  # rank (tokenizer-agnostic) | vocab (needs the aligned pivot ids)
    k: int = 10  # the student's top-k; teachers use the k stored at capture
    temperature: float = 1.0  # softmax temperature τ of ULD, GLD and KL (GLD with gld_normalize=full ignores it)
    zscore: bool = True  # standardise top-k logits before the softmax (InfiFusion)
    gld_normalize: str = "topk"  # topk: softmax over the top-k values | full: exp of the stored log-probs
    source_selection: str = "none"  # none: every source with its weight | mince: per sample the lowest-CE source

    def validate(self) -> None:
        """Raise ConfigError naming the first field that is out of range."""
        for name in ("lambda_sft", "lambda_uld", "lambda_gld", "lambda_kl"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"loss.{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"loss.k must be an integer >= 1, got {self.k!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"loss.temperature must be a finite number > 0, got {t!r}")
        if not isinstance(self.zscore, bool):
            raise ConfigError(f"loss.zscore must be true or false, got {self.zscore!r}")
        for name, allowed in (
            ("gld_space", GLD_SPACES),
            ("gld_normalize", NORMALIZATIONS),
            ("source_selection", SOURCE_SELECTIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"loss.{name} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass
class TeacherInputs:
    """One source's aligned tensors for a batch.

    topk_logprobs `[B,T,kT]` and topk_ids `[B,T,kT]` (pivot ids, -1 = padding/unmapped; padding log-probs -inf);
    mask `[B,T]` bool, the pivot positions this source is aligned at; weight: w_s (None = 1/number of sources;
    ignored under MinCE); target_logprobs `[B,T]`: the source's log-prob of the gold pivot token, needed by MinCE.
    """

    topk_logprobs: Tensor
    topk_ids: Tensor
    mask: Tensor
    weight: float | None = None
    name: str = "source"
    target_logprobs: Tensor | None = None


def concat_teacher_ids(teachers: Sequence[TeacherInputs]) -> Tensor:
    """`gather_ids [B,T,Σ kT]` for `chunked_head`: every source's ids, in order, so KL can read the student there."""
    return torch.cat([t.topk_ids for t in teachers], dim=-1)


def _source_weights(teachers: Sequence[TeacherInputs], mask: Tensor, cfg: LossConfig) -> list[Tensor | float]:
    """Per source: a float weight, or a `[B]` one-hot column under MinCE (over positions in `mask [B,T]`)."""
    if cfg.source_selection == "mince":
        if any(t.target_logprobs is None for t in teachers):
            raise ConfigError("loss.source_selection='mince' needs target_logprobs for every source")
        k = max(t.topk_logprobs.shape[-1] for t in teachers)
        topk = torch.stack([F.pad(t.topk_logprobs, (0, k - t.topk_logprobs.shape[-1]), value=-torch.inf)
                            for t in teachers])
        masks = torch.stack([t.mask for t in teachers]) & mask
        onehot = mince_weights(torch.stack([t.target_logprobs for t in teachers]), topk, masks)
        return list(onehot.unbind(0))
    return [1.0 / len(teachers) if t.weight is None else float(t.weight) for t in teachers]


def loss_counts(teachers: Sequence[TeacherInputs], mask: Tensor, cfg: LossConfig) -> dict[str, Tensor]:
    """What each term of :func:`fusion_loss` divides by, from the batch alone (no student needed): positions for
    "sft", "uld/<name>", "kl/<name>", sequences for "gld/<name>". Summed over micro-batches and ranks, they are the
    ``denominators`` that make a step's loss the mean over all of its tokens, however it is split."""
    counts: dict[str, Tensor] = {}
    if cfg.lambda_sft > 0:
        counts["sft"] = mask.sum()
    for t in teachers:
        t_mask = mask & t.mask
        if cfg.lambda_uld > 0:
            counts[f"uld/{t.name}"] = uld_positions(t.topk_logprobs, t_mask).sum()
        if cfg.lambda_gld > 0:
            counts[f"gld/{t.name}"] = gld_sequences(t_mask).sum()
        if cfg.lambda_kl > 0:
            counts[f"kl/{t.name}"] = kl_positions(t.topk_logprobs, t.topk_ids, t_mask).sum()
    return counts


def fusion_loss(
    student: HeadOutputs, teachers: Sequence[TeacherInputs], mask: Tensor, cfg: LossConfig,
    denominators: dict[str, Tensor | float] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Total loss (scalar, differentiable) and a dict of float terms for logging.

    student: `chunked_head` outputs (k >= cfg.k; only the first cfg.k entries are used; gathered_logprobs at
    `concat_teacher_ids(teachers)` when lambda_kl > 0). mask: `[B,T]` bool response positions (SFT); each source
    additionally uses its own alignment mask. Terms: "loss", "sft", "uld", "gld", "kl" (source-weighted sums,
    before the λ) and "uld/<name>" etc. per source; terms with λ = 0 are neither computed nor reported.
    denominators: optional, keyed like :func:`loss_counts`; each term is then its sum over this batch divided by the
    given count instead of a mean over this batch (training: counts of the whole step over all ranks).
    """
    den = denominators or {}
    cfg.validate()
    if student.topk_logprobs.shape[-1] < cfg.k:
        raise ConfigError(f"loss.k={cfg.k} exceeds the student top-k of {student.topk_logprobs.shape[-1]}")
    s_lp = student.topk_logprobs[..., : cfg.k]
    s_ids = student.topk_ids[..., : cfg.k]
    gathered = None
    if cfg.lambda_kl > 0 and teachers:
        widths = [t.topk_ids.shape[-1] for t in teachers]
        if student.gathered_logprobs is None or student.gathered_logprobs.shape[-1] != sum(widths):
            raise ConfigError(
                "loss.lambda_kl > 0 needs student.gathered_logprobs at concat_teacher_ids(teachers) "
                f"(width {sum(widths)})"
            )
        gathered = student.gathered_logprobs.split(widths, dim=-1)

    terms: dict[str, Tensor] = {}
    total = s_lp.new_zeros(())
    if cfg.lambda_sft > 0:
        terms["sft"] = sft_loss(student.target_logprobs, mask, denominator=den.get("sft"))
        total = total + cfg.lambda_sft * terms["sft"]
    weights = _source_weights(teachers, mask, cfg) if teachers else []
    for i, (teacher, w) in enumerate(zip(teachers, weights, strict=True)):
        t_mask = mask & teacher.mask
        per_sample = w if isinstance(w, Tensor) else None
        scale = 1.0 if isinstance(w, Tensor) else w
        parts: dict[str, Tensor] = {}
        if cfg.lambda_uld > 0:
            parts["uld"] = uld_loss(s_lp, teacher.topk_logprobs, t_mask, cfg.temperature, cfg.zscore, per_sample,
                                    den.get(f"uld/{teacher.name}"))
        if cfg.lambda_gld > 0:
            if cfg.gld_space == "rank":
                parts["gld"] = gld_rank_loss(
                    s_lp, teacher.topk_logprobs, t_mask, cfg.temperature, cfg.gld_normalize, per_sample,
                    den.get(f"gld/{teacher.name}"),
                )
            else:
                parts["gld"] = gld_vocab_loss(
                    s_lp, s_ids, teacher.topk_logprobs, teacher.topk_ids, t_mask, cfg.temperature, cfg.gld_normalize,
                    per_sample, den.get(f"gld/{teacher.name}"),
                )
        if cfg.lambda_kl > 0:
            parts["kl"] = kl_loss(
                gathered[i], teacher.topk_logprobs, teacher.topk_ids, t_mask, cfg.temperature, per_sample,
                den.get(f"kl/{teacher.name}"),
            )
        for term, value in parts.items():
            value = scale * value
            terms[f"{term}/{teacher.name}"] = value
            terms[term] = terms.get(term, 0.0) + value
            total = total + getattr(cfg, f"lambda_{term}") * value
    terms["loss"] = total
    return total, {name: float(value.detach()) for name, value in terms.items()}
