"""Fusion losses (SFT, ULD, GLD, KL); plain torch, no Ray."""

from pipeline.losses.chunked_head import HeadOutputs, chunked_head, dense_head
from pipeline.losses.gld import gld_rank_loss, gld_vocab_loss
from pipeline.losses.kl import kl_loss
from pipeline.losses.mince import mince_weights
from pipeline.losses.objective import LossConfig, TeacherInputs, concat_teacher_ids, fusion_loss, loss_counts
from pipeline.losses.sft import sft_loss
from pipeline.losses.uld import uld_loss

__all__ = [
    "HeadOutputs",
    "LossConfig",
    "TeacherInputs",
    "chunked_head",
    "concat_teacher_ids",
    "dense_head",
    "fusion_loss",
    "gld_rank_loss",
    "gld_vocab_loss",
    "kl_loss",
    "loss_counts",
    "mince_weights",
    "sft_loss",
    "uld_loss",
]
