"""Summary of an aligned folder (``<out>/aligned/<source>/``) for ``logitfuse inspect``: coverage, relations, mass.

Per pivot response position the aligned shards hold the source position aligned to it (``src_index``, −1 masked),
the source's own top-k log-probs (``rank_logprobs``) and the same top-k mapped into pivot ids (``mapped_logprobs``).
The summary reports what a user checks before training on them:

- coverage (aligned / pivot response positions) over the set and per sample (the PNG's histogram), and the 1:1 /
  1:n / n:1 counts the align job recorded;
- mapped top-k mass: the probability the source's top-k keeps once mapped into pivot ids, against the top-k's own
  mass (source ids mapped to nothing lose theirs);
- NaN target share: aligned positions whose source target was not in its top-k (``target_logprob`` NaN, MinCE);
- the vocabulary map: method shares and the pivot ids receiving the most source ids (fan-in).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.io.reader import ShardSet

COLUMNS = ["status", "n_positions", "n_aligned", "src_index", "rank_logprobs", "mapped_logprobs", "target_logprob"]


def _flat(table, name: str) -> np.ndarray:
    return table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.float32)


def _mass(logprobs: np.ndarray, k: int) -> np.ndarray:
    """Per position: total probability of its k log-probs (−inf pads count 0)."""
    return np.exp(logprobs.reshape(-1, k).astype(np.float64)).sum(1)


def summarize_aligned(shards: ShardSet) -> dict:
    """Scalars of the module doc, plus ``_hist``: (per-sample coverage,) for :func:`plot_aligned`."""
    m = shards.manifest
    k = int(m.codec.get("k", 0))
    per_sample, rank_mass, mapped_mass, nan_target, samples, skipped = [], [], [], 0, 0, 0
    for i in range(len(shards)):
        t = shards.read(i, COLUMNS)  # verified; local or object store
        n, a = t.column("n_positions").to_numpy(), t.column("n_aligned").to_numpy()
        samples += t.num_rows
        skipped += int(np.sum(np.asarray(t.column("status").to_pylist()) == "skipped"))
        per_sample.append(a[n > 0] / n[n > 0])
        ok = t.column("src_index").combine_chunks().flatten().to_numpy() >= 0
        if k:
            rank_mass.append(_mass(_flat(t, "rank_logprobs"), k)[ok])
            mapped_mass.append(_mass(_flat(t, "mapped_logprobs"), k)[ok])
        nan_target += int(np.isnan(_flat(t, "target_logprob")[ok]).sum())
    cover = np.concatenate(per_sample) if per_sample else np.zeros(0)
    rank = np.concatenate(rank_mass) if rank_mass else np.zeros(0)
    mapped = np.concatenate(mapped_mass) if mapped_mass else np.zeros(0)
    positions, aligned = m.counts.get("positions", 0), m.counts.get("aligned", 0)
    out = {
        "name": m.name, "kind": "aligned", "samples": samples, "shards": len(shards), "k": k,
        "positions": positions, "aligned": aligned, "coverage": aligned / max(positions, 1),
        "one_to_one": m.counts.get("1:1", 0), "one_to_many": m.counts.get("1:n", 0),
        "many_to_one": m.counts.get("n:1", 0), "skipped": skipped,
        "sample_coverage_p10": float(np.quantile(cover, 0.1)) if cover.size else None,
        "sample_coverage_min": float(cover.min()) if cover.size else None,
        "topk_mass_mean": float(rank.mean()) if rank.size else None,
        "mapped_topk_mass_mean": float(mapped.mean()) if mapped.size else None,
        "mapped_mass_share": float(mapped.sum() / rank.sum()) if rank.size and rank.sum() > 0 else None,
        "nan_target_share": nan_target / max(aligned, 1),
    }
    out |= {k_: v for k_, v in m.stats.items() if k_.startswith("map_")}
    out |= {k_: v for k_, v in m.counts.items() if k_.startswith("map_fan_in/")}
    out["_hist"] = (cover,)
    return out


def plot_aligned(summary: dict, path: str | Path) -> Path:
    """PNG: histogram of per-sample coverage (share of each sample's pivot positions that are aligned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (cover,) = summary["_hist"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(cover, bins=np.linspace(0, 1, 41), color="#3b6ea5")
    ax.set(title=f"{summary['name']}: coverage {summary['coverage']:.1%} of {summary['positions']} positions",
           xlabel="aligned share of a sample's pivot positions", ylabel="samples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
