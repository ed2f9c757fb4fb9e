"""The fusion benchmark's variants and the distillation settings they share (the ones chosen on validation).

Every distillation variant picks the teacher per sample by MinCE (FuseLLM): each source is a specialist, poor on
the other's skills. λ (one weight for each distillation term), the temperature, GLD's space and its normalisation
are chosen on the val split (``pipeline.bench.select``); ``DEFAULT`` is where that search starts.
"""

from __future__ import annotations

import hashlib
import json

from pipeline.errors import ConfigError

VARIANTS = ("pivot", "sft", "sft+kl", "sft+uld", "sft+uld+gld")
DISTILLED = ("sft+kl", "sft+uld", "sft+uld+gld")  # the variants the distillation settings change
DEFAULT = {"lambda": 0.5, "temperature": 2.0, "gld_space": "rank", "gld_normalize": "topk"}
# What the full profile's validation search chose (``<out>/several-answers/selection.json``, 2026-12-01, third full
# run: seed 0, val mean exact match over evens and Dyck — λ 0.5 → 0.325, 0.03 → 0.44, 0.1 → 0.365, 1.0 → 0.29, and
# 0.01 → 0.405 once it joined the grid; then at λ 0.03: T 1 → 0.325, vocab space → 0.435, full normalisation → 0.42,
# none above; the second run chose the same). The quick profile uses it as is. 0.03 joined the grid after the first
# run chose 0.1, its edge then, and 0.01 after 0.03 was the edge twice: 0.03 is now a maximum inside the grid.
CHOSEN = {"lambda": 0.03, "temperature": 2.0, "gld_space": "rank", "gld_normalize": "topk"}
GRID = {"lambda": [0.01, 0.03, 0.1, 0.5, 1.0], "temperature": [1.0, 2.0], "gld_space": ["rank", "vocab"],
        "gld_normalize": ["topk", "full"]}


def loss_settings(variant: str, distill: dict) -> dict | None:
    """``LossConfig`` fields of ``variant`` under the distillation settings ``distill``; None = no training."""
    if set(distill) != set(DEFAULT):
        raise ConfigError(f"distillation settings need exactly {sorted(DEFAULT)}, got {sorted(distill)}")
    lam, common = distill["lambda"], {"source_selection": "mince", "temperature": distill["temperature"]}
    table = {
        "pivot": None,
        "sft": {"lambda_uld": 0.0, "lambda_gld": 0.0, "lambda_kl": 0.0},
        "sft+kl": {"lambda_uld": 0.0, "lambda_gld": 0.0, "lambda_kl": lam} | common,
        "sft+uld": {"lambda_uld": lam, "lambda_gld": 0.0} | common,
        "sft+uld+gld": {"lambda_uld": lam, "lambda_gld": lam, "gld_space": distill["gld_space"],
                        "gld_normalize": distill["gld_normalize"]} | common,
    }
    if variant not in table:
        raise ConfigError(f"unknown variant {variant!r}; known: {list(VARIANTS)}")
    return table[variant]


def run_name(variant: str, distill: dict, seed: int) -> str:
    """Train run folder name: the same variant, settings and seed always reuse the same run."""
    losses = loss_settings(variant, distill)
    tag = hashlib.sha256(json.dumps(losses, sort_keys=True).encode()).hexdigest()[:8]
    return f"{variant}-{tag}-s{seed}"
