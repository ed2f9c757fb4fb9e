"""Reference computations the GLD approximation is checked against (tests and benchmarks); needs POT (dev extra)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.losses.gld import gld_rank_loss


def gld_and_exact_gw(n_pairs: int = 30, m: int = 8, k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rank-space GLD and exact Gromov-Wasserstein (POT, square loss, uniform node weights) of the co-activation
    graphs C = AᵀA of ``n_pairs`` random student/teacher pairs of ``m`` positions × top-``k``."""
    import ot

    rng = np.random.default_rng(seed)
    gld, gw = [], []
    uniform = np.full(k, 1.0 / k)
    for _ in range(n_pairs):
        s = torch.tensor(rng.normal(size=(1, m, k)) * rng.uniform(0.3, 3)).log_softmax(-1)
        t = torch.tensor(rng.normal(size=(1, m, k)) * rng.uniform(0.3, 3)).log_softmax(-1)
        gld.append(gld_rank_loss(s, t, torch.ones(1, m, dtype=torch.bool)).item())
        a = s[0].exp().sort(-1, descending=True).values.numpy()
        b = t[0].exp().sort(-1, descending=True).values.numpy()
        gw.append(ot.gromov.gromov_wasserstein2(a.T @ a, b.T @ b, uniform, uniform, loss_fun="square_loss"))
    return np.array(gld), np.array(gw)
